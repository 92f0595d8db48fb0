"""H3 helpers: right resolution, right cell, right (lat, lng) order."""

import pytest

from geo.distance import haversine_m
from geo.hexgrid import H3_RES, cell_center, cell_of, disk, edge_length_m
from geo.latlng import LatLng

XILINHOT = LatLng(43.93, 116.08)
ERENHOT = LatLng(43.65, 111.98)


def _resolution(cell: str) -> int:
    # H3 index layout: resolution lives in bits 52-55 (tests stay h3-free).
    return (int(cell, 16) >> 52) & 0xF


def test_default_resolution_is_9() -> None:
    assert H3_RES == 9
    assert _resolution(cell_of(XILINHOT)) == 9
    assert _resolution(cell_of(XILINHOT, res=7)) == 7


@pytest.mark.parametrize("p", [XILINHOT, ERENHOT])
def test_cell_contains_its_centre(p: LatLng) -> None:
    cell = cell_of(p)
    assert cell_of(cell_center(cell)) == cell


@pytest.mark.parametrize("p", [XILINHOT, ERENHOT])
def test_cell_centre_is_near_the_point(p: LatLng) -> None:
    # No point of a hexagon is farther from its centre than one edge (~200 m
    # at res 9, a little more where H3 cells are stretched); swapping lat and
    # lng would land thousands of km away or be rejected outright.
    assert haversine_m(cell_center(cell_of(p)), p) < 1.25 * edge_length_m()


def test_distinct_places_get_distinct_cells() -> None:
    assert cell_of(XILINHOT) != cell_of(ERENHOT)


def test_disk_ring_sizes() -> None:
    cell = cell_of(XILINHOT)
    ring1 = disk(cell, 1)
    assert len(ring1) == len(set(ring1)) == 7
    assert cell in ring1
    assert len(disk(cell, 2)) == 19
    assert disk(cell, 0) == [cell]


def test_disk_neighbours_are_adjacent() -> None:
    cell = cell_of(XILINHOT)
    centre = cell_center(cell)
    spacing = [haversine_m(centre, cell_center(n)) for n in disk(cell, 1) if n != cell]
    # Neighbouring centres of a regular hexagon are sqrt(3) edges apart; real
    # H3 cells are distorted, so only require one to two average edges.
    edge = edge_length_m()
    assert len(spacing) == 6
    assert all(edge < s < 2 * edge for s in spacing)


def test_edge_length_at_res_9() -> None:
    # h3 v4's table value for res 9 is 200.786148 m.
    assert edge_length_m() == pytest.approx(200.8, rel=0.01)
    assert edge_length_m(8) > edge_length_m(9)
