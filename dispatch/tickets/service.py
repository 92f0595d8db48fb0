"""Intake and every lifecycle verb of a ticket, in the domain's words."""

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic_core import to_jsonable_python
from redis import Redis
from sqlalchemy import bindparam, func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, make_transient_to_detached

from dispatch.accounts.models import Subscriber
from dispatch.accounts.service import Reporter, reporter_by_phone
from dispatch.audit import service as audit
from dispatch.audit.models import AuditAction
from dispatch.kernel.auth import Actor, Role
from dispatch.kernel.cache import Remembered
from dispatch.kernel.errors import InvalidInput, NotFound, OutOfScope
from dispatch.kernel.pagination import PageParams
from dispatch.kernel.settings import Settings
from dispatch.tickets import (
    attachments,
    handover,
    idempotency,
    incidents,
    labor,
    load,
    mirror,
    modes,
    numbering,
    offers,
    priority,
    queries,
    sla,
)
from dispatch.tickets.errors import (
    AlreadyTaken,
    ConcurrentChange,
    InvalidTransition,
    LimitReached,
    TicketNotFound,
    UrgedRecently,
)
from dispatch.tickets.lifecycle import (
    GRABBABLE,
    OPEN_STATES,
    Action,
    Step,
    announce,
    append_event,
    feed_event,
    record,
    transition,
)
from dispatch.tickets.models import (
    DispatchMode,
    Incident,
    Priority,
    Source,
    Ticket,
    TicketEvent,
    TicketState,
    TicketType,
)
from dispatch.tickets.permissions import MANAGERS, Viewer, require, require_holder
from dispatch.tickets.schemas import CompleteBody, TicketCreate, TicketTypeCreate, TicketTypeUpdate
from geo import crs, gazetteer, hexgrid, regions
from geo.distance import haversine_m
from geo.latlng import LatLng
from geo.points import from_wkb, to_wkb
from technicians.errors import NotATechnician
from technicians.models import Technician
from technicians.nearest import Candidate, find_nearest
from technicians.service import Card, cards, get_technician, require_wechat_bound

INTAKE_ROLES = frozenset({Role.ADMIN, Role.DISPATCHER, Role.CLERK, Role.SUBSCRIBER, Role.API})
FOLLOWUP_ROLES = frozenset({Role.ADMIN, Role.DISPATCHER, Role.CLERK, Role.SUBSCRIBER})
DEFAULT_SOURCE = {Role.SUBSCRIBER: Source.WECHAT, Role.API: Source.API}


@dataclass(frozen=True)
class Intake:
    ticket: Ticket
    created: bool
    merged: bool = False
    offers: list[Candidate] = field(default_factory=list)


def require_version(ticket: Ticket, expected: int | None) -> None:
    """A conditional request (If-Match): act only on the ticket as the caller saw it.

    Raises: AlreadyTaken (it was taken meanwhile), ConcurrentChange (it changed otherwise).
    """
    if expected is None or ticket.version == expected:
        return
    if ticket.state not in GRABBABLE and ticket.technician_id is not None:
        raise AlreadyTaken(f"ticket {ticket.number} was taken meanwhile (version {ticket.version})",
                           state=ticket.state)
    raise ConcurrentChange(f"ticket {ticket.number} changed meanwhile (version {ticket.version})", state=ticket.state)


def _now() -> datetime:
    return datetime.now(UTC)


# --- ticket types ---------------------------------------------------------

def get_type(session: Session, code: str, *, field: str = "type_code") -> TicketType:
    """Raises: InvalidInput (unknown or retired type, named by `field`)."""
    ticket_type = session.get(TicketType, code)
    if ticket_type is None or not ticket_type.active:
        raise InvalidInput(field, f"unknown ticket type {code!r}")
    return ticket_type


@dataclass(frozen=True)
class TypeTerms:
    """What intake and a nearest search need of an active ticket type, as values a process may remember."""

    code: str
    skills: tuple[str, ...]
    response_sla_min: int
    resolution_sla_min: int
    priority: Priority
    sla_by_priority: dict[str, dict[str, int]]
    urgent_over_limit: bool
    incident_reports: int | None
    incident_radius_m: int
    incident_window_min: int
    retired: bool


# Types change a few times a year; another process sees a change (or a retirement) within this.
_terms: Remembered[str, TypeTerms] = Remembered(ttl_s=10, maxsize=1000)


def type_terms(session: Session, code: str, *, field: str = "type_code") -> TypeTerms:
    """An active type's skills and SLA minutes, remembered.

    Raises: InvalidInput (unknown or retired type, named by `field`).
    """
    def load() -> TypeTerms:
        found = get_type(session, code, field=field)
        return TypeTerms(code=found.code, skills=tuple(found.skills), response_sla_min=found.response_sla_min,
                         resolution_sla_min=found.resolution_sla_min, priority=found.priority,
                         sla_by_priority=dict(found.sla_by_priority), urgent_over_limit=found.urgent_over_limit,
                         incident_reports=found.incident_reports, incident_radius_m=found.incident_radius_m,
                         incident_window_min=found.incident_window_min, retired=found.retired)

    return _terms.get_or_load(code, load)


def refuse_retired(code: str, retired: bool) -> None:
    """Raises: InvalidInput (a retired type takes no new tickets; those it has carry on)."""
    if retired:
        raise InvalidInput("type_code", f"ticket type {code!r} is retired")


def list_types(session: Session, *, include_inactive: bool = False, include_retired: bool = False) -> list[TicketType]:
    query = select(TicketType).order_by(TicketType.code)
    if not include_inactive:
        query = query.where(TicketType.active)
    if not include_retired:
        query = query.where(TicketType.retired.is_(False))
    return list(session.scalars(query))


def create_type(session: Session, *, body: TicketTypeCreate) -> TicketType:
    """Raises: InvalidInput (code taken)."""
    if session.get(TicketType, body.code) is not None:
        raise InvalidInput("code", f"ticket type {body.code!r} exists already")
    ticket_type = TicketType(**body.model_dump())
    session.add(ticket_type)
    session.flush()
    _terms.forget(ticket_type.code)
    return ticket_type


def update_type(session: Session, *, code: str, body: TicketTypeUpdate, actor: Actor) -> TicketType:
    """Change a type's terms or retire it; audited with each changed field before and after.

    Raises: NotFound.
    """
    ticket_type = session.get(TicketType, code)
    if ticket_type is None:
        raise NotFound(f"ticket type {code!r} does not exist")
    wanted = body.model_dump(exclude_unset=True, exclude_none=True)  # null: unchanged
    if body.incident_reports == 0:
        wanted["incident_reports"] = None  # detection off
    changes = {name: [getattr(ticket_type, name), value] for name, value in wanted.items()
               if value != getattr(ticket_type, name)}
    for name, (_, value) in changes.items():
        setattr(ticket_type, name, value)
    session.flush()
    _terms.forget(code)
    if changes:
        audit.record(session, action=AuditAction.TICKET_TYPE_CHANGED, actor=actor, code=code,
                     changes=to_jsonable_python(changes))
    return ticket_type


# --- intake -----------------------------------------------------------------

def _replay(session: Session, actor: Actor, request: idempotency.Request) -> Intake:
    earlier = idempotency.earlier(session, actor, request)
    return Intake(ticket=session.get_one(Ticket, earlier.ticket_id), created=False, merged=earlier.merged)


def _lock_subscriber(session: Session, actor: Actor, body: TicketCreate) -> Reporter:
    # The subscriber row stays locked until commit so that two identical
    # reports arriving together merge instead of both seeing "no open ticket".
    if actor.role is Role.SUBSCRIBER:
        found = session.execute(select(Subscriber.id, Subscriber.importance).where(Subscriber.id == actor.id)
                                .with_for_update()).one()
        return Reporter(found.id, found.importance)
    return reporter_by_phone(session, phone=body.contact.phone, name=body.contact.name)


def create_ticket(session: Session, redis: Redis, *, actor: Actor, body: TicketCreate, settings: Settings,
                  idempotency_key: str | None = None) -> Intake:
    """Take in a fault report: normalise, place, merge a duplicate or number a new ticket.

    Raises:
        Forbidden: the caller's role may not report.
        OutOfScope: the point lies in a region outside the caller's.
        InvalidInput: unknown or retired ticket type.
        IdempotencyKeyReused: the key came before with another body.
    """
    require(actor, INTAKE_ROLES, "report a fault")
    ticket_type = type_terms(session, body.type_code)
    refuse_retired(ticket_type.code, ticket_type.retired)
    request = idempotency.Request.of(idempotency_key, "intake", body.model_dump_json())
    key_row = None
    if request is not None:
        key_row = idempotency.claim(session, actor, request)
        if key_row is None:
            return _replay(session, actor, request)
    point = crs.to_wgs84(LatLng(body.location.lat, body.location.lng), body.location.crs)
    placement = regions.place(session, point)
    if actor.scope is not None and actor.role is not Role.SUBSCRIBER and not placement.lies_within(actor.scope):
        raise OutOfScope("the reported location lies outside your regions")
    reporter = _lock_subscriber(session, actor, body)
    intake = _merge_duplicate(session, actor=actor, subscriber_id=reporter.id, branch_id=placement.branch_id,
                              body=body)
    if intake is None:
        draft = _draft(session, actor=actor, body=body, ticket_type=ticket_type, point=point, placement=placement,
                       reporter=reporter, settings=settings)
        ticket, ring = _outage_report(session, redis, actor=actor, draft=draft, settings=settings) \
            if ticket_type.incident_reports else _new_ticket(session, redis, actor=actor, draft=draft,
                                                              settings=settings)
        mirror.mirror(session, redis, ticket)
        intake = Intake(ticket=ticket, created=True, offers=ring.candidates if ring is not None else [])
    if key_row is not None:
        key_row.ticket_id, key_row.merged = intake.ticket.id, intake.merged
        session.flush()
    return intake


def _merge_duplicate(session: Session, *, actor: Actor, subscriber_id: int, branch_id: int,
                     body: TicketCreate) -> Intake | None:
    # Only within the branch the new report lands in: a fault elsewhere is a
    # different visit, and another branch's ticket must not leak to the caller.
    open_id = session.connection().execute(_OPEN_OF_SUBSCRIBER, {
        "subscriber_id": subscriber_id, "type_code": body.type_code, "branch_id": branch_id}).scalar()
    if open_id is None:
        return None
    open_ticket = session.get_one(Ticket, open_id)
    record(session, open_ticket, action=Action.MERGE, actor=actor, note=body.description,
           data={"contact_phone": body.contact.phone, "attachments": body.attachments})
    return Intake(ticket=open_ticket, created=False, merged=True)


# Built once and sent on the connection: every intake asks (and almost always finds none), and building the
# statement or the ORM's loading cost more than sending it.
_OPEN_OF_SUBSCRIBER = select(Ticket.id).where(
    Ticket.subscriber_id == bindparam("subscriber_id"), Ticket.type_code == bindparam("type_code"),
    Ticket.branch_id == bindparam("branch_id"), Ticket.state.in_(OPEN_STATES)).order_by(Ticket.id).limit(1)


@dataclass(frozen=True)
class Draft:
    """What a new ticket says, from a report or, for an incident's own ticket, from its reports."""

    type: TypeTerms
    point: LatLng
    placement: regions.Placement
    priority: Priority
    description: str
    address: str | None
    contact_name: str
    contact_phone: str
    source: Source
    subscriber_id: int | None
    attachments: list[str]


def _draft(session: Session, *, actor: Actor, body: TicketCreate, ticket_type: TypeTerms, point: LatLng,
           placement: regions.Placement, reporter: Reporter, settings: Settings) -> Draft:
    level = priority.of_report(session, type_priority=ticket_type.priority, importance=reporter.importance,
                               point=point, branch_id=placement.branch_id, cfg=settings.priority)
    return Draft(type=ticket_type, point=point, placement=placement, priority=level, description=body.description,
                 address=body.address, contact_name=body.contact.name, contact_phone=body.contact.phone,
                 source=body.source or DEFAULT_SOURCE.get(actor.role, Source.PHONE), subscriber_id=reporter.id,
                 attachments=body.attachments)


def _new_ticket(session: Session, redis: Redis, *, actor: Actor, draft: Draft, settings: Settings,
                grouped_under: Incident | None = None, offered: bool = True) -> tuple[Ticket, offers.Ring | None]:
    """The new ticket, inserted with its first ring chosen (the INSERT carries the ring columns), and that ring.

    A report grouped under an outage incident (`grouped_under`, or `offered` False while its incident is
    being opened) is not offered itself.
    """
    now = _now()
    placement = draft.placement
    surge = sla.current_surge(session, placement.grid_path)
    profile = priority.sla_profile(draft.type, draft.priority, settings.sla)
    grouped = grouped_under is not None or not offered
    mode = modes.mode_of(session, placement.branch_id, settings=settings)
    system_assigns = not grouped and mode.mode is DispatchMode.ASSIGN
    ticket = Ticket(
        type_code=draft.type.code, state=TicketState.GROUPED if grouped else TicketState.PENDING,
        priority=draft.priority, version=1, ring=0, source=draft.source, description=draft.description,
        location=to_wkb(draft.point), h3=hexgrid.cell_of(draft.point),
        # Seed 002 names every report's place for the technician: fill it in when the caller did not.
        address=draft.address or gazetteer.reverse(session, draft.point, placement=placement).address,
        region_id=placement.grid_id, branch_id=placement.branch_id, outside_area=placement.outside_area,
        contact_name=draft.contact_name, contact_phone=draft.contact_phone, subscriber_id=draft.subscriber_id,
        attachment_refs=draft.attachments, materials=[], created_by=actor.label, created_at=now, updated_at=now,
        incident_id=grouped_under.id if grouped_under is not None else None,
        system_assign_at=None if grouped else modes.hybrid_deadline(mode, now),
        **sla.timing(profile, created_at=now, surge=surge, warning_fraction=settings.sla.warning_fraction),
    )
    def first_ring() -> offers.Ring | None:
        return offers.next_ring(session, redis, ticket, settings=settings, now=now, grid_path=placement.grid_path,
                                skills=draft.type.skills, over_limit=draft.type.urgent_over_limit)

    ring = None if grouped or system_assigns else first_ring()
    ticket = _number(session, redis, ticket, placement=placement,
                     day=now.astimezone(ZoneInfo(settings.timezone)).date())
    notes = ["outside every grid: placed in the nearest"] if placement.outside_area else []
    if grouped_under is not None:
        notes.append(f"part of outage incident {grouped_under.id}")
    record(session, ticket, action=Action.CREATE, actor=actor, note="; ".join(notes) or None)
    if system_assigns and modes.system_assign(session, redis, ticket, settings=settings, now=now,
                                              skills=draft.type.skills, grid_path=placement.grid_path) is None:
        ring = first_ring()  # nobody to assign it to: offered and pooled as in grab mode
    if ring is not None:
        offers.send_offers(session, ticket, ring, now=now)
    return ticket, ring


# --- 催办 ---------------------------------------------------------------------------------------------------

URGE_ROLES = frozenset({Role.ADMIN, Role.DISPATCHER, Role.CLERK, Role.SUBSCRIBER})
URGEABLE = frozenset({TicketState.PENDING, TicketState.TIMED_OUT, TicketState.ACCEPTED, TicketState.GROUPED})
SUBSCRIBER_URGE_EVERY = timedelta(minutes=10)


def urge(session: Session, *, ticket: Ticket, actor: Actor, note: str | None) -> Ticket:
    """Someone is waiting: told to whoever holds the ticket, else to the technicians it is offered to (and the
    grid's dispatchers, on the feed); counted on the ticket. A subscriber may urge a ticket once per 10 minutes.

    Raises: Forbidden, InvalidTransition (closed), UrgedRecently.
    """
    require(actor, URGE_ROLES, "urge tickets")
    if ticket.state not in URGEABLE:
        raise InvalidTransition(f"ticket {ticket.number} is {ticket.state}: nothing to urge", state=ticket.state)
    now = _now()
    if actor.role is Role.SUBSCRIBER:
        last = session.scalar(select(func.max(TicketEvent.at)).where(
            TicketEvent.ticket_id == ticket.id, TicketEvent.action == Action.URGE,
            TicketEvent.actor_role == Role.SUBSCRIBER))
        if last is not None and now - last < SUBSCRIBER_URGE_EVERY:
            wait = SUBSCRIBER_URGE_EVERY - (now - last)
            raise UrgedRecently(f"you urged this ticket at {last.isoformat()}; again in {math.ceil(wait.seconds / 60)}"
                                f" min", retry_after=max(1, math.ceil(wait.total_seconds())))
    ticket.urge_count = Ticket.urge_count + 1  # in SQL: two urges at once both count
    ticket.urged_at = now
    waiting_on = [ticket.technician_id] if ticket.technician_id is not None else offers.offered_to(session, ticket)
    session.flush()
    append_event(session, ticket, at=now, actor=actor, action=Action.URGE, from_state=ticket.state,
                 to_state=ticket.state, note=note, announced=feed_event(
                     ticket, "ticket.urged", technician_ids=waiting_on, urge_count=ticket.urge_count, note=note))
    return ticket


# --- outage incidents ------------------------------------------------------------------------------------

def _outage_report(session: Session, redis: Redis, *, actor: Actor, draft: Draft,
                   settings: Settings) -> tuple[Ticket, offers.Ring | None]:
    """A report of a type that detects outages: it joins the open incident its cell lies in, opens one with the
    reports around it once they are enough, or is a ticket of its own."""
    terms, now = draft.type, _now()
    since = now - timedelta(minutes=terms.incident_window_min)
    cells = incidents.cells_of(draft.point, terms.incident_radius_m)
    incidents.lock_area(session, terms.code, cells)
    joined = incidents.open_incident_at(session, type_code=terms.code, branch_id=draft.placement.branch_id,
                                        cell=hexgrid.cell_of(draft.point), since=since)
    if joined is not None:
        ticket, _ = _new_ticket(session, redis, actor=actor, draft=draft, settings=settings, grouped_under=joined)
        incidents.grew(joined, ticket.created_at)
        lead = session.get_one(Ticket, joined.ticket_id)
        announce(session, lead, "incident.grew", incident_id=joined.id, ticket_ids=[ticket.id])
        return ticket, None
    near = incidents.reports_near(session, type_code=terms.code, branch_id=draft.placement.branch_id,
                                  point=draft.point, radius_m=terms.incident_radius_m, cells=cells, since=since)
    assert terms.incident_reports is not None
    if len(near) + 1 < terms.incident_reports:
        return _new_ticket(session, redis, actor=actor, draft=draft, settings=settings)
    ticket, _ = _new_ticket(session, redis, actor=actor, draft=draft, settings=settings, offered=False)
    _open_incident(session, redis, actor=actor, reports=[*near, ticket], terms=terms, settings=settings)
    return ticket, None


def _open_incident(session: Session, redis: Redis, *, actor: Actor, reports: list[Ticket], terms: TypeTerms,
                   settings: Settings) -> Incident:
    """The incident of these reports: its own ticket offered, each report grouped under it."""
    points = [from_wkb(t.location) for t in reports]
    centre = incidents.centre_of(points)
    first = min(reports, key=lambda t: t.id)
    draft = Draft(type=terms, point=centre, placement=regions.place(session, centre),
                  priority=min(t.priority for t in reports),
                  description=f"区域故障：{len(reports)} 户报修同一故障（{', '.join(t.number for t in reports[:5])}"
                              f"{' …' if len(reports) > 5 else ''}）",
                  address=None, contact_name=f"区域故障（首报 {first.contact_name}）",
                  contact_phone=first.contact_phone, source=first.source, subscriber_id=None, attachments=[])
    lead, _ = _new_ticket(session, redis, actor=actor, draft=draft, settings=settings)
    incident = incidents.new_incident(session, lead=lead, reports=reports, radius_m=terms.incident_radius_m,
                                      opened_by=actor.label)
    lead.incident_id = incident.id
    mirror.mirror(session, redis, lead)
    for report in reports:
        if report.state is TicketState.GROUPED:  # the report that opened it, grouped from the start
            report.incident_id = incident.id
            continue
        transition(session, report, action=Action.GROUP, actor=actor, note=f"grouped under {lead.number}",
                   changes={"incident_id": incident.id, "next_ring_at": None})
        offers.close_offers(session, report, taken_by=None)
        mirror.mirror(session, redis, report)
    announce(session, lead, "incident.opened", incident_id=incident.id, ticket_ids=[t.id for t in reports])
    session.flush()
    return incident


def group(session: Session, redis: Redis, *, viewer: Viewer, ticket_ids: list[int], settings: Settings) -> Incident:
    """A dispatcher's incident of these reports (two or more grabbable reports of one type in one branch).

    Raises: Forbidden, TicketNotFound, InvalidInput.
    """
    require(viewer.actor, MANAGERS, "group reports into an incident")
    reports = [get_ticket(session, ticket_id, viewer=viewer) for ticket_id in dict.fromkeys(ticket_ids)]
    if len(reports) < 2:
        raise InvalidInput("ticket_ids", "an incident groups two reports or more")
    if len({(t.type_code, t.branch_id) for t in reports}) > 1:
        raise InvalidInput("ticket_ids", "the reports must be of one type in one branch")
    taken = [t.number for t in reports if t.state not in GRABBABLE or t.incident_id is not None]
    if taken:
        raise InvalidInput("ticket_ids", f"only reports still waiting for a technician can be grouped: {taken}")
    terms = type_terms(session, reports[0].type_code)
    incidents.lock_area(session, terms.code, (t.h3 for t in reports))
    for report in reports:  # as they are now that nobody else may group them
        session.refresh(report, with_for_update=True)
    if any(t.state not in GRABBABLE or t.incident_id is not None for t in reports):
        raise ConcurrentChange("a report was taken or grouped meanwhile; try again")
    return _open_incident(session, redis, actor=viewer.actor, reports=reports, terms=terms, settings=settings)


def detach(session: Session, redis: Redis, *, viewer: Viewer, incident_id: int, ticket_id: int) -> Ticket:
    """Take a report out of its incident: it is offered on its own again.

    Raises: Forbidden, NotFound, InvalidInput.
    """
    require(viewer.actor, MANAGERS, "ungroup reports")
    incident = get_incident(session, incident_id, viewer=viewer)
    report = get_ticket(session, ticket_id, viewer=viewer)
    if report.incident_id != incident.id or report.id == incident.ticket_id:
        raise InvalidInput("ticket_id", f"ticket {report.number} is not grouped under incident {incident.id}")
    _ungroup(session, redis, report, actor=viewer.actor, note=f"out of incident {incident.id}")
    return report


def _ungroup(session: Session, redis: Redis, report: Ticket, *, actor: Actor, note: str) -> None:
    """Out of its incident and back in the pool, its next ring due now."""
    transition(session, report, action=Action.DETACH, actor=actor, note=note,
               changes={"incident_id": None, "next_ring_at": _now()})
    mirror.mirror(session, redis, report)


def get_incident(session: Session, incident_id: int, *, viewer: Viewer) -> Incident:
    """Raises: NotFound (also when its ticket lies outside the caller's scope)."""
    incident = session.get(Incident, incident_id)
    if incident is None or session.scalars(select(Ticket.id).where(
            Ticket.id == incident.ticket_id, queries.visible_to(viewer))).first() is None:
        raise NotFound(f"incident {incident_id} does not exist")
    return incident


def list_incidents(session: Session, *, viewer: Viewer, open_only: bool) -> list[tuple[Incident, Ticket]]:
    query = (select(Incident, Ticket).join(Ticket, Ticket.id == Incident.ticket_id).where(queries.visible_to(viewer))
             .order_by(Ticket.priority, Incident.id.desc()).limit(500))
    if open_only:
        query = query.where(Incident.resolved_at.is_(None))
    return [(incident, ticket) for incident, ticket in session.execute(query)]


def _complete_grouped(session: Session, redis: Redis, *, lead: Ticket, technician: Technician, actor: Actor,
                      visited: list[int], settings: Settings) -> None:
    """The incident's own ticket was completed: so is every report grouped under it, each subscriber told (its
    completion goes out like any), and a report visited on its own is paid at the type's visit rate."""
    incident = incidents.led_by(session, lead.id)
    if incident is None:
        if visited:
            raise InvalidInput("visited", "only an incident's ticket has grouped reports")
        return
    reports = incidents.grouped(session, incident)
    strays = set(visited) - {t.id for t in reports}
    if strays:
        raise InvalidInput("visited", f"not grouped under this incident: {sorted(strays)}")
    for report in reports:
        transition(session, report, action=Action.RESOLVE, actor=actor, technician_id=technician.id,
                   note=f"repaired with {lead.number}",
                   changes={"completed_at": lead.completed_at, "accepted_at": lead.accepted_at,
                            "technician_id": technician.id, "completion_note": lead.completion_note})
        mirror.mirror(session, redis, report)
        if report.id in visited:
            labor.record_visit(session, report, technician, settings=settings)
    incident.resolved_at = lead.completed_at
    announce(session, lead, "incident.resolved", incident_id=incident.id, ticket_ids=[t.id for t in reports])


def _release_grouped(session: Session, redis: Redis, *, lead: Ticket, actor: Actor) -> None:
    """The incident's own ticket was invalidated (no outage after all): its reports are offered on their own."""
    incident = incidents.led_by(session, lead.id)
    if incident is None:
        return
    for report in incidents.grouped(session, incident):
        _ungroup(session, redis, report, actor=actor, note=f"incident {incident.id} invalidated")
    incident.resolved_at = _now()


NUMBER_ATTEMPTS = 8


def _number(session: Session, redis: Redis, ticket: Ticket, *, placement: regions.Placement, day: date) -> Ticket:
    """Number the drafted (transient) ticket and insert it; the ticket, now in the session.

    A number can turn out taken only after Redis lost its counter while
    intakes numbered before the loss had not committed yet: the counter is
    then read from PostgreSQL again and the insert retried, so the report is
    never lost to it.

    Raises: ConcurrentChange (every attempt collided: numbering is failing).
    """
    prefix = numbering.prefix(placement.branch_code, day)
    row = _row_of(ticket)
    for attempt in range(NUMBER_ATTEMPTS):
        seq = numbering.next_seq(session, redis, branch_id=placement.branch_id, prefix_=prefix, day=day,
                                 resync=attempt > 0)
        row["number"] = numbering.number(prefix, seq)
        ticket_id = session.connection().execute(_INSERT_TICKET, row).scalar()
        if ticket_id is not None:
            ticket.id, ticket.number = ticket_id, row["number"]
            # Every column is set on the object as inserted: it joins the session as loaded, nothing to read back.
            make_transient_to_detached(ticket)
            session.add(ticket)
            return ticket
    raise ConcurrentChange(f"ticket numbers of {prefix}* kept colliding; try again")


def _row_of(ticket: Ticket) -> dict[str, Any]:
    """Every column but the id as the INSERT writes it, also set on the object: a column the draft left out takes
    its default, which must be a constant."""
    for attr in _TICKET_COLUMNS:
        if attr.key != "id" and attr.key not in ticket.__dict__:
            default = attr.columns[0].default
            if default is not None and not default.is_scalar:
                raise TypeError(f"the draft must set {attr.key}: its default is computed")
            setattr(ticket, attr.key, default.arg if default is not None else None)  # type: ignore[attr-defined]
    return {attr.key: getattr(ticket, attr.key) for attr in _TICKET_COLUMNS if attr.key != "id"}


# A taken number inserts nothing rather than raising (no savepoint: two more round trips on every intake), and
# on the connection: the ORM's bulk insert and loading of every column back cost twice the statement.
_INSERT_TICKET = pg_insert(Ticket).on_conflict_do_nothing(constraint="uq_ticket_number").returning(Ticket.id)
_TICKET_COLUMNS = sa_inspect(Ticket).column_attrs


# --- reads ------------------------------------------------------------------

def get_ticket(session: Session, ticket_id: int, *, viewer: Viewer) -> Ticket:
    """Raises: TicketNotFound (also when outside the caller's scope: existence must not leak)."""
    ticket = session.scalars(select(Ticket).where(Ticket.id == ticket_id, queries.visible_to(viewer))).first()
    if ticket is None:
        raise TicketNotFound(f"ticket {ticket_id} does not exist")
    return ticket


def list_tickets(session: Session, *, viewer: Viewer, found: queries.TicketFilter, page: PageParams,
                 order: queries.TicketOrder) -> list[Ticket]:
    """One page of the tickets the viewer may see, with one row more when another page follows."""
    return list(session.scalars(queries.ticket_list(viewer, found, page=page, order=order)))


def count_tickets(session: Session, *, viewer: Viewer, found: queries.TicketFilter) -> int:
    """How many tickets the viewer may see match the filter."""
    return session.scalar(queries.ticket_count(viewer, found)) or 0


def list_events(session: Session, ticket: Ticket) -> list[TicketEvent]:
    return list(session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                                .order_by(TicketEvent.id)))


# --- lifecycle verbs -------------------------------------------------------------

class StaleMirror(Exception):
    """The pool claimed a ticket at a version PostgreSQL has moved past: claim again on a fresh mirror."""

    def __init__(self, ticket: Ticket) -> None:
        super().__init__(f"the pool mirrored an older version of ticket {ticket.number}")
        self.ticket = ticket


def grab(session: Session, redis: Redis, *, ticket_id: int, technician_id: int, actor: Actor,
         settings: Settings, fence: int | None = None) -> Ticket:
    """Commit a grab; exactly one caller wins.

    `fence` is the ticket version the pool's claim was made on: the commit
    only goes through if PostgreSQL still has that version and the ticket is
    still grabbable. Without a fence (the pool is down or never saw the
    ticket) PostgreSQL arbitrates alone, scope check included.

    Raises:
        TicketNotFound, OutOfScope, AlreadyTaken, LimitReached, InvalidTransition, NotATechnician,
        StaleMirror (the fence is older than the ticket).
    """
    # Locked so that two grabs by one person cannot both pass the limit, and locked before the
    # ticket is read: a double tap queued here then sees the ticket as the first tap left it.
    technician = session.get(Technician, technician_id, with_for_update=True)
    if technician is None or not technician.active:
        raise NotATechnician("this action is for technicians")
    # The ticket and the technician's load in one statement, read once the lock is held: the load a
    # grab reaches is the one it checks against max_active and the one the live index is told.
    found = session.execute(_GRAB_READ, {"ticket_id": ticket_id,
                                         **load.taker(technician, now=_now(), tz=settings.timezone)}).first()
    if found is None:
        raise TicketNotFound(f"ticket {ticket_id} does not exist")
    ticket, held, worked, region_path = found
    if ticket.technician_id == technician_id and ticket.state is TicketState.ACCEPTED:
        return ticket  # a resent grab of the winner: never tell the winner it lost
    if fence is None and not regions.covers_any(ticket.region_id, (technician.region_id,), session):
        raise OutOfScope(f"ticket {ticket.number} is outside your grab scope")
    if ticket.state not in GRABBABLE:
        if ticket.state in {TicketState.ACCEPTED, TicketState.AWAITING_FOLLOWUP, TicketState.COMPLETED}:
            raise AlreadyTaken(f"ticket {ticket.number} is already taken", state=ticket.state)
        raise InvalidTransition(f"cannot grab a {ticket.state} ticket", state=ticket.state)
    if fence is not None and ticket.version != fence:
        raise StaleMirror(ticket)
    if held >= technician.max_active:
        raise LimitReached(f"you hold {technician.max_active} active tickets already",
                           max_active=technician.max_active)
    transition(session, ticket, action=Action.GRAB, actor=actor, technician_id=technician.id,
               location=handover.whereabouts(redis, ticket, technician.id),
               changes={"technician_id": technician.id, "accepted_at": _now()})
    handover.after_handover(session, redis, ticket, settings=settings, taken_by=technician.id,
                            taken_load=(technician, load.after_one_more(held, worked, region_path)))
    return ticket


_GRAB_READ = select(Ticket, *load.TAKER_LOAD).where(Ticket.id == bindparam("ticket_id"))


# Straight-line metres times a road factor, at a van's city pace (30 km/h): a hint for the subscriber
# ("about twenty minutes"), recomputed on each look, never a promise.
ROAD_FACTOR = 1.4
PACE_M_PER_MIN = 500


@dataclass(frozen=True)
class Visit:
    """Who holds a ticket, for its subscriber: their card and, on the way there, a rough arrival."""

    technician: Card
    arrival_estimate_at: datetime | None


def visit_of(session: Session, redis: Redis, ticket: Ticket) -> Visit | None:
    """Who holds the ticket and, on the way there with a known position, when they may arrive."""
    if ticket.technician_id is None:
        return None
    card = cards(session, [ticket.technician_id], branch_id=ticket.branch_id)[ticket.technician_id]
    on_the_way = ticket.state is TicketState.ACCEPTED and ticket.arrived_at is None
    here = handover.whereabouts(redis, ticket, ticket.technician_id) if on_the_way else None
    if here is None:
        return Visit(technician=card, arrival_estimate_at=None)
    minutes = haversine_m(here, from_wkb(ticket.location)) * ROAD_FACTOR / PACE_M_PER_MIN
    return Visit(technician=card, arrival_estimate_at=_now() + timedelta(minutes=math.ceil(minutes)))


def assign(session: Session, redis: Redis, *, ticket: Ticket, technician_id: int, actor: Actor, note: str | None,
           settings: Settings) -> Step:
    """Force-assign a pending or timed-out ticket, or reassign an accepted one.

    Raises:
        Forbidden, InvalidInput (technician unknown in the caller's regions), InvalidTransition, AlreadyTaken.
    """
    require(actor, MANAGERS, "assign tickets")
    try:
        technician = get_technician(session, technician_id, scope=actor.scope)
    except NotFound as exc:
        raise InvalidInput("technician_id", f"no technician {technician_id} in your regions") from exc
    if not technician.active:
        raise InvalidInput("technician_id", f"technician {technician.name} is deactivated")
    require_wechat_bound(technician, account_configured=settings.wechat.enabled)
    reassign = ticket.state is TicketState.ACCEPTED
    if reassign and ticket.technician_id == technician.id:
        raise InvalidTransition(f"ticket {ticket.number} is already with {technician.name}", state=ticket.state)
    previous = ticket.technician_id
    step = transition(session, ticket, action=Action.REASSIGN if reassign else Action.ASSIGN, actor=actor,
                      note=note, technician_id=technician.id,
                      location=handover.whereabouts(redis, ticket, technician.id),
                      changes={"technician_id": technician.id, "accepted_at": _now(), "arrived_at": None},
                      data={"previous_technician_id": previous} if reassign else None)
    audit.record(session, action=AuditAction.TICKET_ASSIGNED, actor=actor, target=("ticket", ticket.id),
                 number=ticket.number, technician_id=technician.id, previous_technician_id=previous)
    handover.after_handover(session, redis, ticket, settings=settings, taken_by=technician.id, also=previous)
    return step


def release(session: Session, redis: Redis, *, ticket: Ticket, actor: Actor, reason: str,
            settings: Settings, once: idempotency.Request | None = None) -> Step | None:
    """Hand an accepted ticket back to the pool (its technician, or a dispatcher); None for a replay of `once`.

    Raises: NotYourTicket, Forbidden, InvalidTransition, IdempotencyKeyReused.
    """
    if idempotency.is_replay(session, actor, once, ticket_id=ticket.id):
        return None
    if actor.role is Role.TECHNICIAN:
        require_holder(session, ticket, actor, Action.RELEASE)
    else:
        require(actor, MANAGERS, "release tickets")
    holder = ticket.technician_id
    step = transition(session, ticket, action=Action.RELEASE, actor=actor, note=reason, technician_id=holder,
                      changes={"technician_id": None, "accepted_at": None, "arrived_at": None})
    handover.after_handover(session, redis, ticket, settings=settings, taken_by=None, also=holder)
    modes.rearm(session, ticket, settings=settings, now=step.at)
    return step


def arrive(session: Session, *, ticket: Ticket, actor: Actor, location: LatLng,
           once: idempotency.Request | None = None) -> Step | None:
    """Check in on site with the phone's position; None for a replay of `once`.

    Raises: NotYourTicket, NotATechnician, InvalidTransition (not accepted, or arrived already),
        IdempotencyKeyReused.
    """
    if idempotency.is_replay(session, actor, once, ticket_id=ticket.id):
        return None
    technician = require_holder(session, ticket, actor, Action.ARRIVE)
    if ticket.arrived_at is not None and ticket.state is TicketState.ACCEPTED:
        raise InvalidTransition(f"already arrived at {ticket.arrived_at.isoformat()}", state=ticket.state)
    return transition(session, ticket, action=Action.ARRIVE, actor=actor, technician_id=technician.id,
                      location=location, changes={"arrived_at": _now()})


def complete(session: Session, redis: Redis, *, ticket: Ticket, actor: Actor, body: CompleteBody,
             settings: Settings, once: idempotency.Request | None = None) -> Step | None:
    """Finish the work on site; the ticket then waits for the follow-up. None for a replay of `once`.

    Raises: NotYourTicket, NotATechnician, InvalidTransition, IdempotencyKeyReused.
    """
    if idempotency.is_replay(session, actor, once, ticket_id=ticket.id):
        return None
    technician = require_holder(session, ticket, actor, Action.COMPLETE)
    materials = [{"sku": m.sku, "qty": str(m.qty)} for m in body.materials]
    step = transition(session, ticket, action=Action.COMPLETE, actor=actor, technician_id=technician.id,
                      note=body.note, data={"materials": materials, "photos": body.photos},
                      changes={"completed_at": _now(), "completion_note": body.note, "materials": materials})
    attachments.link(session, ticket, body.photos)
    mirror.mirror(session, redis, ticket)
    labor.record_completion(session, ticket, technician, settings=settings)  # same transaction: paid iff done
    _complete_grouped(session, redis, lead=ticket, technician=technician, actor=actor, visited=body.visited,
                      settings=settings)
    load.refresh(session, redis, [technician.id], now=_now(), tz=settings.timezone)
    return step


def followup(session: Session, *, ticket: Ticket, actor: Actor, satisfaction: int, comment: str | None,
             settings: Settings) -> Step:
    """Record the subscriber's rating (by the subscriber or from a clerk's call); closes the ticket
    and applies the rating to the visit's pay.

    Raises: Forbidden, InvalidTransition.
    """
    require(actor, FOLLOWUP_ROLES, "record a follow-up")
    step = transition(session, ticket, action=Action.FOLLOWUP, actor=actor, note=comment,
                      data={"satisfaction": satisfaction},
                      changes={"satisfaction": satisfaction, "followup_comment": comment, "closed_at": _now()})
    labor.record_followup(session, ticket, satisfaction=satisfaction, actor=actor, settings=settings, now=step.at)
    return step


def invalidate(session: Session, redis: Redis, *, ticket: Ticket, actor: Actor, reason: str,
               settings: Settings) -> Step:
    """Mark a fake or duplicate report invalid.

    Raises: Forbidden, InvalidTransition.
    """
    require(actor, MANAGERS, "invalidate tickets")
    holder = ticket.technician_id
    step = transition(session, ticket, action=Action.INVALIDATE, actor=actor, note=reason,
                      changes={"invalid_reason": reason, "invalidated_at": _now()})
    audit.record(session, action=AuditAction.TICKET_INVALIDATED, actor=actor, target=("ticket", ticket.id),
                 number=ticket.number, reason=reason)
    _release_grouped(session, redis, lead=ticket, actor=actor)
    handover.after_handover(session, redis, ticket, settings=settings, taken_by=None, also=holder)
    return step


def retype(session: Session, redis: Redis, *, ticket: Ticket, actor: Actor, type_code: str,
           settings: Settings) -> Step:
    """Change a ticket's type; its SLA due times follow the new type (under the surge profile it was taken in with).

    Raises: Forbidden, InvalidInput, InvalidTransition.
    """
    require(actor, MANAGERS, "change a ticket's type")
    new_type = get_type(session, type_code)
    refuse_retired(new_type.code, new_type.retired)
    if new_type.code == ticket.type_code:
        raise InvalidInput("type_code", f"the ticket is a {type_code} already")
    step = transition(session, ticket, action=Action.RETYPE, actor=actor,
                      data={"from": ticket.type_code, "to": new_type.code},
                      note=f"{ticket.type_code} → {new_type.code}",
                      changes={"type_code": new_type.code,
                               **sla.retiming(ticket, new_type, surge=sla.surge_of(session, ticket),
                                              cfg=settings.sla, now=_now())})
    mirror.mirror(session, redis, ticket)  # a new version: a grab's fence must see it
    return step



def prioritize(session: Session, redis: Redis, *, ticket: Ticket, actor: Actor, level: Priority,
               reason: str | None, settings: Settings) -> Step:
    """Change a ticket's priority, audited; its SLA due times follow its type's profile at the new level, and a
    grabbable ticket raised to P1 gets its wider ring at the next sweep (the same sweep interval).

    Raises: Forbidden, InvalidInput, InvalidTransition.
    """
    require(actor, MANAGERS, "change a ticket's priority")
    if level is ticket.priority:
        raise InvalidInput("priority", f"the ticket is {level} already")
    before = ticket.priority
    now = _now()
    ticket_type = session.get_one(TicketType, ticket.type_code)
    raised_to_urgent = level is Priority.P1 and ticket.state in GRABBABLE
    step = transition(session, ticket, action=Action.PRIORITIZE, actor=actor,
                      note=f"{before} → {level}" + (f": {reason}" if reason else ""),
                      data={"from": before, "to": level},
                      changes={"priority": level,
                               **sla.retiming(ticket, ticket_type, surge=sla.surge_of(session, ticket),
                                              cfg=settings.sla, now=now, level=level),
                               **({"next_ring_at": now} if raised_to_urgent else {})})
    audit.record(session, action=AuditAction.TICKET_PRIORITIZED, actor=actor, target=("ticket", ticket.id),
                 number=ticket.number, **{"from": before.value, "to": level.value, "reason": reason})
    mirror.mirror(session, redis, ticket)  # a new version, and the pool lists by priority
    return step


def nearest_technicians(session: Session, redis: Redis, *, actor: Actor, point: LatLng, k: int,
                        type_code: str | None, settings: Settings) -> list[tuple[Candidate, Card]]:
    """Who could take a ticket at this point now, nearest (and fairest) first, for a dispatcher.

    Everything it reads but the live index is remembered by the process, so a
    search costs no database statement.

    Raises:
        Forbidden, OutOfScope (the point lies outside the caller's regions), InvalidInput (unknown type).
    """
    require(actor, MANAGERS, "look up technicians")
    skills = type_terms(session, type_code).skills if type_code else ()
    placement = regions.place(session, point)
    if actor.scope is not None and not placement.lies_within(actor.scope):
        raise OutOfScope("that point lies outside your regions")
    found = find_nearest(redis, branch_id=placement.branch_id, point=point, k=k, radius_m=settings.offer.max_radius_m,
                         skills=skills, ticket_path=placement.grid_path, now=_now(), tz=settings.timezone,
                         presence=settings.presence, offer=settings.offer)
    named = cards(session, [c.technician_id for c in found], branch_id=placement.branch_id)
    return [(c, named[c.technician_id]) for c in found if c.technician_id in named]


def held_by(session: Session, *, technician_id: int) -> list[Ticket]:
    return list(session.scalars(select(Ticket).where(
        Ticket.technician_id == technician_id,
        Ticket.state.in_([TicketState.ACCEPTED, TicketState.AWAITING_FOLLOWUP])).order_by(Ticket.accepted_at)))
