from typing import Annotated

from fastapi import APIRouter, Depends, Query
from geoalchemy2.shape import to_shape
from shapely.geometry import mapping

from dispatch.kernel.auth import Actor, ActorDep, Role, require_role
from dispatch.kernel.db import SessionDep
from dispatch.kernel.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from dispatch.kernel.inputs import Text
from dispatch.kernel.problems import problem_docs
from dispatch.kernel.settings import SettingsDep
from geo import geocoding, regions
from geo.crs import Crs, to_wgs84
from geo.gazetteer import PlaceHit
from geo.geocoding import Geocoded
from geo.latlng import LatLng
from geo.models import Region
from geo.schemas import PlaceHitRead, PlaceRef, PlaceSearchRead, RegionCreate, RegionRead, ReverseRead

router = APIRouter(prefix="/api/v1")
Admin = Annotated[Actor, Depends(require_role(Role.ADMIN))]
Lat = Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False, description="latitude in `crs`")]
Lng = Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False, description="longitude in `crs`")]


def _read(region: Region) -> RegionRead:
    boundary = dict(mapping(to_shape(region.boundary))) if region.boundary is not None else None
    return RegionRead(id=region.id, code=region.code, name=region.name, kind=region.kind,
                      parent_id=region.parent_id, boundary=boundary, created_at=region.created_at)


@router.post("/regions", response_model=RegionRead, status_code=201, tags=["set-up"],
             responses=problem_docs(InvalidInput, Forbidden))
def create_region(body: RegionCreate, session: SessionDep, admin: Admin) -> RegionRead:
    """Add a company, branch or grid (grids need a WGS-84 boundary) (admin)."""
    region = regions.create_region(session, **body.model_dump())
    session.refresh(region)
    return _read(region)


@router.get("/regions", response_model=list[RegionRead], tags=["set-up"])
def list_regions(session: SessionDep, actor: ActorDep) -> list[RegionRead]:
    """The caller's regions with their boundaries as GeoJSON; a subscriber sees the whole service area."""
    # A subscriber is bound to no region, yet places a pin on the report page's map: the grids'
    # names and outlines are the operator's published service area, not a secret.
    scope = None if actor.role is Role.SUBSCRIBER else actor.scope
    return [_read(r) for r in regions.list_regions(session, scope=scope)]


def _reverse_read(found: Geocoded) -> ReverseRead:
    a = found.address
    place = None
    if a.place_id is not None and a.place_name is not None and a.distance_m is not None:
        place = PlaceRef(id=a.place_id, name=a.place_name, distance_m=a.distance_m)
    return ReverseRead(address=a.address, grid_id=a.grid_id, outside_area=a.outside_area, source=found.source,
                       place=place)


def _hit_read(hit: PlaceHit) -> PlaceHitRead:
    return PlaceHitRead(name=hit.name, kind=hit.kind, address=hit.address, lat=hit.lat, lng=hit.lng,
                        region_id=hit.region_id, score=hit.score, source=hit.source)


@router.get("/geo/reverse", response_model=ReverseRead, response_model_exclude_none=True, tags=["geo"],
            responses=problem_docs(Unauthorized, InvalidInput, NotFound))
def reverse_geocode(lat: Lat, lng: Lng, session: SessionDep, actor: ActorDep, settings: SettingsDep,
                    crs: Crs = Crs.WGS84) -> ReverseRead:
    """The readable address of a point, its grid and whether it lies outside the service area.

    Worded by Tencent Location Service when configured and reachable (`source: tencent`),
    else by the offline gazetteer (`source: gazetteer`).
    """
    found = geocoding.reverse(session, to_wgs84(LatLng(lat, lng), crs), cfg=settings.geocoder)
    return _reverse_read(found)


@router.get("/geo/search", response_model=PlaceSearchRead, tags=["geo"],
            responses=problem_docs(Unauthorized, InvalidInput))
def search_places(q: Annotated[Text, Query(min_length=1, max_length=100, description="part of a place name")],
                  session: SessionDep, actor: ActorDep, settings: SettingsDep,
                  limit: Annotated[int, Query(ge=1, le=50)] = 10) -> PlaceSearchRead:
    """Places of the service area matching q (WGS-84 points): gazetteer first, then Tencent's suggestions."""
    hits = geocoding.search(session, q, limit=limit, cfg=settings.geocoder)
    return PlaceSearchRead(items=[_hit_read(h) for h in hits])
