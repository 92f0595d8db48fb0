"""The offline gazetteer: the service area's named places, for reverse geocoding and address search."""

import math
import threading
from dataclasses import dataclass
from enum import StrEnum

import shapely
from shapely import STRtree
from shapely.geometry import Point
from sqlalchemy import ColumnElement, case, func, or_, select
from sqlalchemy.orm import Session

from dispatch.kernel.cache import Remembered
from dispatch.kernel.errors import InvalidInput
from geo import regions
from geo.distance import haversine_m
from geo.latlng import LatLng
from geo.models import Place
from geo.points import to_wkb

# A place farther than this no longer helps anyone find the door: the address
# then stops at the grid.
NEARBY_M = 500.0
# A degree of latitude, for the box that picks a point's candidate places.
METRES_PER_DEGREE = 111_320.0
# pg_trgm pads a string with two blanks in front and one behind, so a one- or
# two-character CJK query shares no trigram with a longer name containing it:
# below this length only the substring match can find anything.
_TRIGRAM_MIN_CHARS = 3
SEPARATOR = " · "


class Source(StrEnum):
    """Which geocoder produced an answer."""

    TENCENT = "tencent"
    GAZETTEER = "gazetteer"


@dataclass(frozen=True)
class Address:
    """A readable address of a point and the grid it was placed in."""

    address: str
    grid_id: int
    outside_area: bool
    place_id: int | None
    distance_m: float | None
    place_name: str | None = None


@dataclass(frozen=True)
class PlaceHit:
    """A search result; lat/lng are WGS-84, score orders exact > contains > similar."""

    name: str
    kind: str
    address: str | None
    lat: float
    lng: float
    region_id: int | None
    score: float | None
    source: Source = Source.GAZETTEER


@dataclass(frozen=True)
class _Near:
    id: int
    name: str
    distance_m: float


def _area_label(placement: regions.Placement) -> str:
    """The placement as `branch · grid`, with the grid marked `以外` for a point outside every grid."""
    return SEPARATOR.join((placement.branch_name, placement.grid_name + ("以外" if placement.outside_area else "")))


class PlaceIndex:
    """The gazetteer's points in this process: every intake names its nearest place without a KNN query.

    The places are few (a city has hundreds to a few tens of thousands) and
    change when someone adds one; a box of NEARBY_M around the point picks the
    candidates from an STRtree and the sphere orders them, as PostGIS did.
    """

    def __init__(self, places: list[_Near], points: list[LatLng]) -> None:
        self._places = places
        self._points = points
        self._tree = STRtree([Point(p.lng, p.lat) for p in points])
        # GEOS builds the tree on its first query, with the GIL let go: threads racing to a fresh index crash.
        self._geos = threading.Lock()

    def nearest(self, point: LatLng) -> _Near | None:
        """The nearest place within NEARBY_M (on a tie, the lowest id)."""
        dlat = 1.01 * NEARBY_M / METRES_PER_DEGREE  # a margin: the sphere's degree is a little shorter
        dlng = dlat / max(math.cos(math.radians(point.lat)), 1e-6)
        box = shapely.box(point.lng - dlng, point.lat - dlat, point.lng + dlng, point.lat + dlat)
        with self._geos:
            found = self._tree.query(box)
        hits = ((haversine_m(point, self._points[i]), self._places[i]) for i in found)
        best = min(((d, place) for d, place in hits if d <= NEARBY_M), key=lambda h: (h[0], h[1].id), default=None)
        return None if best is None else _Near(id=best[1].id, name=best[1].name, distance_m=best[0])


# Another process's new place is named in addresses within this.
PLACE_INDEX_TTL_S = 10.0
_place_index: Remembered[str, PlaceIndex] = Remembered(ttl_s=PLACE_INDEX_TTL_S, maxsize=1)


def _load_place_index(session: Session) -> PlaceIndex:
    rows = session.execute(select(Place.id, Place.name, func.ST_Y(Place.location), func.ST_X(Place.location))).all()
    return PlaceIndex([_Near(id=pid, name=name, distance_m=0.0) for pid, name, _, _ in rows],
                      [LatLng(lat, lng) for _, _, lat, lng in rows])


def _nearest_place(session: Session, point: LatLng) -> _Near | None:
    return _place_index.get_or_load("places", lambda: _load_place_index(session)).nearest(point)


def _about_m(distance_m: float) -> int:
    # Tens of metres: finer would promise more than demo points and phone fixes hold.
    return max(10, round(distance_m / 10) * 10)


def reverse(session: Session, point: LatLng, *, placement: regions.Placement | None = None) -> Address:
    """The readable address of a WGS-84 point: branch · grid · the nearest named place within 500 m.

    Raises:
        NotFound: no grid exists at all.
    """
    placement = placement or regions.place(session, point)
    parts = [_area_label(placement)]
    near = _nearest_place(session, point)
    if near is not None:
        parts.append(f"{near.name}附近(约{_about_m(near.distance_m)}米)")
    return Address(address=SEPARATOR.join(parts), grid_id=placement.grid_id, outside_area=placement.outside_area,
                   place_id=near.id if near else None, distance_m=round(near.distance_m, 1) if near else None,
                   place_name=near.name if near else None)


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _score(term: str, contains: ColumnElement[bool]) -> ColumnElement[float]:
    # Tiers that never overlap, so the order is simply by score: exact 1,
    # containing the query (0.5, 0.9], only trigram-similar [0, 0.5).
    similarity = func.similarity(Place.name, term)
    return case((func.lower(Place.name) == term.lower(), 1.0),
                (contains, 0.5 + 0.4 * similarity), else_=0.5 * similarity)


def search(session: Session, q: str, *, limit: int = 10) -> list[PlaceHit]:
    """Places whose name contains q (first) or is trigram-similar to it, best first.

    Raises:
        InvalidInput: q is empty or only whitespace (field `q`).
    """
    term = q.strip()
    if not term:
        raise InvalidInput("q", "must contain a search term")
    contains = Place.name.ilike(f"%{_escape_like(term)}%", escape="\\")
    # `%` is pg_trgm's similarity operator (threshold pg_trgm.similarity_threshold,
    # 0.3 by default); unlike a similarity() comparison it can use ix_place_name_trgm.
    matches = contains if len(term) < _TRIGRAM_MIN_CHARS else or_(contains, Place.name.op("%")(term))
    score = _score(term, contains).label("score")
    rows = session.execute(
        select(Place.name, Place.kind, Place.address, func.ST_Y(Place.location), func.ST_X(Place.location),
               Place.region_id, score)
        .where(matches).order_by(score.desc(), Place.name, Place.id).limit(limit)
    )
    return [PlaceHit(name=name, kind=kind, address=address, lat=lat, lng=lng, region_id=region_id,
                     score=round(float(s), 4))
            for name, kind, address, lat, lng, region_id, s in rows]


def find_place(session: Session, *, name: str, kind: str) -> Place | None:
    """The place with this name and kind, if the gazetteer has it."""
    return session.scalars(select(Place).where(Place.name == name, Place.kind == kind).limit(1)).first()


def add_place(session: Session, *, name: str, kind: str, point: LatLng) -> Place:
    """Add a named place at a WGS-84 point, filed under its grid with the grid's address.

    Raises:
        NotFound: no grid exists at all.
    """
    placement = regions.place(session, point)
    place = Place(name=name, kind=kind, address=_area_label(placement), region_id=placement.grid_id,
                  location=to_wkb(point))
    session.add(place)
    session.flush()
    _place_index.forget()
    return place
