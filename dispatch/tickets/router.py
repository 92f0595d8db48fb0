from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Header, Query, Response, UploadFile
from fastapi.responses import FileResponse

from dispatch.kernel.auth import Actor, ActorDep, Role, require_role
from dispatch.kernel.db import SessionDep
from dispatch.kernel.errors import Forbidden, InvalidInput, NotFound, OutOfScope
from dispatch.kernel.pagination import Page, PageDep, page_of
from dispatch.kernel.problems import problem_docs
from dispatch.kernel.redis import RedisDep
from dispatch.kernel.settings import SettingsDep
from dispatch.tickets import attachments, offers, service, stats
from dispatch.tickets.deps import TicketInScope
from dispatch.tickets.errors import (
    AlreadyTaken,
    ConcurrentChange,
    IdempotencyKeyReused,
    InvalidTransition,
    LimitReached,
    NotYourTicket,
    TicketNotFound,
    TooLarge,
    UnsupportedMedia,
)
from dispatch.tickets.models import Attachment, TicketState, TicketType
from dispatch.tickets.schemas import (
    ArriveBody,
    AssignBody,
    AttachmentRead,
    CompleteBody,
    FollowupBody,
    MyOfferRead,
    NearestRead,
    OfferRead,
    ReasonBody,
    StatsRead,
    TicketCreate,
    TicketDetail,
    TicketPatch,
    TicketRead,
    TicketTypeCreate,
    TicketTypeRead,
    TicketTypeUpdate,
    event_read,
    ticket_read,
)
from geo import crs
from geo.latlng import LatLng
from technicians.deps import CurrentTechnician
from workload.queries import Span

router = APIRouter(prefix="/api/v1", tags=["tickets"])
Admin = Annotated[Actor, Depends(require_role(Role.ADMIN))]
TRANSITION_ERRORS = problem_docs(TicketNotFound, InvalidTransition, ConcurrentChange, Forbidden)


@router.post("/tickets", response_model=TicketRead, status_code=201,
             responses=problem_docs(InvalidInput, IdempotencyKeyReused, OutOfScope, Forbidden))
def create_ticket(body: TicketCreate, actor: ActorDep, session: SessionDep, redis: RedisDep, settings: SettingsDep,
                  response: Response,
                  idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> TicketRead:
    """Report a fault. 201 with the new ticket; 200 when it merged into the subscriber's open
    ticket of the same type; the same Idempotency-Key and body within 24 h returns the first result."""
    intake = service.create_ticket(session, redis, actor=actor, body=body, settings=settings,
                                   idempotency_key=idempotency_key)
    if intake.merged:
        response.status_code = 200
    return ticket_read(intake.ticket, merged=intake.merged,
                       offers=[OfferRead(technician_id=c.technician_id, distance_m=round(c.distance_m, 1))
                               for c in intake.offers])


@router.get("/tickets", response_model=Page[TicketRead])
def list_tickets(actor: ActorDep, session: SessionDep, page: PageDep, state: TicketState | None = None,
                 type_code: str | None = None, region_id: int | None = None, technician_id: int | None = None,
                 created_from: datetime | None = None, created_to: datetime | None = None) -> dict[str, Any]:
    """Tickets the caller may see, newest first."""
    rows = service.list_tickets(session, actor=actor, limit=page.limit + 1, after_id=page.after_id, state=state,
                                type_code=type_code, region_id=region_id, technician_id=technician_id,
                                created_from=created_from, created_to=created_to)
    return page_of([ticket_read(t) for t in rows], page)


@router.get("/tickets/{ticket_id}", response_model=TicketDetail, responses=problem_docs(TicketNotFound))
def get_ticket(ticket: TicketInScope, session: SessionDep) -> TicketDetail:
    """One ticket with every step it went through."""
    events = [event_read(e) for e in service.list_events(session, ticket)]
    return TicketDetail(**ticket_read(ticket).model_dump(), events=events)


@router.post("/tickets/{ticket_id}/grab", response_model=TicketRead,
             responses=problem_docs(AlreadyTaken, OutOfScope, LimitReached, TicketNotFound))
def grab_ticket(ticket_id: int, me: CurrentTechnician, actor: ActorDep, session: SessionDep, redis: RedisDep,
                settings: SettingsDep) -> TicketRead:
    """Claim a pooled ticket for the calling technician; exactly one caller wins."""
    return ticket_read(service.grab(session, redis, ticket_id=ticket_id, technician=me, actor=actor,
                                    settings=settings))


@router.post("/tickets/{ticket_id}/assign", response_model=TicketRead,
             responses=problem_docs(TicketNotFound, InvalidTransition, AlreadyTaken, InvalidInput, Forbidden))
def assign_ticket(body: AssignBody, ticket: TicketInScope, actor: ActorDep, session: SessionDep, redis: RedisDep,
                  settings: SettingsDep) -> TicketRead:
    """Force-assign a pending or timed-out ticket, or reassign an accepted one (dispatcher, admin)."""
    service.assign(session, redis, ticket=ticket, technician_id=body.technician_id, actor=actor, note=body.note,
                   settings=settings)
    return ticket_read(ticket)


@router.post("/tickets/{ticket_id}/release", response_model=TicketRead,
             responses={**TRANSITION_ERRORS, **problem_docs(NotYourTicket)})
def release_ticket(body: ReasonBody, ticket: TicketInScope, actor: ActorDep, session: SessionDep, redis: RedisDep,
                   settings: SettingsDep) -> TicketRead:
    """Hand an accepted ticket back to the pool (its technician, dispatcher)."""
    service.release(session, redis, ticket=ticket, actor=actor, reason=body.reason, settings=settings)
    return ticket_read(ticket)


@router.post("/tickets/{ticket_id}/arrive", response_model=TicketRead,
             responses={**TRANSITION_ERRORS, **problem_docs(NotYourTicket)})
def arrive(body: ArriveBody, ticket: TicketInScope, actor: ActorDep, session: SessionDep) -> TicketRead:
    """Check in on site with the phone's position (its technician)."""
    where = crs.to_wgs84(LatLng(body.location.lat, body.location.lng), body.location.crs)
    service.arrive(session, ticket=ticket, actor=actor, location=where)
    return ticket_read(ticket)


@router.post("/tickets/{ticket_id}/complete", response_model=TicketRead,
             responses={**TRANSITION_ERRORS, **problem_docs(NotYourTicket)})
def complete(body: CompleteBody, ticket: TicketInScope, actor: ActorDep, session: SessionDep, redis: RedisDep,
             settings: SettingsDep) -> TicketRead:
    """Finish the work; the ticket waits for the follow-up (its technician)."""
    service.complete(session, redis, ticket=ticket, actor=actor, body=body, settings=settings)
    return ticket_read(ticket)


@router.post("/tickets/{ticket_id}/followup", response_model=TicketRead, responses=TRANSITION_ERRORS)
def followup(body: FollowupBody, ticket: TicketInScope, actor: ActorDep, session: SessionDep,
             settings: SettingsDep) -> TicketRead:
    """Record the rating and close the ticket (its subscriber, clerk, dispatcher)."""
    service.followup(session, ticket=ticket, actor=actor, satisfaction=body.satisfaction, comment=body.comment,
                     settings=settings)
    return ticket_read(ticket)


@router.post("/tickets/{ticket_id}/invalidate", response_model=TicketRead, responses=TRANSITION_ERRORS)
def invalidate(body: ReasonBody, ticket: TicketInScope, actor: ActorDep, session: SessionDep, redis: RedisDep,
               settings: SettingsDep) -> TicketRead:
    """Mark a fake or duplicate report invalid (dispatcher, admin)."""
    service.invalidate(session, redis, ticket=ticket, actor=actor, reason=body.reason, settings=settings)
    return ticket_read(ticket)


@router.patch("/tickets/{ticket_id}", response_model=TicketRead,
              responses={**TRANSITION_ERRORS, **problem_docs(InvalidInput)})
def change_type(body: TicketPatch, ticket: TicketInScope, actor: ActorDep, session: SessionDep) -> TicketRead:
    """Change the ticket's type, audited; SLA due times follow (dispatcher, admin)."""
    service.retype(session, ticket=ticket, actor=actor, type_code=body.type_code)
    return ticket_read(ticket)


@router.post("/tickets/{ticket_id}/attachments", response_model=AttachmentRead, status_code=201,
             responses=problem_docs(TicketNotFound, TooLarge, UnsupportedMedia))
def upload_attachment(ticket: TicketInScope, actor: ActorDep, session: SessionDep, settings: SettingsDep,
                      file: Annotated[UploadFile, File()]) -> Attachment:
    """Attach a photo, voice note or video; the type is read from the bytes."""
    return attachments.store(session, ticket=ticket, actor=actor, upload=file.file, media_dir=settings.media_dir,
                             max_image_bytes=settings.max_image_bytes, max_media_bytes=settings.max_media_bytes)


@router.get("/attachments/{attachment_id}", response_class=FileResponse, responses=problem_docs(NotFound))
def download_attachment(attachment_id: int, actor: ActorDep, session: SessionDep,
                        settings: SettingsDep) -> FileResponse:
    """The file, for those who may see its ticket."""
    attachment = attachments.get_visible(session, attachment_id, actor=actor)
    return FileResponse(attachments.path_of(attachment, settings.media_dir), media_type=attachment.content_type)


@router.get("/ticket-types", response_model=list[TicketTypeRead], tags=["set-up"])
def list_ticket_types(session: SessionDep,
                      include_inactive: Annotated[bool, Query()] = False) -> list[TicketType]:
    """Ticket types with their skills, standard hours, rates, SLAs and self-help tips (public)."""
    return service.list_types(session, include_inactive=include_inactive)


@router.post("/ticket-types", response_model=TicketTypeRead, status_code=201, tags=["set-up"],
             responses=problem_docs(InvalidInput, Forbidden))
def create_ticket_type(body: TicketTypeCreate, session: SessionDep, admin: Admin) -> TicketType:
    """Add a ticket type (admin)."""
    return service.create_type(session, body=body)


@router.patch("/ticket-types/{code}", response_model=TicketTypeRead, tags=["set-up"],
              responses=problem_docs(NotFound, Forbidden))
def update_ticket_type(code: str, body: TicketTypeUpdate, session: SessionDep, admin: Admin) -> TicketType:
    """Edit a ticket type (admin); tickets keep the SLA they were created with."""
    return service.update_type(session, code=code, body=body)


@router.get("/technicians/nearest", response_model=list[NearestRead], tags=["technicians"],
            responses=problem_docs(Forbidden, OutOfScope, InvalidInput))
def nearest_technicians(actor: ActorDep, session: SessionDep, redis: RedisDep, settings: SettingsDep,
                        lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
                        lng: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
                        crs_: Annotated[crs.Crs, Query(alias="crs")] = crs.Crs.WGS84,
                        k: Annotated[int, Query(ge=1, le=50)] = 5,
                        type_code: str | None = None) -> list[NearestRead]:
    """The K nearest technicians who could take a ticket here now (on duty, fresh, skilled, not full)."""
    point = crs.to_wgs84(LatLng(lat, lng), crs_)
    found = service.nearest_technicians(session, redis, actor=actor, point=point, k=k, type_code=type_code,
                                        settings=settings)
    return [NearestRead(technician_id=t.id, name=t.name, phone=t.phone, distance_m=round(c.distance_m, 1),
                        active_count=c.active) for t, c in found]


@router.get("/me/offers", response_model=list[MyOfferRead], tags=["technicians"],
            responses=problem_docs(Forbidden))
def my_offers(me: CurrentTechnician, session: SessionDep) -> list[MyOfferRead]:
    """Tickets offered to me that nobody has taken yet, nearest first."""
    return [MyOfferRead(ticket=ticket_read(ticket), distance_m=offer.distance_m, ring=offer.ring,
                        offered_at=offer.offered_at)
            for offer, ticket in offers.open_offers(session, technician_id=me.id)]


@router.get("/me/tickets", response_model=list[TicketRead], tags=["technicians"],
            responses=problem_docs(Forbidden))
def my_tickets(me: CurrentTechnician, session: SessionDep) -> list[TicketRead]:
    """My accepted tickets and those waiting for follow-up, oldest first."""
    return [ticket_read(t) for t in service.held_by(session, technician_id=me.id)]


Analyst = Annotated[Actor, Depends(require_role(Role.ADMIN, Role.DISPATCHER, Role.PAYROLL))]


@router.get("/stats", response_model=StatsRead, response_model_by_alias=True, tags=["statistics"],
            responses=problem_docs(InvalidInput, NotFound, Forbidden))
def ticket_stats(start: Annotated[date, Query(alias="from", description="first local date, included")],
                 end: Annotated[date, Query(alias="to", description="last local date, included")],
                 session: SessionDep, actor: Analyst, settings: SettingsDep,
                 region_id: int | None = None) -> dict[str, Any]:
    """Tickets reported in the period (local dates) in the caller's regions: counts by state, type, grid and
    technician, time to accept and to complete (median, p90, minutes), SLA attainment, timeout, invalid and
    satisfaction."""
    span = Span.of(start, end, max_days=settings.workload.max_range_days)
    return stats.ticket_stats(session, actor=actor,
                              period=stats.Period(span=span, tz=settings.timezone, region_id=region_id))
