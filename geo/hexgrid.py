"""H3 hexagonal grid helpers.

This is the only module allowed to import h3, so the library's version and
its (lat, lng) argument order are handled in exactly one place; everything
else passes LatLng values and opaque cell ids: hex strings, or the same ids as
integers (`*_id` functions) where a search makes many calls and the strings'
parsing would cost more than the call.
"""

import h3
from h3.api import basic_int as h3_int

from geo.distance import haversine_m
from geo.latlng import LatLng

# Resolution 9 cells average ~200 m edges and ~0.1 km^2: small enough to
# tell neighbouring streets apart, large enough that a city fits in a few
# thousand cells.
H3_RES = 9
# The shortest hexagon or pentagon edge anywhere on the globe, as a share of h3's average edge at the
# same resolution: 0.7034 at res 5 (every edge enumerated; res 0-4: 0.93, 0.79, 0.77, 0.71, 0.75), and
# 0.7026-0.7449 at res 6-10 around the place of res 5's shortest (the share settles as cells shrink,
# alternating between odd and even resolutions). Kept a little under the least seen.
SHORTEST_EDGE_SHARE = 0.69
# The least distance between a cell and the ring of cells k+1 steps away, k = 1, 2, 3, 4, as a share of the
# average edge: what a way out of the k-disk from anywhere in its centre cell must at least cover. Measured
# exactly (a corner of one to an edge of the other; tests/geo/test_hexindex.py) around the 12 pentagons and
# res 5's shortest edge, at res 5-10, where H3 is most distorted: 0.7026, 1.851, 2.811, 3.875 at the least
# (2.4 times the shortest edge for two rings, not 2: a straight way out cannot cross every ring along a
# short edge); 0.82, 2.14, 3.27, 4.4 in Xilinhot. Kept a little under the least seen.
RING_GAP_SHARE = (SHORTEST_EDGE_SHARE, 1.83, 2.78, 3.83)


def cell_of(p: LatLng, res: int = H3_RES) -> str:
    """The H3 cell containing the WGS-84 point p."""
    return str(h3.latlng_to_cell(p.lat, p.lng, res))


def parent(cell: str, res: int) -> str:
    """The cell at the coarser resolution res that holds `cell`."""
    return str(h3.cell_to_parent(cell, res))


def cell_center(cell: str) -> LatLng:
    """The WGS-84 centre of an H3 cell."""
    lat, lng = h3.cell_to_latlng(cell)
    return LatLng(lat, lng)


def cell_boundary(cell: str) -> list[LatLng]:
    """The WGS-84 corners of an H3 cell, in order."""
    return [LatLng(lat, lng) for lat, lng in h3.cell_to_boundary(cell)]


def disk(cell: str, k: int) -> list[str]:
    """All cells within k grid steps of cell, including cell itself.

    Sorted so callers get a deterministic order (h3 does not promise one).
    """
    return sorted(h3.grid_disk(cell, k))


def edge_length_m(res: int = H3_RES) -> float:
    """Average hexagon edge length at res, in metres."""
    return float(h3.average_hexagon_edge_length(res, unit="m"))


def disk_bound_m(res: int, k: int) -> float:
    """Metres from a point within which everything lies in the k-disk of the point's cell at res.

    A way out of the disk from anywhere in its centre cell enters the ring k+1 steps away, at least a
    RING_GAP_SHARE away; past the table, each further ring adds at least a shortest edge: a way out enters
    the cells 1, 2, ... steps away in turn (a step crosses an edge or a corner, and the three cells at a
    corner are neighbours) and crosses each ring between two edges that share no corner, which H3's wide
    corners (about 120 degrees) keep an edge apart.
    """
    known = min(k, len(RING_GAP_SHARE))
    share = (RING_GAP_SHARE[known - 1] if known else 0.0) + (k - known) * SHORTEST_EDGE_SHARE
    return share * edge_length_m(res)


def cells_around(p: LatLng, radius_m: float, res: int) -> set[str]:
    """The cells at res that come within radius_m of p: every point within radius_m lies in one of them.

    The disk around p's cell wide enough by `disk_bound_m`, less the cells whose every corner is too far:
    a cell lies within its farthest corner's distance of its centre.
    """
    k = 0
    while disk_bound_m(res, k) < radius_m:
        k += 1
    found = set()
    for cell in h3.grid_disk(h3.latlng_to_cell(p.lat, p.lng, res), k):
        centre = cell_center(cell)
        reach = max(haversine_m(centre, corner) for corner in cell_boundary(cell))
        if haversine_m(p, centre) <= radius_m + reach:
            found.add(str(cell))
    return found


def cell_id(lat: float, lng: float, res: int) -> int:
    """The H3 cell containing the WGS-84 point, as an integer id."""
    return int(h3_int.latlng_to_cell(lat, lng, res))


def disk_ids(cell: int, k: int) -> list[int]:
    """The cells within k steps of an integer cell id, itself included, in no particular order."""
    return h3_int.grid_disk(cell, k)  # type: ignore[no-any-return]


def ring_ids(cell: int, k: int) -> list[int]:
    """The cells exactly k steps from an integer cell id, in no particular order."""
    return h3_int.grid_ring(cell, k)  # type: ignore[no-any-return]

