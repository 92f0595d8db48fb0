"""Region tree, grid placement and the region scope every read is filtered by."""

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from geoalchemy2.shape import from_shape
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.validation import explain_validity
from sqlalchemy import Select, func, literal, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from dispatch.kernel.errors import InvalidInput, NotFound
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
    return region


def place(session: Session, point: LatLng) -> Placement:
    """The grid covering a point (ST_Covers: a point on a shared border still lands in one),
    else the nearest grid with outside_area set.

    Raises:
        NotFound: no grid exists at all.
    """
    pt = sql_point(point)
    branch = aliased(Region)
    columns = (Region.id, Region.path, branch.id.label("branch_id"), branch.code.label("branch_code"))
    grid = session.execute(
        select(*columns).join(branch, branch.id == Region.parent_id)
        .where(Region.kind == RegionKind.GRID, func.ST_Covers(Region.boundary, pt))
        .order_by(Region.id).limit(1)
    ).first()
    outside_area = grid is None
    if grid is None:
        # KNN (<->) on the GiST index picks candidates in degrees; the final order
        # is by true distance on the sphere, since a degree of longitude shrinks northwards.
        candidates = (select(Region.id).where(Region.kind == RegionKind.GRID)
                      .order_by(Region.boundary.op("<->")(pt)).limit(8).scalar_subquery())
        grid = session.execute(
            select(*columns).join(branch, branch.id == Region.parent_id).where(Region.id.in_(candidates))
            .order_by(func.ST_Distance(func.geography(Region.boundary), func.geography(pt)), Region.id).limit(1)
        ).first()
        if grid is None:
            raise NotFound("no grid is defined yet: create regions first")
    return Placement(grid_id=grid.id, grid_path=grid.path, branch_id=grid.branch_id,
                     branch_code=grid.branch_code, outside_area=outside_area)


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
