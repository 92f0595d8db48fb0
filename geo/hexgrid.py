"""H3 hexagonal grid helpers.

This is the only module allowed to import h3, so the library's version and
its (lat, lng) argument order are handled in exactly one place; everything
else passes LatLng values and opaque cell ids (hex strings).
"""

import h3

from geo.latlng import LatLng

# Resolution 9 cells average ~200 m edges and ~0.1 km^2: small enough to
# tell neighbouring streets apart, large enough that a city fits in a few
# thousand cells.
H3_RES = 9


def cell_of(p: LatLng, res: int = H3_RES) -> str:
    """The H3 cell containing the WGS-84 point p."""
    return str(h3.latlng_to_cell(p.lat, p.lng, res))


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
