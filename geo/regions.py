"""Region tree, grid placement and the region scope every read is filtered by."""

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from geoalchemy2.shape import from_shape, to_shape
from shapely import STRtree
from shapely.geometry import MultiPolygon, Point, Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity
from sqlalchemy import Select, func, literal, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from dispatch.kernel.cache import Remembered
from dispatch.kernel.errors import InvalidInput, NotFound
from geo import hexgrid
from geo.latlng import LatLng
from geo.models import Region, RegionKind
from geo.points import SRID, sql_point

ALLOWED_PARENT = {RegionKind.COMPANY: None, RegionKind.BRANCH: RegionKind.COMPANY,
                  RegionKind.GRID: RegionKind.BRANCH}


@dataclass(frozen=True)
class Placement:
    """Where a point belongs: its grid (nearest one when outside all) and that grid's branch."""

    grid_id: int
    grid_path: str
    branch_id: int
    branch_code: str
    outside_area: bool
    grid_name: str
    branch_name: str

    def lies_within(self, region_ids: tuple[int, ...]) -> bool:
        return bool(path_ids(self.grid_path) & set(region_ids))


def path_steps(path: str) -> list[int]:
    """The region ids on a materialised path, from the top down to the region itself."""
    return [int(part) for part in path.strip("/").split("/") if part]


def path_ids(path: str) -> set[int]:
    return set(path_steps(path))


def _multipolygon(field: str, geojson: dict[str, Any]) -> MultiPolygon:
    if geojson.get("type") not in {"Polygon", "MultiPolygon"}:
        raise InvalidInput(field, "must be a GeoJSON Polygon or MultiPolygon")
    try:
        geom = shape(geojson)
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise InvalidInput(field, f"not valid GeoJSON: {exc}") from exc
    if geom.is_empty or not geom.is_valid:
        raise InvalidInput(field, f"invalid polygon: {explain_validity(geom)}")
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise InvalidInput(field, "coordinates must be WGS-84 [lng, lat] within range")
    return MultiPolygon([geom]) if isinstance(geom, Polygon) else geom


def create_region(session: Session, *, code: str, name: str, kind: RegionKind,
                  parent_id: int | None = None, boundary: dict[str, Any] | None = None) -> Region:
    """Add a company, branch or grid under its parent.

    Raises:
        InvalidInput: wrong parent kind, a grid without a boundary, a bad polygon.
    """
    expected_parent = ALLOWED_PARENT[kind]
    parent = None
    if expected_parent is None:
        if parent_id is not None:
            raise InvalidInput("parent_id", "a company has no parent")
    else:
        if parent_id is None:
            raise InvalidInput("parent_id", f"a {kind} needs a {expected_parent} parent")
        parent = session.get(Region, parent_id)
        if parent is None or parent.kind != expected_parent:
            raise InvalidInput("parent_id", f"must be the id of a {expected_parent}")
    if kind is RegionKind.GRID and boundary is None:
        raise InvalidInput("boundary", "a grid needs a boundary polygon")
    if session.scalar(select(Region.id).where(Region.code == code)) is not None:
        raise InvalidInput("code", f"region code {code!r} is taken")
    region = Region(code=code, name=name, kind=kind, parent_id=parent_id)
    if boundary is not None:
        region.boundary = from_shape(_multipolygon("boundary", boundary), srid=SRID)
    session.add(region)
    session.flush()
    region.path = f"{parent.path if parent else '/'}{region.id}/"
    session.flush()
    _grid_index.forget()
    return region


# Resolution 10 hexagons (~15,000 m²): most of a city's lie inside one grid; a city has a few
# hundred thousand at most, each remembered once it is asked for.
PLACEMENT_CELL_RES = 10
MAX_PLACEMENT_CELLS = 500_000


class GridIndex:
    """Every grid's boundary in this process: a point is placed without a PostGIS round trip.

    ST_Covers on the grids' polygons cost about 2 ms of database time per
    point, more than the rest of a nearest search or an intake together;
    prepared shapely polygons in an STRtree answer in tens of microseconds,
    and an H3 cell known to lie inside one grid alone answers with a lookup.
    """

    def __init__(self, grids: list[Placement], boundaries: list[BaseGeometry]) -> None:
        self._grids = grids
        self._boundaries = np.array(boundaries, dtype=object)
        shapely.prepare(self._boundaries)
        self._tree = STRtree(self._boundaries)
        # GEOS builds the tree's nodes and a prepared polygon's locators on first use, and shapely lets go of
        # the GIL meanwhile: request threads racing to a fresh index crashed the API process in libgeos.
        self._geos = threading.Lock()
        # cell -> the one grid its whole hexagon lies in, or None where grids meet (judged per point).
        self._cells: dict[str, Placement | None] = {}

    def covering(self, point: LatLng) -> Placement | None:
        """The grid covering the point (on a shared border, the lowest id, as PostGIS orders it)."""
        cell = hexgrid.cell_of(point, PLACEMENT_CELL_RES)
        if cell not in self._cells and len(self._cells) < MAX_PLACEMENT_CELLS:
            self._cells[cell] = self._alone_in(cell)
        alone = self._cells.get(cell)
        return alone if alone is not None else self._covering_point(point)

    def _alone_in(self, cell: str) -> Placement | None:
        hexagon = Polygon([(c.lng, c.lat) for c in hexgrid.cell_boundary(cell)])
        with self._geos:
            touching = self._tree.query(hexagon, predicate="intersects")
            alone = len(touching) == 1 and shapely.covers(self._boundaries[touching[0]], hexagon)
        return self._grids[touching[0]] if alone else None

    def _covering_point(self, point: LatLng) -> Placement | None:
        here = Point(point.lng, point.lat)
        with self._geos:
            near = self._tree.query(here)
            covering = near[shapely.covers(self._boundaries[near], here)]
        return min((self._grids[i] for i in covering), key=lambda g: g.grid_id, default=None)


# Grids are drawn a few times a year; another process's new grid is seen within this.
GRID_INDEX_TTL_S = 10.0
_grid_index: Remembered[str, GridIndex] = Remembered(ttl_s=GRID_INDEX_TTL_S, maxsize=1)


def _grids() -> Select[int, str, int, str, str, str]:
    """Grids with what a placement names: their branch's id, code and name."""
    branch = aliased(Region)
    return (select(Region.id, Region.path, branch.id.label("branch_id"), branch.code.label("branch_code"),
                   Region.name, branch.name.label("branch_name")).join(branch, branch.id == Region.parent_id)
            .where(Region.kind == RegionKind.GRID))


def _placement(row: Any, *, outside_area: bool) -> Placement:
    return Placement(grid_id=row.id, grid_path=row.path, branch_id=row.branch_id, branch_code=row.branch_code,
                     outside_area=outside_area, grid_name=row.name, branch_name=row.branch_name)


def _load_grid_index(session: Session) -> GridIndex:
    rows = session.execute(_grids().add_columns(Region.boundary).where(Region.boundary.is_not(None))).all()
    return GridIndex([_placement(row, outside_area=False) for row in rows], [to_shape(row.boundary) for row in rows])


def grid_index(session: Session) -> GridIndex:
    return _grid_index.get_or_load("grids", lambda: _load_grid_index(session))


def place(session: Session, point: LatLng) -> Placement:
    """The grid covering a point (ST_Covers semantics: a point on a shared border still lands in one),
    else the nearest grid with outside_area set.

    Raises:
        NotFound: no grid exists at all.
    """
    inside = grid_index(session).covering(point)
    if inside is not None:
        return inside
    pt = sql_point(point)
    # KNN (<->) on the GiST index picks candidates in degrees; the final order
    # is by true distance on the sphere, since a degree of longitude shrinks northwards.
    candidates = (select(Region.id).where(Region.kind == RegionKind.GRID)
                  .order_by(Region.boundary.op("<->")(pt)).limit(8).scalar_subquery())
    grid = session.execute(
        _grids().where(Region.id.in_(candidates))
        .order_by(func.ST_Distance(func.geography(Region.boundary), func.geography(pt)), Region.id).limit(1)
    ).first()
    if grid is None:
        raise NotFound("no grid is defined yet: create regions first")
    return _placement(grid, outside_area=True)


@lru_cache(maxsize=1024)
def subtree_ids(region_ids: tuple[int, ...]) -> Select[int]:
    """Ids of the given regions and of everything below them.

    Cached: SQL constructs are immutable, and building this one on every
    scoped read cost as much as running it.
    """
    top = aliased(Region)
    return (select(Region.id)
            .join(top, Region.path.startswith(top.path))
            .where(top.id.in_(region_ids)))


def within(column: ColumnElement[int] | Any, region_ids: tuple[int, ...] | None) -> ColumnElement[bool]:
    """SQL condition: the region in `column` lies inside one of `region_ids` (None: everywhere)."""
    if region_ids is None:
        return literal(True)
    if not region_ids:
        return literal(False)
    return column.in_(subtree_ids(region_ids))


def region_in_scope(session: Session, region_id: int, scope: tuple[int, ...] | None) -> Region:
    """A region a caller names as a filter.

    Raises: InvalidInput (no such region), NotFound (outside the caller's regions: existence must not leak).
    """
    region = session.get(Region, region_id)
    if region is None:
        raise InvalidInput("region_id", f"no region {region_id}")
    if scope is not None and not path_ids(region.path) & set(scope):
        raise NotFound(f"region {region_id} does not exist")
    return region


def covers_any(region_id: int, region_ids: tuple[int, ...], session: Session) -> bool:
    """True when `region_id` lies inside one of `region_ids`."""
    path = session.scalar(select(Region.path).where(Region.id == region_id)) or ""
    return bool(path_ids(path) & set(region_ids))



def list_regions(session: Session, *, scope: tuple[int, ...] | None) -> list[Region]:
    """The regions a caller may see: their subtrees and the ancestors leading to them."""
    query = select(Region).order_by(Region.path)
    if scope is not None:
        ancestors = {i for path in session.scalars(select(Region.path).where(Region.id.in_(scope)))
                     for i in path_ids(path)}
        query = query.where(within(Region.id, scope) | Region.id.in_(ancestors))
    return list(session.scalars(query))
