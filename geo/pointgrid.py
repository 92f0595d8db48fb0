"""Points in memory, found nearest first: a grid of latitude/longitude cells at a few sizes.

A search takes a block of cells around the point at the finest size, then one more ring of cells at
a time, and moves to a coarser size when a few rings found too little, so a dense old town and the
empty steppe around it both cost a few batches. Each batch comes with the distance within which
every point has been handed out at that size, so a caller stops as soon as its answer cannot change.
Cells do not wrap at the antimeridian or the poles: a service area is a city's or a province's.
"""

import math
from collections.abc import Iterator
from typing import Generic, TypeVar

from geo.distance import EARTH_MEAN_RADIUS_M

Item = TypeVar("Item")

# Cells per degree at each size: about 440 m, 2.2, 11 and 56 km north to south (less east to west
# away from the equator). A factor of five between sizes: a search that outgrows a few rings at one
# size needs about one ring at the next. The first batch at a size is the 3 x 3 block around the
# point: in `make bench` a caller's cost went with the number of cells per batch more than with the
# points in them (it packs each cell's points into arrays and joins a batch's), and the finest
# block holds the nearest few dozen technicians of a town centre.
CELLS_PER_DEGREE = (250, 50, 10, 2)
FIRST_RINGS = 1
RINGS_PER_SIZE = 3  # then a ring per batch up to this, except at the coarsest size
_ROW = 1 << 20  # cell key = row * _ROW + column; 360 * 250 columns fit below it


def _ring_offsets(ring: int) -> list[int]:
    """Cell keys of a ring, relative to its centre's."""
    keys = [r * _ROW + c for r in (-ring, ring) for c in range(-ring, ring + 1)]
    return keys + [r * _ROW + c for r in range(-ring + 1, ring) for c in (-ring, ring)]


_BLOCK = [0, *(offset for ring in range(1, FIRST_RINGS + 1) for offset in _ring_offsets(ring))]
_RINGS = {ring: _ring_offsets(ring) for ring in range(FIRST_RINGS + 1, RINGS_PER_SIZE + 1)}
_M_PER_DEGREE = math.pi * EARTH_MEAN_RADIUS_M / 180
# The bounds measure along a parallel, which a great circle beats by a relative
# Δλ²/24 (2e-6 at 20 km): kept this far inside the truth.
_BOUND_MARGIN = 0.999


class Cell(Generic[Item]):
    """The items of one cell, by id, and a slot for a packed form of them that a caller builds and
    keeps here; the grid empties the slot whenever the cell changes."""

    __slots__ = ("items", "packed")

    def __init__(self) -> None:
        self.items: dict[int, Item] = {}
        self.packed: object | None = None


def _cell(lat: float, lng: float, per_degree: int) -> tuple[int, int]:
    return int((lat + 90.0) * per_degree), int((lng + 180.0) * per_degree)


class PointGrid(Generic[Item]):
    """Items placed at points, each under an integer id; `near` hands them out in widening batches."""

    def __init__(self) -> None:
        self._sizes: list[dict[int, Cell[Item]]] = [{} for _ in CELLS_PER_DEGREE]
        self._count = 0
        # Every point ever placed lies within these (they never shrink): the last rings stop there.
        self._south, self._north, self._west, self._east = 90.0, -90.0, 180.0, -180.0

    def __len__(self) -> int:
        return self._count

    def add(self, ident: int, lat: float, lng: float, item: Item) -> None:
        for cells, per_degree in zip(self._sizes, CELLS_PER_DEGREE, strict=True):
            row, column = _cell(lat, lng, per_degree)
            cell = cells.get(row * _ROW + column)
            if cell is None:
                cell = cells[row * _ROW + column] = Cell()
            cell.items[ident] = item
            cell.packed = None
        self._count += 1
        self._south, self._north = min(self._south, lat), max(self._north, lat)
        self._west, self._east = min(self._west, lng), max(self._east, lng)

    def remove(self, ident: int, lat: float, lng: float) -> None:
        """Take out the item placed under `ident` at this point."""
        for cells, per_degree in zip(self._sizes, CELLS_PER_DEGREE, strict=True):
            row, column = _cell(lat, lng, per_degree)
            key = row * _ROW + column
            cell = cells[key]
            del cell.items[ident]
            cell.packed = None
            if not cell.items:
                del cells[key]
        self._count -= 1

    def near(self, lat: float, lng: float) -> Iterator[tuple[int, list[Cell[Item]], float]]:
        """Batches of cells as (size, cells, metres): the size (0 = finest) they are of, and the metres from
        the point within which every item has been handed out at that size. A new size starts over from
        the point (its first batch holds again what the finer sizes did); the last batches widen until
        every item has come."""
        last = len(CELLS_PER_DEGREE) - 1
        for size, (cells, per_degree) in enumerate(zip(self._sizes, CELLS_PER_DEGREE, strict=True)):
            row, column = _cell(lat, lng, per_degree)
            side_m = _M_PER_DEGREE / per_degree
            centre = row * _ROW + column
            block = [cell for cell in map(cells.get, [centre + offset for offset in _BLOCK]) if cell]
            ring = FIRST_RINGS
            yield size, block, self._bound(lat, ring, per_degree, side_m)
            while not self._covered(row, column, ring, per_degree) and (size == last or ring < RINGS_PER_SIZE):
                ring += 1
                yield size, self._ring(cells, row, column, ring), self._bound(lat, ring, per_degree, side_m)
            if self._covered(row, column, ring, per_degree):
                return

    @staticmethod
    def _ring(cells: dict[int, Cell[Item]], row: int, column: int, ring: int) -> list[Cell[Item]]:
        centre = row * _ROW + column
        offsets = _RINGS.get(ring) or _ring_offsets(ring)
        return [cell for cell in map(cells.get, [centre + offset for offset in offsets]) if cell]

    @staticmethod
    def _bound(lat: float, ring: int, per_degree: int, side_m: float) -> float:
        """Anything outside rings 0..`ring` is more than `ring` cells away north-south or east-west."""
        widest = min(90.0, abs(lat) + (ring + 1) / per_degree)  # where a cell is narrowest
        return ring * side_m * math.cos(math.radians(widest)) * _BOUND_MARGIN

    def _covered(self, row: int, column: int, ring: int, per_degree: int) -> bool:
        south, west = _cell(self._south, self._west, per_degree)
        north, east = _cell(self._north, self._east, per_degree)
        return row - ring <= south and north <= row + ring and column - ring <= west and east <= column + ring
