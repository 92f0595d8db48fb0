from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from dispatch.accounts.models import Importance, NoticeChannel
from dispatch.kernel.auth import Role
from dispatch.kernel.inputs import Flag, Integer, JsonId, Number, Phone, Prose, Text
from dispatch.kernel.settings import SlaSettings
from dispatch.tickets import sla
from dispatch.tickets.lifecycle import Action
from dispatch.tickets.models import (
    DeclineReason,
    DispatchMode,
    OfferOutcome,
    Priority,
    Source,
    SurgeSwitch,
    Ticket,
    TicketEvent,
    TicketKind,
    TicketState,
)
from dispatch.tickets.permissions import Viewer
from geo.crs import Crs
from geo.models import RegionKind
from geo.points import from_wkb
from technicians.schemas import Skill

TypeCode = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")]
Note = Annotated[Prose, StringConstraints(strip_whitespace=True, max_length=2000)]
Reason = Annotated[Prose, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class Location(BaseModel):
    """A point in any of the CRSs Chinese phones and maps give; stored as WGS-84."""

    lat: Number = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: Number = Field(ge=-180, le=180, allow_inf_nan=False)
    crs: Crs = Crs.WGS84


class LocationRead(BaseModel):
    lat: float
    lng: float
    crs: Crs = Crs.WGS84


class Contact(BaseModel):
    name: Text = Field(min_length=1, max_length=100)
    phone: Phone


class ContactRead(BaseModel):
    """As stored: tickets taken in before phones were checked keep the number they came with."""

    name: str
    phone: str


class TicketCreate(BaseModel):
    # In /docs, and a report Schemathesis's examples phase files for real (tests/api/test_fuzz.py).
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "type_code": "broadband_fault", "description": "光猫红灯", "contact": {"name": "张三", "phone": "13900000001"},
        "location": {"lat": 43.935, "lng": 116.08, "crs": "gcj02"}}]})

    type_code: TypeCode
    description: Prose = Field(min_length=1, max_length=4000)
    location: Location
    address: Text | None = Field(default=None, max_length=300)
    contact: Contact
    source: Source | None = Field(default=None, description="Defaults from the caller: wechat, api or phone.")
    attachments: list[Annotated[Text, StringConstraints(max_length=500)]] = Field(
        default_factory=list, max_length=9, description="References to media already held elsewhere.")


class OfferRead(BaseModel):
    technician_id: int
    distance_m: float


class EventRead(BaseModel):
    at: datetime
    actor: str
    actor_role: str
    action: str
    from_state: TicketState | None
    to_state: TicketState
    technician_id: int | None
    note: str | None
    location: LocationRead | None


class SlaRead(BaseModel):
    """Where the ticket stands against its time limits (the console colours and lists by it)."""

    response_warned_at: datetime | None
    resolution_warned_at: datetime | None
    breached: bool = Field(description="Red now: timed out, or accepted past its resolution SLA.")
    breached_at: datetime | None = Field(description="When the resolution SLA breach was flagged.")
    escalation_level: int = Field(description="How many steps of the escalation chain were notified.")
    next_escalation_at: datetime | None
    surge: bool = Field(description="Timed by a surge profile.")


class TicketRead(BaseModel):
    id: int
    number: str
    state: TicketState
    priority: Priority = Field(description="P1 紧急, P2 高, P3 中, P4 低: the type's, raised for an important "
                                           "subscriber or site, or as a dispatcher set it.")
    version: int
    type_code: str
    source: Source
    description: str
    location: LocationRead
    address: str | None
    h3: str
    region_id: int
    branch_id: int
    outside_area: bool
    contact: ContactRead | None = Field(description="The subscriber's name and phone; null for a technician until "
                                                "they hold the ticket (the pool shows where and what, not who).")
    technician_id: int | None
    incident_id: int | None = Field(default=None, description="The outage incident this ticket leads or is grouped "
                                                              "under (GET /api/v1/incidents).")
    urge_count: int = Field(default=0, description="催办: how often someone urged it")
    urged_at: datetime | None = None
    system_assigned: bool = Field(default=False, description="Its technician got it from the system (the branch's "
                                                             "assign or hybrid mode) and may decline it (拒单).")
    attachments: list[str]
    completion_note: str | None
    materials: list[dict[str, Any]]
    satisfaction: int | None
    invalid_reason: str | None
    created_at: datetime
    response_due_at: datetime
    resolution_due_at: datetime
    accepted_at: datetime | None
    arrived_at: datetime | None
    completed_at: datetime | None
    closed_at: datetime | None
    timed_out_at: datetime | None
    sla: SlaRead
    offers: list[OfferRead] = Field(default_factory=list)
    merged: bool = Field(default=False, description="True when this report was merged into an open ticket.")


class VisitRead(BaseModel):
    """Who is coming, for the subscriber's progress page: the holder's name and phone, and a rough arrival."""

    technician_name: str
    technician_phone: str
    arrival_estimate_at: datetime | None = Field(
        description="From the technician's last position at a city pace; null once arrived or position unknown.")


class TicketDetail(TicketRead):
    events: list[EventRead]
    visit: VisitRead | None = Field(default=None, description="The holder, for those who see the ticket in full.")


class AssignBody(BaseModel):
    technician_id: JsonId
    note: Note | None = None


class ReasonBody(BaseModel):
    reason: Reason


class DeclineBody(BaseModel):
    reason_code: DeclineReason = Field(description="too_far 太远, busy 忙不过来, no_skill 不会修, off_shift 不在班, "
                                                   "other 其他")
    note: Note | None = None


class DispatchModeBody(BaseModel):
    mode: DispatchMode = Field(description="grab 抢单 (offered, first tap wins); assign 系统派单 (the best eligible "
                                           "technician at intake); hybrid (offered first, assigned by the system "
                                           "after hybrid_after_s unanswered)")
    hybrid_after_s: int | None = Field(default=None, ge=10, le=86_400, description=(
        "Hybrid mode's wait before the system assigns; null: the service's default (OFFER__HYBRID_AFTER_S)."))


class DispatchModeRead(BaseModel):
    region_id: int
    name: str
    mode: DispatchMode
    hybrid_after_s: int = Field(description="the wait in force (the branch's own or the default)")
    changed_by: str | None
    changed_at: datetime | None


class AcknowledgeBody(BaseModel):
    note: Note | None = None


class ArriveBody(BaseModel):
    location: Location


class Material(BaseModel):
    sku: Text = Field(min_length=1, max_length=64)
    qty: Decimal = Field(gt=0, le=10000, max_digits=10, decimal_places=3)


class CompleteBody(BaseModel):
    note: Note
    materials: list[Material] = Field(default_factory=list, max_length=50)
    photos: list[Annotated[Text, StringConstraints(max_length=500)]] = Field(default_factory=list, max_length=20)
    visited: list[JsonId] = Field(default_factory=list, max_length=500, description=(
        "Completing an incident's ticket: the grouped reports that needed a visit of their own (paid at the "
        "type's visit rate)."))


class FollowupBody(BaseModel):
    satisfaction: Integer = Field(ge=1, le=5)
    comment: Note | None = None


class TicketPatch(BaseModel):
    """At least one of `type_code` and `priority`; `reason` goes into the priority change's event."""

    type_code: TypeCode | None = None
    priority: Priority | None = None
    reason: Text | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _something(self) -> "TicketPatch":
        if self.type_code is None and self.priority is None:
            raise ValueError("give type_code, priority or both")
        return self


class ImportantSiteCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=100)
    importance: Importance
    location: Location
    radius_m: Integer = Field(ge=10, le=5000, description="Reports within this distance of the site are raised.")


class ImportantSiteRead(BaseModel):
    id: int
    name: str
    importance: Importance
    location: LocationRead
    radius_m: int
    branch_id: int
    created_by: str
    created_at: datetime


class UrgeBody(BaseModel):
    note: Note | None = None


class IncidentCreate(BaseModel):
    ticket_ids: list[JsonId] = Field(min_length=2, max_length=500)


class IncidentDetach(BaseModel):
    ticket_id: JsonId


class IncidentRead(BaseModel):
    id: int
    ticket: TicketRead  # its own ticket: offered, grabbed and completed like any
    ticket_ids: list[int]  # the reports grouped under it (and completed with it)
    type_code: str
    branch_id: int
    opened_by: str
    created_at: datetime
    last_report_at: datetime
    resolved_at: datetime | None


class SlaMinutes(BaseModel):
    response_sla_min: Integer = Field(gt=0, le=60 * 24 * 30)
    resolution_sla_min: Integer = Field(gt=0, le=60 * 24 * 90)


class TicketTypeCreate(BaseModel):
    code: TypeCode
    name: Text = Field(min_length=1, max_length=100)
    kind: TicketKind = TicketKind.FAULT
    skills: list[Skill] = Field(default_factory=list)
    standard_hours: Decimal = Field(gt=0, le=1000, max_digits=6, decimal_places=2)
    piece_rate: Decimal = Field(ge=0, le=100000, max_digits=10, decimal_places=2)
    response_sla_min: Integer = Field(gt=0, le=60 * 24 * 30)
    resolution_sla_min: Integer = Field(gt=0, le=60 * 24 * 90)
    tips: Prose = Field(default="", max_length=20000)
    priority: Priority = Field(default=Priority.P3, description="Its reports' priority unless raised.")
    sla_by_priority: dict[Priority, SlaMinutes] = Field(
        default_factory=dict, description="SLA minutes per priority; a priority not named scales the minutes above "
                                          "(the type's P3 profile) by the server's factors.")
    urgent_over_limit: Flag = Field(default=False, description="A P1 of this type is offered to technicians at "
                                                               "their max_active limit too.")
    incident_reports: Integer | None = Field(default=None, ge=2, le=1000, description=(
        "Outage detection: this many reports within incident_radius_m in incident_window_min open an incident "
        "(null: off)."))
    incident_radius_m: Integer = Field(default=300, ge=50, le=5000)
    incident_window_min: Integer = Field(default=10, ge=1, le=24 * 60)
    visit_rate: Decimal = Field(default=Decimal(0), ge=0, le=100000, max_digits=10, decimal_places=2, description=(
        "Paid for a report grouped under an incident that needed its own visit; the repair is paid once."))


class TicketTypeUpdate(BaseModel):
    name: Text | None = Field(default=None, min_length=1, max_length=100)
    kind: TicketKind | None = None
    skills: list[Skill] | None = None
    standard_hours: Decimal | None = Field(default=None, gt=0, le=1000, max_digits=6, decimal_places=2)
    piece_rate: Decimal | None = Field(default=None, ge=0, le=100000, max_digits=10, decimal_places=2)
    response_sla_min: Integer | None = Field(default=None, gt=0, le=60 * 24 * 30)
    resolution_sla_min: Integer | None = Field(default=None, gt=0, le=60 * 24 * 90)
    tips: Prose | None = Field(default=None, max_length=20000)
    priority: Priority | None = None
    sla_by_priority: dict[Priority, SlaMinutes] | None = None
    urgent_over_limit: Flag | None = None
    incident_reports: Integer | None = Field(default=None, ge=0, le=1000, description="0 turns detection off.")
    incident_radius_m: Integer | None = Field(default=None, ge=50, le=5000)
    incident_window_min: Integer | None = Field(default=None, ge=1, le=24 * 60)
    visit_rate: Decimal | None = Field(default=None, ge=0, le=100000, max_digits=10, decimal_places=2)
    active: Flag | None = None
    retired: Flag | None = Field(default=None, description=(
        "Retired: intake refuses new reports of it and only staff still see it listed; its tickets carry on."))


class TicketTypeRead(TicketTypeCreate):
    model_config = ConfigDict(from_attributes=True)

    active: bool
    retired: bool = Field(description="Listed only to staff; intake refuses it.")


class AttachmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    ticket_id: int
    kind: str
    content_type: str
    size: int
    created_at: datetime


def ticket_read(ticket: Ticket, viewer: Viewer, *, merged: bool = False,
                offers: list[OfferRead] | None = None) -> TicketRead:
    """The API view of a ticket as this viewer may see it: WGS-84 location out of PostGIS, contact as one object."""
    point = from_wkb(ticket.location)
    fields = {name: getattr(ticket, name) for name in TicketRead.model_fields
              if name not in {"location", "contact", "attachments", "offers", "merged", "sla"}}
    contact = ContactRead(name=ticket.contact_name, phone=ticket.contact_phone) if viewer.sees_in_full(ticket) else None
    return TicketRead(**fields, location=LocationRead(lat=point.lat, lng=point.lng), sla=sla_read(ticket),
                      contact=contact, attachments=ticket.attachment_refs, merged=merged, offers=offers or [])


def sla_read(ticket: Ticket) -> SlaRead:
    escalating = sla.breach_of(ticket) is not None
    return SlaRead(response_warned_at=ticket.response_warned_at, resolution_warned_at=ticket.resolution_warned_at,
                   breached=escalating, breached_at=ticket.sla_breached_at,
                   escalation_level=ticket.escalation_level,
                   next_escalation_at=ticket.next_escalation_at if escalating else None,
                   surge=ticket.sla_surge_id is not None)


# The subscriber's own words (the report, a merged repeat): shown with the description in the pool.
REPORT_ACTIONS = frozenset({Action.CREATE, Action.MERGE})


def event_read(event: TicketEvent, *, in_full: bool) -> EventRead:
    """One step; out of full view (a technician reading the pool) without who took it (a subscriber's log-in
    is their name), where (another technician's position), or notes beyond the report's own words."""
    point = from_wkb(event.location) if event.location is not None and in_full else None
    return EventRead(at=event.at, actor=event.actor if in_full else event.actor_role, actor_role=event.actor_role,
                     action=event.action, from_state=TicketState(event.from_state) if event.from_state else None,
                     to_state=TicketState(event.to_state), technician_id=event.technician_id,
                     note=event.note if in_full or event.action in REPORT_ACTIONS else None,
                     location=LocationRead(lat=point.lat, lng=point.lng) if point else None)


class NearestRead(BaseModel):
    technician_id: int
    name: str
    phone: str
    distance_m: float
    active_count: int


class PoolTicketRead(TicketRead):
    """A grabbable ticket as the pool lists it to a technician."""

    distance_m: float


class SentOfferRead(BaseModel):
    technician_id: int
    name: str
    ring: int
    distance_m: float
    offered_at: datetime
    outcome: OfferOutcome = Field(description="taken: this technician got the ticket; closed: someone else did, "
                                            "or it was invalidated")
    last_seen: LocationRead | None = Field(description="the technician's last known position, WGS-84")


class TicketOffersRead(BaseModel):
    ring: int = Field(description="rings offered so far")
    ring_radius_m: int | None = Field(description="how far the latest ring reached from the ticket")
    offers: list[SentOfferRead]


class MyOfferRead(BaseModel):
    ticket: TicketRead
    distance_m: float
    ring: int
    offered_at: datetime


class TipsRead(BaseModel):
    type_code: str
    name: str
    markdown: str
    html: str = Field(description="The markdown rendered to HTML; raw HTML in it is shown as text.")
    updated_at: datetime


class TipsUpdate(BaseModel):
    markdown: Prose = Field(max_length=20000)


class TipOutcomeCreate(BaseModel):
    solved: Flag = Field(description="True: the tips solved it and no report is filed (a visit saved).")


class TipOutcomeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    type_code: str
    solved: bool
    at: datetime


class TipOutcomeCountRead(BaseModel):
    type_code: str
    name: str
    solved: int
    not_solved: int


class TipOutcomeSummary(BaseModel):
    solved: int = Field(description="Visits saved in the period.")
    not_solved: int
    items: list[TipOutcomeCountRead]


class SurgeBody(BaseModel):
    on: Flag
    reason: Reason | None = None
    response_factor: Number | None = Field(default=None, ge=1, le=10, allow_inf_nan=False,
                                          description="Multiplies each type's response SLA; default from settings.")
    resolution_factor: Number | None = Field(default=None, ge=1, le=10, allow_inf_nan=False,
                                            description="Multiplies each type's resolution SLA.")


class SurgeRead(BaseModel):
    region_id: int
    on: bool
    response_factor: float
    resolution_factor: float
    reason: str | None = None
    switched_by: str | None = None
    switched_at: datetime | None = None
    retimed: int = Field(default=0, description="Open tickets re-timed by this switch.")


class SurgeSwitchRead(BaseModel):
    """One switch of a region's surge mode, as its audit trail keeps it."""

    id: int
    on: bool
    response_factor: float
    resolution_factor: float
    reason: str | None
    switched_by: str
    switched_at: datetime
    retimed: int = Field(description="Open tickets re-timed by this switch.")


class EscalationStepBody(BaseModel):
    title: Text = Field(min_length=1, max_length=100)
    delay_min: Integer = Field(ge=0, le=60 * 24 * 7, description="Minutes after the breach.")
    role: Role | None = Field(default=None, description="Notify the users with this role at `reach`...")
    reach: RegionKind | None = Field(default=None, description="...of the ticket's grid, branch or company.")
    user_id: JsonId | None = Field(default=None, description="Or one named user.")
    channels: list[NoticeChannel] = Field(
        default_factory=list, max_length=len(NoticeChannel),
        description="Staff notice channels the recipients are messaged through (each person's own set-up, "
                    "GET /api/v1/me/notifications); empty: the event and the live feed alone. With channels, a step "
                    "none of whose recipients can be reached now passes to the next step at once.")


class EscalationStepRead(EscalationStepBody):
    level: int


class EscalationChainBody(BaseModel):
    steps: list[EscalationStepBody] = Field(min_length=1, max_length=10)


class EscalationChainRead(BaseModel):
    region_id: int
    defined_at_region_id: int | None = Field(description="The region whose chain applies; null: the default chain.")
    steps: list[EscalationStepRead]


def surge_read(region_id: int, switch: SurgeSwitch | None, cfg: SlaSettings) -> SurgeRead:
    """The region's own surge state (never switched: off, with the default factors)."""
    if switch is None:
        return SurgeRead(region_id=region_id, on=False, response_factor=cfg.surge_response_factor,
                         resolution_factor=cfg.surge_resolution_factor)
    return SurgeRead(region_id=region_id, on=switch.on, response_factor=switch.response_factor,
                     resolution_factor=switch.resolution_factor, reason=switch.reason, switched_by=switch.actor,
                     switched_at=switch.at, retimed=switch.retimed)


def chain_read(region_id: int, defined_at: int | None, rungs: list[sla.Rung]) -> EscalationChainRead:
    return EscalationChainRead(region_id=region_id, defined_at_region_id=defined_at, steps=[
        EscalationStepRead(level=r.level, title=r.title, delay_min=r.delay_min, role=r.role, reach=r.reach,
                           user_id=r.user_id, channels=list(r.channels)) for r in rungs])

class StatsMetrics(BaseModel):
    """Minutes for times; shares in [0, 1]; null where nothing qualifies."""

    tickets: int
    accept_median_min: float | None
    accept_p90_min: float | None
    complete_median_min: float | None
    complete_p90_min: float | None
    response_sla_attainment: float | None
    resolution_sla_attainment: float | None
    timeout_rate: float | None
    invalid_rate: float | None
    satisfaction_avg: float | None
    satisfaction_count: int
    urges: int = Field(default=0, description="催办 counted on the period's tickets")
    urged_rate: float | None = Field(default=None, description="share of the period's tickets urged at least once")


class TypeStats(StatsMetrics):
    type_code: str


class RegionStats(StatsMetrics):
    region_id: int
    name: str


class TechnicianStats(StatsMetrics):
    technician_id: int
    name: str


class DeclineCounts(BaseModel):
    total: int
    by_reason: dict[str, int]


class BranchDeclines(DeclineCounts):
    branch_id: int
    name: str


class TechnicianDeclines(DeclineCounts):
    technician_id: int
    name: str


class DeclineStats(DeclineCounts):
    """System assignments declined (拒单) in the period, by reason code."""

    by_branch: list[BranchDeclines]
    by_technician: list[TechnicianDeclines]


class StatsRead(StatsMetrics):
    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    region_id: int | None
    timezone: str
    by_state: dict[str, int]
    by_type: list[TypeStats]
    by_region: list[RegionStats]
    by_technician: list[TechnicianStats]
    declines: DeclineStats


class SeriesPoint(StatsMetrics):
    bucket: str = Field(description="the local date (2026-10-01), or the hour of the local day (00 to 23)")


class SeriesRead(BaseModel):
    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    region_id: int | None
    timezone: str
    bucket: str = Field(description="day: each local date of the period; hour: each hour of the local day, "
                                    "over the whole period")
    points: list[SeriesPoint] = Field(description="every bucket in order, also those with no ticket")


class CellStatsRead(BaseModel):
    cell: str = Field(description="H3 cell id")
    centre: LocationRead
    boundary: list[LocationRead] = Field(description="the cell's corners in order, WGS-84")
    reports: int = Field(description="tickets reported in the period, where they were reported")
    open: int = Field(description="tickets open now (pending, timed out, accepted, awaiting follow-up)")
    on_duty: int = Field(description="on-duty technicians now, where the live index has them")
    present: int = Field(description="technicians whose sampled track lay in the cell during the period (that "
                                     "local hour of each day with `hour`): the supply of that time")
    accept_median_min: float | None = Field(description="median minutes from report to first grab or assignment "
                                                        "of the period's reports here that were taken")


class CellsRead(BaseModel):
    res: int
    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    region_id: int | None
    hour: int | None = Field(default=None, description="the local hour the reports were counted in; null: all day")
    timezone: str
    cells: list[CellStatsRead]
