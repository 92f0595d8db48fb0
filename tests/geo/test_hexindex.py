"""The H3 index hands out every point within each batch's distance bound, on and beside cell edges and
corners, at every resolution the search uses; the bound itself is checked against the exact distance from
a cell to the ring outside each disk, where H3 is most distorted and where the service runs."""

import math
import random

import h3
import numpy as np
import pytest
from h3.api import basic_int as h3_int

from geo.distance import EARTH_MEAN_RADIUS_M, haversine_m
from geo.hexgrid import RING_GAP_SHARE, cell_of, cells_around, disk_bound_m, edge_length_m
from geo.hexindex import RESOLUTIONS, HexIndex
from geo.latlng import LatLng

XILINHOT = LatLng(43.93, 116.08)
# Where H3 is most distorted: next to the pentagons (this one at res 0's (-64.7, -169.46)) and at res 5's
# shortest edge anywhere.
PENTAGON = LatLng(-64.70000012793489, -169.46380092453236)
SHORTEST_EDGE = LatLng(-64.79449359157998, -169.595936646588)
PLACES = [XILINHOT, PENTAGON, SHORTEST_EDGE]


def unit_vectors(points: list[tuple[float, float]]) -> np.ndarray:
    lat, lng = np.radians(np.array(points)).T
    return np.stack([np.cos(lat) * np.cos(lng), np.cos(lat) * np.sin(lng), np.sin(lat)], axis=1)


def edges(cells: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Every edge of these cells as (start, end) unit vectors: H3's edges are great-circle arcs."""
    starts, ends = [], []
    for cell in cells:
        corners = unit_vectors(list(h3_int.cell_to_boundary(cell)))
        starts.append(corners)
        ends.append(np.roll(corners, -1, axis=0))
    return np.concatenate(starts), np.concatenate(ends)


def to_arcs_m(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> float:
    """The least great-circle distance from these points to these arcs."""
    normal = np.cross(starts, ends)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    off = points @ normal.T
    foot = points[:, None, :] - off[:, :, None] * normal[None, :, :]
    on_arc = ((np.einsum("pak,ak->pa", np.cross(starts[None, :, :], foot), normal) >= 0)
              & (np.einsum("pak,ak->pa", np.cross(foot, ends[None, :, :]), normal) >= 0))
    chord = np.minimum(np.linalg.norm(points[:, None, :] - starts[None, :, :], axis=2),
                       np.linalg.norm(points[:, None, :] - ends[None, :, :], axis=2))
    angle = np.where(on_arc, np.arcsin(np.clip(np.abs(off), 0, 1)), 2 * np.arcsin(np.clip(chord / 2, 0, 1)))
    return float(EARTH_MEAN_RADIUS_M * angle.min())


def gap_m(cell: int, k: int) -> float:
    """Exactly, the metres between the cell and the ring k+1 steps away: two cells apart come closest
    between a corner of one and an edge of the other."""
    corners, ends = edges([cell])
    ring_corners, ring_ends = edges(h3_int.grid_ring(cell, k + 1))
    return min(to_arcs_m(corners, ring_corners, ring_ends), to_arcs_m(ring_corners, corners, ends))


@pytest.mark.parametrize("res", RESOLUTIONS)
@pytest.mark.parametrize("place", PLACES, ids=["xilinhot", "pentagon", "shortest-edge"])
def test_everything_within_the_bound_of_a_disk_lies_in_it(res: int, place: LatLng) -> None:
    centre = h3_int.latlng_to_cell(place.lat, place.lng, res)
    for cell in h3_int.grid_disk(centre, 2):  # the pentagon's own ring, and cells a step or two off
        for k in range(1, len(RING_GAP_SHARE) + 2):
            assert gap_m(cell, k) >= disk_bound_m(res, k), (cell, k)


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_the_bound_is_no_looser_than_it_must_be_in_xilinhot(res: int) -> None:
    # The search stops sooner the nearer the bound is to the truth: within a third of it in town.
    cell = h3_int.latlng_to_cell(XILINHOT.lat, XILINHOT.lng, res)
    for k in (1, 2, 3):
        assert disk_bound_m(res, k) > 0.75 * gap_m(cell, k)


def on_edges(cell: str) -> list[LatLng]:
    """A cell's corners, the middles and quarters of its edges, and points a centimetre either side of those."""
    corners = h3.cell_to_boundary(cell)
    points = []
    for (lat1, lng1), (lat2, lng2) in zip(corners, corners[1:] + corners[:1], strict=True):
        for t in (0.0, 0.25, 0.5, 0.75):
            lat, lng = lat1 + t * (lat2 - lat1), lng1 + t * (lng2 - lng1)
            points += [LatLng(lat + d, lng + e) for d, e in ((0, 0), (1e-7, 0), (-1e-7, 0), (0, 1e-7), (0, -1e-7))]
    return points


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_a_batch_has_handed_out_every_point_within_its_bound_from_edges_and_corners(res: int) -> None:
    index: HexIndex[LatLng] = HexIndex()
    here = cell_of(XILINHOT, res)
    placed = [p for cell in h3.grid_disk(here, 5) for p in on_edges(cell)]
    for ident, p in enumerate(placed):
        index.add(ident, p.lat, p.lng, p)
    for start in [*on_edges(here)[::5], XILINHOT]:
        handed: dict[int, set[int]] = {}
        for size, cells, bound_m in index.near(start.lat, start.lng):
            seen = handed.setdefault(size, set())
            seen.update(ident for cell in cells for ident in cell.items)
            within = {ident for ident, p in enumerate(placed) if haversine_m(start, p) < bound_m}
            assert within <= seen, (size, bound_m, len(within - seen))
        assert handed[max(handed)] == set(range(len(placed)))  # the last size reached hands out all


def test_points_removed_are_handed_out_no_more() -> None:
    index: HexIndex[str] = HexIndex()
    rng = random.Random(5)
    points = {i: LatLng(XILINHOT.lat + rng.uniform(-0.05, 0.05), XILINHOT.lng + rng.uniform(-0.05, 0.05))
              for i in range(200)}
    for ident, p in points.items():
        index.add(ident, p.lat, p.lng, f"t{ident}")
    for ident in range(0, 200, 2):
        index.remove(ident, points[ident].lat, points[ident].lng)

    batches = list(index.near(XILINHOT.lat, XILINHOT.lng))
    last = batches[-1][0]
    handed = {ident for size, cells, _ in batches if size == last for cell in cells for ident in cell.items}

    assert len(index) == 100
    assert handed == set(range(1, 200, 2))


@pytest.mark.parametrize("res", RESOLUTIONS)
@pytest.mark.parametrize("radius_m", [50, 500, 3000])
def test_cells_around_a_point_hold_every_point_within_the_radius_and_no_cell_beyond(res: int,
                                                                                  radius_m: float) -> None:
    around = cells_around(XILINHOT, radius_m, res)
    rng = random.Random(res)
    for _ in range(400):
        bearing, metres = rng.uniform(0, 2 * math.pi), radius_m * math.sqrt(rng.random())
        p = LatLng(XILINHOT.lat + math.degrees(metres * math.cos(bearing) / EARTH_MEAN_RADIUS_M),
                   XILINHOT.lng + math.degrees(metres * math.sin(bearing) / EARTH_MEAN_RADIUS_M)
                   / math.cos(math.radians(XILINHOT.lat)))
        if haversine_m(XILINHOT, p) <= radius_m:
            assert cell_of(p, res) in around
    far = max(haversine_m(XILINHOT, corner) for cell in around for corner in
              (LatLng(*c) for c in h3.cell_to_boundary(cell)))
    assert far < radius_m + 4 * edge_length_m(res)  # the cells touching the circle, not a whole disk
