from typing import Annotated

from fastapi import APIRouter, Depends
from geoalchemy2.shape import to_shape
from shapely.geometry import mapping

from dispatch.kernel.auth import Actor, ActorDep, Role, require_role
from dispatch.kernel.db import SessionDep
from dispatch.kernel.errors import Forbidden, InvalidInput
from dispatch.kernel.problems import problem_docs
from geo import regions
from geo.models import Region
from geo.schemas import RegionCreate, RegionRead

router = APIRouter(prefix="/api/v1", tags=["set-up"])
Admin = Annotated[Actor, Depends(require_role(Role.ADMIN))]


def _read(region: Region) -> RegionRead:
    boundary = dict(mapping(to_shape(region.boundary))) if region.boundary is not None else None
    return RegionRead(id=region.id, code=region.code, name=region.name, kind=region.kind,
                      parent_id=region.parent_id, boundary=boundary, created_at=region.created_at)


@router.post("/regions", response_model=RegionRead, status_code=201, responses=problem_docs(InvalidInput, Forbidden))
def create_region(body: RegionCreate, session: SessionDep, admin: Admin) -> RegionRead:
    """Add a company, branch or grid (grids need a WGS-84 boundary) (admin)."""
    region = regions.create_region(session, **body.model_dump())
    session.refresh(region)
    return _read(region)


@router.get("/regions", response_model=list[RegionRead])
def list_regions(session: SessionDep, actor: ActorDep) -> list[RegionRead]:
    """The caller's regions with their boundaries as GeoJSON."""
    return [_read(r) for r in regions.list_regions(session, scope=actor.scope)]
