from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from dispatch.kernel.auth import Actor, Role, require_role
from dispatch.kernel.db import SessionDep
from dispatch.kernel.errors import Forbidden, InvalidInput, NotFound, OutOfScope
from dispatch.kernel.inputs import Id
from dispatch.kernel.pagination import Page, PageDep, page_of
from dispatch.kernel.problems import problem_docs
from dispatch.kernel.redis import RedisDep
from dispatch.kernel.settings import Settings
from geo import crs
from geo.latlng import LatLng
from technicians import presence, service
from technicians.deps import CurrentTechnician, PingingTechnician
from technicians.errors import NoBranch, NotATechnician, OffDuty, OffShift, RateLimited
from technicians.models import Technician
from technicians.schemas import (
    DutyRead,
    DutyUpdate,
    LocationPing,
    OnDutyRead,
    RosterRead,
    ShiftIn,
    TechnicianCreate,
    TechnicianPatch,
    TechnicianRead,
)

router = APIRouter(prefix="/api/v1/technicians", tags=["technicians"])
Manager = Annotated[Actor, Depends(require_role(Role.ADMIN, Role.DISPATCHER))]
Staff = Annotated[Actor, Depends(require_role(Role.ADMIN, Role.DISPATCHER, Role.CLERK, Role.PAYROLL))]


def _read(technician: Technician) -> TechnicianRead:
    return TechnicianRead.model_validate(
        {**{c: getattr(technician, c) for c in TechnicianRead.model_fields if c != "bound"},
         "bound": technician.wechat_openid is not None})


@router.post("", response_model=TechnicianRead, status_code=201,
             responses=problem_docs(Forbidden, OutOfScope, InvalidInput))
def create_technician(body: TechnicianCreate, session: SessionDep, actor: Manager) -> TechnicianRead:
    """Register a technician and their phone log-in in a region of the caller's."""
    technician = service.create_technician(session, actor=actor, **body.model_dump())
    return _read(technician)


@router.get("", response_model=Page[TechnicianRead], responses=problem_docs(Forbidden))
def list_technicians(session: SessionDep, actor: Staff, page: PageDep) -> dict[str, Any]:
    """Technicians of the caller's regions, by id."""
    rows = service.list_technicians(session, scope=actor.scope, limit=page.limit + 1, after_id=page.after_id)
    return page_of([_read(t) for t in rows], page)


@router.get("/on-duty", response_model=list[OnDutyRead], responses=problem_docs(Forbidden))
def on_duty_technicians(session: SessionDep, redis: RedisDep, actor: Staff) -> list[OnDutyRead]:
    """On-duty technicians of the caller's regions with their live position and load (the console's map)."""
    return [OnDutyRead(technician_id=t.technician_id, name=t.name, lat=t.point.lat, lng=t.point.lng,
                       active_count=t.active) for t in presence.on_duty(session, redis, scope=actor.scope)]


@router.get("/{technician_id}", response_model=TechnicianRead, responses=problem_docs(NotFound))
def get_technician(technician_id: Id, session: SessionDep, actor: Staff) -> TechnicianRead:
    """One technician of the caller's regions."""
    return _read(service.get_technician(session, technician_id, scope=actor.scope))


@router.patch("/{technician_id}", response_model=TechnicianRead,
              responses=problem_docs(Forbidden, OutOfScope, InvalidInput, NotFound))
def change_technician(technician_id: Id, body: TechnicianPatch, session: SessionDep, redis: RedisDep,
                      actor: Manager) -> TechnicianRead:
    """Change a technician's name, phone, skills, max_active or region in the caller's regions (audited)."""
    technician = service.get_technician(session, technician_id, scope=actor.scope)
    changes = service.TechnicianChanges(**body.model_dump(exclude_none=True))
    return _read(service.change_technician(session, redis, technician=technician, actor=actor, changes=changes))


me_router = APIRouter(prefix="/api/v1/me", tags=["technicians"])


@me_router.put("/duty", response_model=DutyRead, responses=problem_docs(NotATechnician, NoBranch))
def set_duty(body: DutyUpdate, me: CurrentTechnician, session: SessionDep, redis: RedisDep) -> DutyRead:
    """Go on or off duty; off duty stops offers and drops your position from the live index."""
    located = presence.set_duty(session, redis, technician=me, on_duty=body.on_duty)
    return DutyRead(on_duty=body.on_duty, located=located)


@me_router.put("/location", status_code=204, response_class=Response,
               responses=problem_docs(OffDuty, OffShift, RateLimited, NotATechnician))
async def send_location(body: LocationPing, me: PingingTechnician, request: Request) -> Response:
    """Report the phone's position (any crs; kept as WGS-84). Refused, not stored, off duty or off shift."""
    # async, with app state read directly: this is the hottest path (every phone, every few seconds),
    # and each sync dependency would cost a worker-thread hop.
    settings: Settings = request.app.state.settings
    point = crs.to_wgs84(LatLng(body.lat, body.lng), body.crs)
    await presence.record_ping_async(request.app.state.redis_async, ref=me, point=point, accuracy_m=body.accuracy_m,
                                     now=datetime.now(UTC), tz=settings.timezone, cfg=settings.presence)
    return Response(status_code=204)


@router.get("/{technician_id}/roster", response_model=RosterRead, responses=problem_docs(NotFound))
def get_roster(technician_id: Id, session: SessionDep, actor: Staff) -> RosterRead:
    """A technician's weekly on-duty windows (local time); none means any time."""
    technician = service.get_technician(session, technician_id, scope=actor.scope)
    return _roster(technician.id, presence.list_roster(session, technician.id))


@router.put("/{technician_id}/roster", response_model=RosterRead, responses=problem_docs(NotFound, InvalidInput))
def set_roster(technician_id: Id, body: list[ShiftIn], session: SessionDep, redis: RedisDep,
               actor: Manager) -> RosterRead:
    """Replace a technician's weekly shifts; outside them they are not offered tickets."""
    technician = service.get_technician(session, technician_id, scope=actor.scope)
    shifts = [presence.Shift(s.weekday, s.starts, s.ends) for s in body]
    return _roster(technician.id, presence.set_roster(session, redis, technician=technician, shifts=shifts))


def _roster(technician_id: int, shifts: list[presence.Shift]) -> RosterRead:
    return RosterRead(technician_id=technician_id,
                      shifts=[ShiftIn(weekday=s.weekday, starts=s.starts, ends=s.ends) for s in shifts])
