import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Header, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from redis import Redis
from starlette.background import BackgroundTask

from dispatch.kernel.auth import (
    OPTIONAL_CREDENTIALS,
    STAFF_ROLES,
    Actor,
    ActorDep,
    OptionalActorDep,
    Role,
    UnitActorDep,
    require_role,
)
from dispatch.kernel.db import SessionDep, UnitOfWork, UnitOfWorkDep
from dispatch.kernel.errors import Forbidden, InvalidInput, NotFound, OutOfScope
from dispatch.kernel.inputs import Count, Day, Id, Moment, Text
from dispatch.kernel.pagination import CountedPage, Page, PageDep, PageParams, page_of
from dispatch.kernel.problems import problem_docs
from dispatch.kernel.redis import RedisDep
from dispatch.kernel.settings import Settings, SettingsDep
from dispatch.tickets import (
    attachments,
    export,
    grabs,
    idempotency,
    incidents,
    modes,
    offers,
    priority,
    queries,
    service,
    sla,
    stats,
    tips,
)
from dispatch.tickets.deps import AttachableTicket, TicketInScope, ViewerDep
from dispatch.tickets.errors import (
    AlreadyTaken,
    AttachmentBudgetSpent,
    ConcurrentChange,
    GrabbingTooFast,
    IdempotencyKeyReused,
    InvalidTransition,
    LimitReached,
    LocationUnknown,
    NotDeclinable,
    NotOnDuty,
    NotYourTicket,
    TicketNotFound,
    TooLarge,
    UnsupportedMedia,
    UrgedRecently,
)
from dispatch.tickets.models import (
    Attachment,
    ImportantSite,
    Incident,
    Priority,
    Ticket,
    TicketState,
    TicketType,
    TipOutcome,
)
from dispatch.tickets.permissions import Viewer
from dispatch.tickets.queries import SlaStatus, TicketOrder
from dispatch.tickets.schemas import (
    AcknowledgeBody,
    ArriveBody,
    AssignBody,
    AttachmentRead,
    CellsRead,
    CellStatsRead,
    CompleteBody,
    DeclineBody,
    DispatchModeBody,
    DispatchModeRead,
    EscalationChainBody,
    EscalationChainRead,
    FollowupBody,
    ImportantSiteCreate,
    ImportantSiteRead,
    IncidentCreate,
    IncidentDetach,
    IncidentRead,
    LocationRead,
    MyOfferRead,
    NearestRead,
    OfferRead,
    PoolTicketRead,
    ReasonBody,
    SentOfferRead,
    SeriesPoint,
    SeriesRead,
    StatsRead,
    SurgeBody,
    SurgeRead,
    SurgeSwitchRead,
    TicketCreate,
    TicketDetail,
    TicketOffersRead,
    TicketPatch,
    TicketRead,
    TicketTypeCreate,
    TicketTypeRead,
    TicketTypeUpdate,
    TipOutcomeCountRead,
    TipOutcomeCreate,
    TipOutcomeRead,
    TipOutcomeSummary,
    TipsRead,
    TipsUpdate,
    UrgeBody,
    VisitRead,
    chain_read,
    event_read,
    surge_read,
    ticket_read,
)
from geo import crs
from geo.latlng import LatLng
from geo.models import Region
from geo.points import from_wkb
from grab_pool import pool
from technicians.deps import CallingTechnician, CurrentTechnician
from workload.export import MEDIA_TYPES, ExportFormat
from workload.queries import Span

router = APIRouter(prefix="/api/v1", tags=["tickets"])
Admin = Annotated[Actor, Depends(require_role(Role.ADMIN))]
Staff = Annotated[Actor, Depends(require_role(Role.ADMIN, Role.DISPATCHER, Role.CLERK, Role.PAYROLL))]
TRANSITION_ERRORS = problem_docs(TicketNotFound, InvalidTransition, ConcurrentChange, Forbidden)
# A phone resends a queued tap until it hears an answer: the same key and body within 24 h answer as the first.
IdempotencyKeyHeader = Annotated[str | None, Header(max_length=200, description=(
    "The same key and body within 24 h return the first result; another body with it is 422."))]
QUEUED_ERRORS = {**TRANSITION_ERRORS, **problem_docs(NotYourTicket, IdempotencyKeyReused)}


# Who reads statistics and exports: the period's tickets in their regions.
Analyst = Annotated[Actor, Depends(require_role(Role.ADMIN, Role.DISPATCHER, Role.PAYROLL))]


def stats_period(start: Annotated[Day, Query(alias="from", description="first local date, included")],
                 end: Annotated[Day, Query(alias="to", description="last local date, included")],
                 settings: SettingsDep, region_id: Id | None = None) -> stats.Period:
    """The statistics' period from the query: local dates in the configured zone, at most the allowed span."""
    return stats.Period(span=Span.of(start, end, max_days=settings.workload.max_range_days), tz=settings.timezone,
                        region_id=region_id)


StatsPeriod = Annotated[stats.Period, Depends(stats_period)]


@router.post("/tickets", response_model=TicketRead, status_code=201,
             responses={200: {"model": TicketRead, "description": "Merged into the subscriber's open ticket"},
                        **problem_docs(InvalidInput, IdempotencyKeyReused, OutOfScope, Forbidden)})
async def create_ticket(body: TicketCreate, actor: UnitActorDep, unit_of_work: UnitOfWorkDep, request: Request,
                        response: Response, idempotency_key: IdempotencyKeyHeader = None) -> TicketRead:
    """Report a fault. 201 with the new ticket; 200 when it merged into the subscriber's open
    ticket of the same type; the same Idempotency-Key and body within 24 h returns the first result.

    Async on purpose: the report is taken and committed in one worker thread, where a request session would
    commit in a second hop.
    """
    state = request.app.state
    answer, merged = await state.db.run(_take_report, unit_of_work, state.redis, actor=actor, body=body,
                                        settings=state.settings, idempotency_key=idempotency_key)
    if merged:
        response.status_code = 200
    return answer


def _take_report(unit_of_work: UnitOfWork, redis: Redis, *, actor: Actor, body: TicketCreate, settings: Settings,
                 idempotency_key: str | None) -> tuple[TicketRead, bool]:
    with unit_of_work() as session:
        intake = service.create_ticket(session, redis, actor=actor, body=body, settings=settings,
                                       idempotency_key=idempotency_key)
        offered = [OfferRead(technician_id=c.technician_id, distance_m=round(c.distance_m, 1)) for c in intake.offers]
        return ticket_read(intake.ticket, Viewer(actor=actor), merged=intake.merged, offers=offered), intake.merged


# A bounded search term: long enough for an address, short enough that a trigram scan stays cheap.
SearchTerm = Annotated[Text, Query(min_length=2, max_length=64, description="Part of the number, the address, or "
                                                                          "the subscriber's phone")]


@router.get("/tickets", response_model=CountedPage[TicketRead], responses=problem_docs(InvalidInput))
def list_tickets(viewer: ViewerDep, session: SessionDep, page: PageDep, state: TicketState | None = None,
                 type_code: Text | None = None, region_id: Id | None = None, technician_id: Id | None = None,
                 created_from: Moment | None = None, created_to: Moment | None = None,
                 sla_status: Annotated[SlaStatus | None, Query(alias="sla")] = None, priority: Priority | None = None,
                 q: SearchTerm | None = None, order: TicketOrder = TicketOrder.NEWEST,
                 with_total: bool = False) -> dict[str, Any]:
    """Tickets the caller may see, newest first (`order=priority`: P1 first, newest first within a level;
    `order=due`: P1 first, the least time left to the response deadline, or the resolution deadline once held,
    within a level); `sla=breached` (red) or `sla=warned` (due soon) filter by SLA, `priority=P1` by priority,
    `q` searches number, address and phone. `with_total=true` adds `total`, the count over all pages.

    A technician sees the pool of their grab scope (without the subscriber's contact) and their own tickets."""
    _check_cursor(page, order)
    found = queries.TicketFilter(state=state, type_code=type_code, region_id=region_id, technician_id=technician_id,
                                 created_from=created_from, created_to=created_to, sla=sla_status, priority=priority,
                                 q=q)
    rows = service.list_tickets(session, viewer=viewer, found=found, page=page, order=order)
    rank = (lambda t: queries.priority_rank(t.priority)) if order is not TicketOrder.NEWEST else None
    listed = page_of([ticket_read(t, viewer) for t in rows], page, rank=rank,
                     at=_due if order is TicketOrder.DUE else None)
    total = service.count_tickets(session, viewer=viewer, found=found) if with_total else None
    return {**listed, "total": total}


def _due(ticket: TicketRead) -> datetime:
    return queries.due_of(ticket.state, response_due_at=ticket.response_due_at,
                          resolution_due_at=ticket.resolution_due_at)


def _check_cursor(page: PageParams, order: TicketOrder) -> None:
    """A cursor carries its order's keys: one from another order would page from a wrong place."""
    if page.after_id is None:
        return
    ranked = page.after_rank in (1, 2, 3, 4)
    fits = {TicketOrder.NEWEST: page.after_rank is None,
            TicketOrder.PRIORITY: ranked and page.after_at is None,
            TicketOrder.DUE: ranked and page.after_at is not None}[order]
    if not fits:
        raise InvalidInput("cursor", "a cursor of another order: start again without it")


@router.get("/tickets/export", response_class=FileResponse, tags=["statistics"],
            responses=problem_docs(InvalidInput, NotFound, Forbidden))
def export_tickets(start: Annotated[Day, Query(alias="from", description="first local date, included")],
                   end: Annotated[Day, Query(alias="to", description="last local date, included")],
                   session: SessionDep, actor: Analyst, settings: SettingsDep, region_id: Id | None = None,
                   state: TicketState | None = None, format: ExportFormat = ExportFormat.CSV) -> FileResponse:
    """Every ticket reported in the period (local dates) in the caller's regions, in any state (or `state`), with
    its milestones (local times), SLA outcome, holder, rating and 催办 count: csv (UTF-8 with BOM), xlsx or json."""
    period = stats.Period(span=Span.of(start, end, max_days=settings.workload.max_range_days), tz=settings.timezone,
                          region_id=region_id)
    return _file(lambda path: export.export_tickets(session, actor=actor, period=period, state=state, fmt=format,
                                                    path=path),
                 name=f"tickets_{start}_{end}{f'_region{region_id}' if region_id else ''}", fmt=format)


def _file(write: Callable[[Path], None], *, name: str, fmt: ExportFormat) -> FileResponse:
    """Written to a temporary file while the session is open, then sent and removed: rows stream from the
    database to the disk, never into memory."""
    with tempfile.NamedTemporaryFile(prefix="export-", suffix=f".{fmt}", delete=False) as handle:
        path = Path(handle.name)
    try:
        write(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(path, media_type=MEDIA_TYPES[fmt], filename=f"{name}.{fmt}",
                        background=BackgroundTask(path.unlink, missing_ok=True))


@router.get("/tickets/{ticket_id}", response_model=TicketDetail, responses=problem_docs(TicketNotFound))
def get_ticket(ticket: TicketInScope, viewer: ViewerDep, session: SessionDep, redis: RedisDep) -> TicketDetail:
    """One ticket with every step it went through (a technician reading the pool: without who and why), and who
    is coming with a rough arrival time (for those who see it in full: its subscriber, staff, its holder)."""
    in_full = viewer.sees_in_full(ticket)
    events = [event_read(e, in_full=in_full) for e in service.list_events(session, ticket)]
    visit = service.visit_of(session, redis, ticket) if in_full else None
    return TicketDetail(**ticket_read(ticket, viewer).model_dump(), events=events, visit=_visit_read(visit))


def _visit_read(visit: service.Visit | None) -> VisitRead | None:
    if visit is None:
        return None
    return VisitRead(technician_name=visit.technician.name, technician_phone=visit.technician.phone,
                     arrival_estimate_at=visit.arrival_estimate_at)


@router.get("/tickets/{ticket_id}/offers", response_model=TicketOffersRead,
            responses=problem_docs(TicketNotFound, Forbidden))
def list_ticket_offers(ticket: TicketInScope, session: SessionDep, redis: RedisDep,
                       actor: Staff) -> TicketOffersRead:
    """Whom the ticket was offered to, where they are, and how far its rings reached, for the console's map."""
    sent = offers.list_offers(session, redis, ticket)
    return TicketOffersRead(ring=ticket.ring, ring_radius_m=ticket.ring_radius_m,
                            offers=[SentOfferRead.model_validate(offer, from_attributes=True) for offer in sent])


@router.post("/tickets/{ticket_id}/grab", response_model=TicketRead,
             responses=problem_docs(AlreadyTaken, OutOfScope, LimitReached, TicketNotFound, NotOnDuty,
                                    LocationUnknown, GrabbingTooFast))
async def grab_ticket(ticket_id: Id, caller: CallingTechnician, unit_of_work: UnitOfWorkDep,
                      request: Request) -> TicketRead:
    """Claim a pooled ticket for the calling technician; exactly one caller wins.

    Async on purpose: the pool's script turns losers away on the event loop,
    with no worker thread and no PostgreSQL statement; only a winner (or a
    grab the pool cannot decide) goes on to commit in a thread.
    """
    state = request.app.state
    grabber = grabs.grabber_of(caller.ref)
    if grabber is None:
        raise OutOfScope("technicians of the whole company grab from a branch's pool")
    await grabs.admit(state.redis_async, caller.ref, settings=state.settings, now_s=time.time())
    claimed = await pool.grab_async(state.redis_async, grabber, ticket_id, request_id=pool.new_request_id(),
                                    lease_ms=state.settings.pool.lease_ms)
    grabs.refuse(claimed, ticket_id, grabber)
    ticket = await state.db.run(grabs.settle, unit_of_work, state.redis, claimed=claimed, grabber=grabber,
                                ticket_id=ticket_id, actor=caller.actor, settings=state.settings)
    return ticket_read(ticket, Viewer(actor=caller.actor, technician=caller.ref))


@router.post("/tickets/{ticket_id}/assign", response_model=TicketRead,
             responses=problem_docs(TicketNotFound, InvalidTransition, AlreadyTaken, InvalidInput, Forbidden))
def assign_ticket(body: AssignBody, ticket: TicketInScope, viewer: ViewerDep, session: SessionDep, redis: RedisDep,
                  settings: SettingsDep,
                  if_match: Annotated[Count | None, Header(description="the ticket version the dispatcher saw")] = None,
                  ) -> TicketRead:
    """Force-assign a pending or timed-out ticket, or reassign an accepted one (dispatcher, admin).

    With `If-Match: <version>` the assign applies only to the ticket as the
    dispatcher saw it: a force-assign that a grab beat answers 409
    `already_taken` instead of taking the ticket off the technician who won.
    """
    service.require_version(ticket, if_match)
    grabs.assign(session, redis, ticket=ticket, technician_id=body.technician_id, actor=viewer.actor, note=body.note,
                 settings=settings)
    return ticket_read(ticket, viewer)


@router.post("/tickets/{ticket_id}/release", response_model=TicketRead, responses=QUEUED_ERRORS)
def release_ticket(body: ReasonBody, ticket: TicketInScope, viewer: ViewerDep, session: SessionDep, redis: RedisDep,
                   settings: SettingsDep, idempotency_key: IdempotencyKeyHeader = None) -> TicketRead:
    """Hand an accepted ticket back to the pool (its technician, dispatcher)."""
    service.release(session, redis, ticket=ticket, actor=viewer.actor, reason=body.reason, settings=settings,
                    once=idempotency.Request.of(idempotency_key, "release", str(ticket.id), body.model_dump_json()))
    return ticket_read(ticket, viewer)


@router.post("/tickets/{ticket_id}/decline", response_model=TicketRead,
             responses={**TRANSITION_ERRORS, **problem_docs(NotYourTicket, NotDeclinable, InvalidInput)})
def decline_ticket(body: DeclineBody, ticket: TicketInScope, viewer: ViewerDep, session: SessionDep,
                   redis: RedisDep, settings: SettingsDep) -> TicketRead:
    """Decline a system assignment with a reason (拒单; its technician, before arrival, within the decline
    window): it goes to the next best technician, never back to you, or into the pool."""
    modes.decline(session, redis, ticket=ticket, actor=viewer.actor, reason=body.reason_code, note=body.note,
                  settings=settings)
    return ticket_read(ticket, viewer)


@router.post("/tickets/{ticket_id}/arrive", response_model=TicketRead, responses=QUEUED_ERRORS)
def arrive(body: ArriveBody, ticket: TicketInScope, viewer: ViewerDep, session: SessionDep,
           idempotency_key: IdempotencyKeyHeader = None) -> TicketRead:
    """Check in on site with the phone's position (its technician)."""
    where = crs.to_wgs84(LatLng(body.location.lat, body.location.lng), body.location.crs)
    service.arrive(session, ticket=ticket, actor=viewer.actor, location=where,
                   once=idempotency.Request.of(idempotency_key, "arrive", str(ticket.id), body.model_dump_json()))
    return ticket_read(ticket, viewer)


@router.post("/tickets/{ticket_id}/complete", response_model=TicketRead, responses=QUEUED_ERRORS)
def complete(body: CompleteBody, ticket: TicketInScope, viewer: ViewerDep, session: SessionDep, redis: RedisDep,
             settings: SettingsDep, idempotency_key: IdempotencyKeyHeader = None) -> TicketRead:
    """Finish the work; the ticket waits for the follow-up (its technician)."""
    service.complete(session, redis, ticket=ticket, actor=viewer.actor, body=body, settings=settings,
                     once=idempotency.Request.of(idempotency_key, "complete", str(ticket.id), body.model_dump_json()))
    return ticket_read(ticket, viewer)


@router.post("/tickets/{ticket_id}/followup", response_model=TicketRead, responses=TRANSITION_ERRORS)
def followup(body: FollowupBody, ticket: TicketInScope, viewer: ViewerDep, session: SessionDep,
             settings: SettingsDep) -> TicketRead:
    """Record the rating and close the ticket (its subscriber, clerk, dispatcher)."""
    service.followup(session, ticket=ticket, actor=viewer.actor, satisfaction=body.satisfaction,
                     comment=body.comment, settings=settings)
    return ticket_read(ticket, viewer)


@router.post("/tickets/{ticket_id}/invalidate", response_model=TicketRead, responses=TRANSITION_ERRORS)
def invalidate(body: ReasonBody, ticket: TicketInScope, viewer: ViewerDep, session: SessionDep, redis: RedisDep,
               settings: SettingsDep) -> TicketRead:
    """Mark a fake or duplicate report invalid (dispatcher, admin)."""
    service.invalidate(session, redis, ticket=ticket, actor=viewer.actor, reason=body.reason, settings=settings)
    return ticket_read(ticket, viewer)


@router.patch("/tickets/{ticket_id}", response_model=TicketRead,
              responses={**TRANSITION_ERRORS, **problem_docs(InvalidInput)})
def change_ticket(body: TicketPatch, ticket: TicketInScope, viewer: ViewerDep, session: SessionDep, redis: RedisDep,
                  settings: SettingsDep) -> TicketRead:
    """Change the ticket's type, its priority or both, each an audited event; SLA due times follow (dispatcher,
    admin)."""
    if body.type_code is not None:
        service.retype(session, redis, ticket=ticket, actor=viewer.actor, type_code=body.type_code,
                       settings=settings)
    if body.priority is not None:
        service.prioritize(session, redis, ticket=ticket, actor=viewer.actor, level=body.priority,
                           reason=body.reason, settings=settings)
    return ticket_read(ticket, viewer)


@router.get("/incidents", response_model=list[IncidentRead], tags=["incidents"])
def list_incidents(viewer: ViewerDep, session: SessionDep, open_only: Annotated[bool, Query(alias="open")] = True,
                   ) -> list[IncidentRead]:
    """Outage incidents in the caller's regions, the most urgent first (`open=false`: resolved ones too)."""
    found = service.list_incidents(session, viewer=viewer, open_only=open_only)
    children = incidents.child_ids(session, [incident.id for incident, _ in found])
    return [_incident_read(incident, ticket, viewer, children.get(incident.id, [])) for incident, ticket in found]


@router.post("/incidents", response_model=IncidentRead, status_code=201, tags=["incidents"],
             responses=problem_docs(Forbidden, TicketNotFound, InvalidInput, ConcurrentChange))
def group_reports(body: IncidentCreate, viewer: ViewerDep, session: SessionDep, redis: RedisDep,
                  settings: SettingsDep) -> IncidentRead:
    """Group reports of one fault into an incident by hand (dispatcher, admin): its own ticket is offered, the
    reports are not, and they are completed with it."""
    incident = service.group(session, redis, viewer=viewer, ticket_ids=body.ticket_ids, settings=settings)
    return _incident_read(incident, session.get_one(Ticket, incident.ticket_id), viewer,
                          incidents.child_ids(session, [incident.id]).get(incident.id, []))


@router.post("/incidents/{incident_id}/detach", response_model=TicketRead, tags=["incidents"],
             responses=problem_docs(Forbidden, NotFound, TicketNotFound, InvalidInput, InvalidTransition))
def detach_report(incident_id: Id, body: IncidentDetach, viewer: ViewerDep, session: SessionDep,
                  redis: RedisDep) -> TicketRead:
    """Take a report out of its incident (dispatcher, admin): it is offered on its own again."""
    return ticket_read(service.detach(session, redis, viewer=viewer, incident_id=incident_id,
                                      ticket_id=body.ticket_id), viewer)


def _incident_read(incident: Incident, ticket: Ticket, viewer: Viewer, children: list[int]) -> IncidentRead:
    return IncidentRead(id=incident.id, ticket=ticket_read(ticket, viewer), ticket_ids=children,
                        type_code=incident.type_code, branch_id=incident.branch_id, opened_by=incident.opened_by,
                        created_at=incident.created_at, last_report_at=incident.last_report_at,
                        resolved_at=incident.resolved_at)


@router.get("/important-sites", response_model=list[ImportantSiteRead], tags=["priority"],
            responses=problem_docs(Forbidden))
def list_important_sites(actor: ActorDep, session: SessionDep) -> list[ImportantSiteRead]:
    """Places whose reports go first (a hospital, an enterprise's building), in the caller's branches."""
    return [_site_read(site) for site in priority.list_sites(session, actor=actor)]


@router.post("/important-sites", response_model=ImportantSiteRead, status_code=201, tags=["priority"],
             responses=problem_docs(Forbidden, OutOfScope))
def add_important_site(body: ImportantSiteCreate, actor: ActorDep, session: SessionDep) -> ImportantSiteRead:
    """Mark a place as important: every report within `radius_m` of it is raised as its importance says
    (dispatchers and admins; audited)."""
    point = crs.to_wgs84(LatLng(body.location.lat, body.location.lng), body.location.crs)
    return _site_read(priority.add_site(session, actor=actor, name=body.name, importance=body.importance,
                                        point=point, radius_m=body.radius_m))


@router.delete("/important-sites/{site_id}", status_code=204, tags=["priority"],
               responses=problem_docs(Forbidden, NotFound))
def remove_important_site(site_id: Id, actor: ActorDep, session: SessionDep) -> Response:
    priority.remove_site(session, actor=actor, site_id=site_id)
    return Response(status_code=204)


def _site_read(site: ImportantSite) -> ImportantSiteRead:
    point = from_wkb(site.location)
    return ImportantSiteRead(id=site.id, name=site.name, importance=site.importance,
                             location=LocationRead(lat=point.lat, lng=point.lng), radius_m=site.radius_m,
                             branch_id=site.branch_id, created_by=site.created_by, created_at=site.created_at)


@router.post("/tickets/{ticket_id}/urge", response_model=TicketRead,
             responses=problem_docs(TicketNotFound, Forbidden, InvalidTransition, UrgedRecently))
def urge_ticket(body: UrgeBody, ticket: TicketInScope, viewer: ViewerDep, session: SessionDep) -> TicketRead:
    """催办: tell whoever holds the ticket (or, pending, the technicians it is offered to, and the grid's
    dispatchers on the feed) that someone is waiting. A subscriber may urge their ticket once per 10 minutes."""
    return ticket_read(service.urge(session, ticket=ticket, actor=viewer.actor, note=body.note), viewer)


@router.post("/tickets/{ticket_id}/acknowledge", response_model=TicketRead, tags=["sla"],
             responses=problem_docs(TicketNotFound, InvalidTransition, Forbidden))
def acknowledge_escalation(body: AcknowledgeBody, ticket: TicketInScope, viewer: ViewerDep,
                           session: SessionDep) -> TicketRead:
    """Stop a breached ticket's escalation: you have taken it on; it stays red until dealt with (dispatcher, admin)."""
    sla.acknowledge(session, ticket=ticket, actor=viewer.actor, note=body.note)
    return ticket_read(ticket, viewer)


@router.post("/tickets/{ticket_id}/attachments", response_model=AttachmentRead, status_code=201,
             responses=problem_docs(TicketNotFound, NotYourTicket, Forbidden, TooLarge, UnsupportedMedia,
                                    AttachmentBudgetSpent, IdempotencyKeyReused))
def upload_attachment(ticket: AttachableTicket, actor: ActorDep, session: SessionDep, settings: SettingsDep,
                      file: Annotated[UploadFile, File()], idempotency_key: IdempotencyKeyHeader = None) -> Attachment:
    """Attach a photo, voice note or video, listed in the ticket's `attachments`; the type is read from the bytes
    (its subscriber, its technician, dispatcher, clerk, admin). A ticket holds at most 20 files and 50 MB in all
    (configurable): 409 past that."""
    return attachments.store(session, ticket=ticket, actor=actor, upload=file.file, media_dir=settings.media_dir,
                             caps=attachments.Caps.of(settings), idempotency_key=idempotency_key)


@router.get("/tickets/{ticket_id}/attachments", response_model=list[AttachmentRead],
            responses=problem_docs(TicketNotFound))
def list_attachments(ticket: TicketInScope, session: SessionDep) -> list[Attachment]:
    """The files on a ticket, oldest first, for those who may see the ticket."""
    return attachments.list_for(session, ticket)


@router.get("/attachments/{attachment_id}", response_class=FileResponse, responses=problem_docs(NotFound))
def download_attachment(attachment_id: Id, viewer: ViewerDep, session: SessionDep,
                        settings: SettingsDep) -> FileResponse:
    """The file, for those who may see its ticket."""
    attachment = attachments.get_visible(session, attachment_id, viewer=viewer)
    return FileResponse(attachments.path_of(attachment, settings.media_dir), media_type=attachment.content_type)


@router.get("/ticket-types", response_model=list[TicketTypeRead], tags=["set-up"], openapi_extra=OPTIONAL_CREDENTIALS)
def list_ticket_types(session: SessionDep, caller: OptionalActorDep,
                      include_inactive: Annotated[bool, Query()] = False) -> list[TicketType]:
    """Ticket types with their skills, standard hours, rates, SLAs and self-help tips (public).

    Retired types are listed (with `retired: true`) only to staff: a subscriber is no longer offered them.
    """
    staff = caller is not None and caller.role in STAFF_ROLES
    return service.list_types(session, include_inactive=include_inactive, include_retired=staff)


@router.post("/ticket-types", response_model=TicketTypeRead, status_code=201, tags=["set-up"],
             responses=problem_docs(InvalidInput, Forbidden))
def create_ticket_type(body: TicketTypeCreate, session: SessionDep, admin: Admin) -> TicketType:
    """Add a ticket type (admin)."""
    return service.create_type(session, body=body)


@router.patch("/ticket-types/{code}", response_model=TicketTypeRead, tags=["set-up"],
              responses=problem_docs(NotFound, Forbidden))
def update_ticket_type(code: Text, body: TicketTypeUpdate, session: SessionDep, admin: Admin) -> TicketType:
    """Edit or retire a ticket type (admin; audited); tickets keep the SLA they were created with."""
    return service.update_type(session, code=code, body=body, actor=admin)


@router.get("/technicians/nearest", response_model=list[NearestRead], tags=["technicians"],
            responses=problem_docs(Forbidden, OutOfScope, InvalidInput))
async def nearest_technicians(actor: ActorDep, session: SessionDep, redis: RedisDep, settings: SettingsDep,
                              lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
                              lng: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
                              crs_: Annotated[crs.Crs, Query(alias="crs")] = crs.Crs.WGS84,
                              k: Annotated[int, Query(ge=1, le=50)] = 5,
                              type_code: Text | None = None) -> list[NearestRead]:
    """The K nearest technicians who could take a ticket here now (on duty, fresh, skilled, not full)."""
    # On the event loop: the search is a tenth of a millisecond on this process's copy of the open
    # sets, less than the hop to a worker thread. Grids, types and names come from the process's
    # memory; only a miss (every few seconds) or a copy catching up reads PostgreSQL or Redis here.
    point = crs.to_wgs84(LatLng(lat, lng), crs_)
    found = service.nearest_technicians(session, redis, actor=actor, point=point, k=k, type_code=type_code,
                                        settings=settings)
    return [NearestRead(technician_id=c.technician_id, name=card.name, phone=card.phone,
                        distance_m=round(c.distance_m, 1), active_count=c.active) for c, card in found]


@router.get("/me/offers", response_model=list[MyOfferRead], tags=["technicians"],
            responses=problem_docs(Forbidden))
def my_offers(me: CurrentTechnician, viewer: ViewerDep, session: SessionDep) -> list[MyOfferRead]:
    """Tickets offered to me that nobody has taken yet, nearest first (without the subscriber's contact)."""
    return [MyOfferRead(ticket=ticket_read(ticket, viewer), distance_m=offer.distance_m, ring=offer.ring,
                        offered_at=offer.offered_at)
            for offer, ticket in offers.open_offers(session, technician_id=me.id)]


@router.get("/me/pool", response_model=list[PoolTicketRead], tags=["technicians"],
            responses=problem_docs(Forbidden, LocationUnknown))
def my_pool(caller: CallingTechnician, session: SessionDep, redis: RedisDep, settings: SettingsDep,
            response: Response, radius_m: Annotated[int | None, Query(ge=100, le=50000)] = None,
            limit: Annotated[int | None, Query(ge=1, le=500)] = None) -> list[PoolTicketRead]:
    """Grabbable tickets in my scope near my last position, nearest first (without the subscriber's contact):
    at most `limit` (default POOL_NEAR_LIMIT); `X-Total-Count` says how many lie within the radius in all."""
    nearby = grabs.near_me(session, redis, ref=caller.ref, radius_m=radius_m or settings.pool.near_radius_m,
                           limit=limit or settings.pool.near_limit, within_ring=settings.offer.pool_within_ring)
    response.headers["X-Total-Count"] = str(nearby.total)
    viewer = Viewer(actor=caller.actor, technician=caller.ref)
    return [PoolTicketRead(**ticket_read(ticket, viewer).model_dump(), distance_m=round(metres, 1))
            for ticket, metres in nearby.found]


@router.get("/me/tickets", response_model=list[TicketRead], tags=["technicians"],
            responses=problem_docs(Forbidden))
def my_tickets(me: CurrentTechnician, viewer: ViewerDep, session: SessionDep) -> list[TicketRead]:
    """My accepted tickets and those waiting for follow-up, oldest first."""
    return [ticket_read(t, viewer) for t in service.held_by(session, technician_id=me.id)]


def _tips_read(ticket_type: TicketType) -> TipsRead:
    return TipsRead(type_code=ticket_type.code, name=ticket_type.name, markdown=ticket_type.tips,
                    html=tips.render(ticket_type.tips), updated_at=ticket_type.updated_at)


@router.get("/ticket-types/{code}/tips", response_model=TipsRead, tags=["tips"], responses=problem_docs(NotFound))
def get_tips(code: Text, session: SessionDep) -> TipsRead:
    """The self-help tips (知识库) of a ticket type, as markdown and as safe HTML (public)."""
    return _tips_read(tips.get_tips(session, code))


@router.put("/ticket-types/{code}/tips", response_model=TipsRead, tags=["tips"],
            responses=problem_docs(NotFound, Forbidden, InvalidInput))
def put_tips(code: Text, body: TipsUpdate, session: SessionDep, admin: Admin) -> TipsRead:
    """Replace a ticket type's self-help tips (admin); the report page shows them at once."""
    return _tips_read(tips.set_tips(session, code=code, markdown=body.markdown))


@router.post("/ticket-types/{code}/tips/outcome", response_model=TipOutcomeRead, status_code=201, tags=["tips"],
             responses=problem_docs(NotFound, Forbidden))
def post_tip_outcome(code: Text, body: TipOutcomeCreate, session: SessionDep, actor: ActorDep) -> TipOutcome:
    """Record whether the tips solved the problem; solved means no report and a visit saved
    (subscriber, clerk, dispatcher, admin, API)."""
    return tips.record_outcome(session, code=code, solved=body.solved, actor=actor)


@router.get("/tips/outcomes", response_model=TipOutcomeSummary, tags=["tips"],
            responses=problem_docs(Forbidden, InvalidInput))
def tip_outcomes(session: SessionDep, staff: Staff, settings: SettingsDep,
                 start: Annotated[Day, Query(alias="from", description="first local day")],
                 end: Annotated[Day, Query(alias="to", description="last local day, included")]) -> TipOutcomeSummary:
    """How often the tips solved the problem per ticket type in a period: visits saved (staff)."""
    counts = tips.count_outcomes(session, start=start, end=end, tz=settings.timezone)
    return TipOutcomeSummary(solved=sum(c.solved for c in counts), not_solved=sum(c.not_solved for c in counts),
                             items=[TipOutcomeCountRead(**vars(c)) for c in counts])


@router.get("/regions/{region_id}/surge", response_model=SurgeRead, tags=["sla"],
            responses=problem_docs(sla.RegionNotFound))
def get_surge(region_id: Id, actor: ActorDep, session: SessionDep, settings: SettingsDep) -> SurgeRead:
    """Whether the region itself is in surge mode, with its factors and who switched it last."""
    region = sla.get_region(session, region_id, actor=actor)
    return surge_read(region.id, sla.latest_switch(session, region.id), settings.sla)


@router.post("/regions/{region_id}/surge", response_model=SurgeRead, tags=["sla"],
             responses=problem_docs(sla.RegionNotFound, Forbidden, InvalidInput))
def switch_surge(region_id: Id, body: SurgeBody, actor: ActorDep, session: SessionDep,
                 settings: SettingsDep) -> SurgeRead:
    """Switch the region (and all below it) to the surge SLA profile or back, audited (dispatcher, admin).

    Switching on re-times its open tickets that have not breached yet; switching off
    leaves the tickets taken in during the surge with the times they got.
    """
    switch = sla.switch_surge(session, region_id=region_id, actor=actor, on=body.on, reason=body.reason,
                              response_factor=body.response_factor, resolution_factor=body.resolution_factor,
                              cfg=settings.sla, now=datetime.now(UTC))
    return surge_read(region_id, switch, settings.sla)


@router.get("/regions/{region_id}/surge/switches", response_model=Page[SurgeSwitchRead], tags=["sla"],
            responses=problem_docs(sla.RegionNotFound, InvalidInput))
def list_surge_switches(region_id: Id, actor: ActorDep, session: SessionDep, page: PageDep) -> dict[str, Any]:
    """Every switch of the region's own surge mode, newest first: who, when, why, how many tickets re-timed."""
    region = sla.get_region(session, region_id, actor=actor)
    return page_of([SurgeSwitchRead(id=s.id, on=s.on, response_factor=s.response_factor,
                                    resolution_factor=s.resolution_factor, reason=s.reason, switched_by=s.actor,
                                    switched_at=s.at, retimed=s.retimed)
                    for s in sla.list_switches(session, region.id, page=page)], page)


def _mode_read(region: Region, mode: modes.BranchMode) -> DispatchModeRead:
    return DispatchModeRead(region_id=region.id, name=region.name, mode=mode.mode,
                            hybrid_after_s=mode.hybrid_after_s, changed_by=mode.changed_by,
                            changed_at=mode.changed_at)


@router.get("/dispatch-modes", response_model=list[DispatchModeRead], tags=["dispatch modes"])
def list_dispatch_modes(actor: ActorDep, session: SessionDep, settings: SettingsDep) -> list[DispatchModeRead]:
    """The dispatch mode of every branch in the caller's regions."""
    return [_mode_read(region, mode) for region, mode in modes.branch_modes(session, actor=actor, settings=settings)]


@router.get("/regions/{region_id}/dispatch-mode", response_model=DispatchModeRead, tags=["dispatch modes"],
            responses=problem_docs(sla.RegionNotFound))
def get_dispatch_mode(region_id: Id, actor: ActorDep, session: SessionDep, settings: SettingsDep) -> DispatchModeRead:
    """How the branch's new tickets find their technician: grab (default), assign or hybrid."""
    region = sla.get_region(session, region_id, actor=actor)
    return _mode_read(region, modes.mode_of(session, region.id, settings=settings))


@router.put("/regions/{region_id}/dispatch-mode", response_model=DispatchModeRead, tags=["dispatch modes"],
            responses=problem_docs(sla.RegionNotFound, Forbidden, InvalidInput))
def set_dispatch_mode(region_id: Id, body: DispatchModeBody, actor: ActorDep, session: SessionDep,
                      settings: SettingsDep) -> DispatchModeRead:
    """Choose the branch's dispatch mode, audited (admin, the branch's dispatcher); tickets taken in from now on
    follow it."""
    mode = modes.set_mode(session, region_id=region_id, actor=actor, mode=body.mode,
                          hybrid_after_s=body.hybrid_after_s, settings=settings)
    return _mode_read(sla.get_region(session, region_id, actor=actor), mode)


@router.get("/regions/{region_id}/escalation", response_model=EscalationChainRead, tags=["sla"],
            responses=problem_docs(sla.RegionNotFound))
def get_escalation_chain(region_id: Id, actor: ActorDep, session: SessionDep,
                         settings: SettingsDep) -> EscalationChainRead:
    """The escalation chain in force for tickets in the region: its own, an ancestor's, or the default."""
    region = sla.get_region(session, region_id, actor=actor)
    defined_at, rungs = sla.chain_for(session, region.path, settings.sla)
    return chain_read(region.id, defined_at, rungs)


@router.put("/regions/{region_id}/escalation", response_model=EscalationChainRead, tags=["sla"],
            responses=problem_docs(sla.RegionNotFound, Forbidden, InvalidInput))
def set_escalation_chain(region_id: Id, body: EscalationChainBody, actor: ActorDep,
                         session: SessionDep) -> EscalationChainRead:
    """Replace the region's own escalation chain; steps are notified in the order given (admin)."""
    rungs = sla.set_chain(session, region_id=region_id, actor=actor, steps=[
        sla.Rung(level=i + 1, **step.model_dump(exclude={"channels"}), channels=tuple(dict.fromkeys(step.channels)))
        for i, step in enumerate(body.steps)])
    return chain_read(region_id, region_id, rungs)


@router.get("/stats", response_model=StatsRead, response_model_by_alias=True, tags=["statistics"],
            responses=problem_docs(InvalidInput, NotFound, Forbidden))
def ticket_stats(period: StatsPeriod, session: SessionDep, actor: Analyst) -> dict[str, Any]:
    """Tickets reported in the period (local dates) in the caller's regions: counts by state, type, grid and
    technician, time to accept and to complete (median, p90, minutes), SLA attainment, timeout, invalid and
    satisfaction."""
    return stats.ticket_stats(session, actor=actor, period=period)


@router.get("/stats/export", response_class=FileResponse, tags=["statistics"],
            responses=problem_docs(InvalidInput, NotFound, Forbidden))
def export_stats(period: StatsPeriod, session: SessionDep, actor: Analyst,
                 table: Annotated[export.StatsTable, Query(description=(
                     "all: the whole page; or one chart's table: state, type, grid, technician, day (per local "
                     "date), hour (per hour of the local day), declines (per technician and reason)"))
                 ] = export.StatsTable.ALL,
                 ) -> FileResponse:
    """The statistics of the period as an XLSX workbook: the totals, then a sheet per state, type, grid and
    technician; with `table`, the one table behind a chart of the console."""
    region = f"_region{period.region_id}" if period.region_id else ""
    which = "" if table is export.StatsTable.ALL else f"_{table}"
    return _file(lambda path: export.export_stats(session, actor=actor, period=period, path=path, table=table),
                 name=f"stats_{period.span.start}_{period.span.end}{region}{which}", fmt=ExportFormat.XLSX)


@router.get("/stats/series", response_model=SeriesRead, response_model_by_alias=True, tags=["statistics"],
            responses=problem_docs(InvalidInput, NotFound, Forbidden))
def stats_series(period: StatsPeriod, session: SessionDep, actor: Analyst,
                 bucket: Annotated[stats.Bucket, Query(description=(
                     "day: each local date of the period; hour: each hour 00-23 of the local day, summed over the "
                     "period"))] = stats.Bucket.DAY) -> SeriesRead:
    """The statistics of /stats per bucket, for the console's charts: per local date of the period (`day`) or per
    hour of the local day over the period (`hour`); tickets, time to accept and to complete (median, p90,
    minutes), SLA attainment and the rest, every bucket present."""
    points = stats.ticket_series(session, actor=actor, period=period, bucket=bucket)
    return SeriesRead(start=period.span.start, end=period.span.end, region_id=period.region_id,
                      timezone=period.tz, bucket=bucket, points=[SeriesPoint.model_validate(p) for p in points])


CellRes = Annotated[int, Query(ge=stats.CELL_RES[0], le=stats.CELL_RES[-1],
                               description="H3 resolution: 5 (~10 km edges) to 9 (~200 m)")]

LocalHour = Annotated[int, Query(ge=0, le=23, description="local hour of the day, 0-23")]


@router.get("/stats/cells", response_model=CellsRead, response_model_by_alias=True, tags=["statistics"],
            responses=problem_docs(InvalidInput, NotFound, Forbidden))
def cell_stats(start: Annotated[Day, Query(alias="from", description="first local date, included")],
               end: Annotated[Day, Query(alias="to", description="last local date, included")],
               session: SessionDep, redis: RedisDep, actor: Analyst, settings: SettingsDep,
               res: CellRes = 8, region_id: Id | None = None, hour: LocalHour | None = None) -> CellsRead:
    """Demand and supply by H3 cell in the caller's regions, for the heat map: the period's reports (local
    dates; with `hour`, only those of that local hour of each day: the console's time slider) and their
    median time to accept, the tickets open now and the on-duty technicians now."""
    span = Span.of(start, end, max_days=settings.workload.max_range_days)
    cells = stats.cell_stats(session, redis, actor=actor, res=res, hour=hour,
                             period=stats.Period(span=span, tz=settings.timezone, region_id=region_id))
    return CellsRead(res=res, start=span.start, end=span.end, region_id=region_id, hour=hour,
                     timezone=settings.timezone,
                     cells=[CellStatsRead.model_validate(cell, from_attributes=True) for cell in cells])
