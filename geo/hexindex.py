"""Points in memory, found nearest first: H3 cells at a few resolutions.

A search takes the disk of cells around the point at the finest resolution, then one more ring of
cells at a time, and moves to a coarser resolution when a few rings found too little, so a dense old
town and the empty steppe around it both cost a few batches. Each batch comes with the distance
within which every point has been handed out at that resolution (`hexgrid.disk_bound_m`), so a caller
stops as soon as its answer cannot change.

A point's cell at each resolution is the cell it lies in there, not the parent of its finest cell: a
parent's children stick out of its hexagon by up to about a child's width, which the distance bound
would have to give up on both sides, the searcher's and the point's.
"""

from collections.abc import Iterator
from typing import Generic, TypeVar

from geo import hexgrid

Item = TypeVar("Item")

# Finest first, a factor of 7 in area (√7 in edge) between them. At each the first batch is the disk of
# two rings (19 cells) and then a ring per batch up to RINGS_PER_SIZE, except at the coarsest, which
# widens until every point has come: res 9 hands out everything within 367 then 558 m, res 8 0.97 and
# 1.48 km, res 7 2.6 and 3.9, res 6 6.8 and 10.4, res 5 18, 27 km and on. In `make bench` a caller's
# cost went with the number of batches more than with the cells or points in them (it packs each
# cell's points into arrays and judges a batch's at once), and 19 cells at res 9 hold the nearest few
# dozen technicians of a town centre, as far out as a tie band (300 m) past the nearest.
RESOLUTIONS = (9, 8, 7, 6, 5)
FIRST_RINGS = 2
RINGS_PER_SIZE = 3
_BOUNDS_M = [[hexgrid.disk_bound_m(res, ring) for ring in range(8)] for res in RESOLUTIONS]


class Cell(Generic[Item]):
    """The items of one cell, by id, and a slot for a packed form of them that a caller builds and
    keeps here; the index empties the slot whenever the cell changes."""

    __slots__ = ("items", "packed")

    def __init__(self) -> None:
        self.items: dict[int, Item] = {}
        self.packed: object | None = None


class HexIndex(Generic[Item]):
    """Items placed at points, each under an integer id; `near` hands them out in widening batches."""

    def __init__(self) -> None:
        self._sizes: list[dict[int, Cell[Item]]] = [{} for _ in RESOLUTIONS]
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, ident: int, lat: float, lng: float, item: Item) -> None:
        for cells, res in zip(self._sizes, RESOLUTIONS, strict=True):
            key = hexgrid.cell_id(lat, lng, res)
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = Cell()
            cell.items[ident] = item
            cell.packed = None
        self._count += 1

    def remove(self, ident: int, lat: float, lng: float) -> None:
        """Take out the item placed under `ident` at this point."""
        for cells, res in zip(self._sizes, RESOLUTIONS, strict=True):
            key = hexgrid.cell_id(lat, lng, res)
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
        last = len(RESOLUTIONS) - 1
        for size, (cells, res, bounds) in enumerate(zip(self._sizes, RESOLUTIONS, _BOUNDS_M, strict=True)):
            centre = hexgrid.cell_id(lat, lng, res)
            batch = [cell for cell in map(cells.get, hexgrid.disk_ids(centre, FIRST_RINGS)) if cell]
            ring, seen = FIRST_RINGS, len(batch)  # cells, each handed out once: all of them, every item
            yield size, batch, bounds[ring]
            while seen < len(cells) and (size == last or ring < RINGS_PER_SIZE):
                ring += 1
                batch = [cell for cell in map(cells.get, hexgrid.ring_ids(centre, ring)) if cell]
                seen += len(batch)
                yield size, batch, bounds[ring] if ring < len(bounds) else hexgrid.disk_bound_m(res, ring)
            if seen >= len(cells):
                return
