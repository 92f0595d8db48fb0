from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from dispatch.tickets.models import Source, Ticket, TicketEvent, TicketKind, TicketState
from geo.crs import Crs
from geo.points import from_wkb
from technicians.schemas import Skill

TypeCode = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=20,
                                         pattern=r"^\+?[0-9][0-9\- ]{3,18}[0-9]$")]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class Location(BaseModel):
    """A point in any of the CRSs Chinese phones and maps give; stored as WGS-84."""

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)
    crs: Crs = Crs.WGS84


class LocationRead(BaseModel):
    lat: float
    lng: float
    crs: Crs = Crs.WGS84


class Contact(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    phone: Phone


class TicketCreate(BaseModel):
    type_code: TypeCode
    description: str = Field(min_length=1, max_length=4000)
    location: Location
    address: str | None = Field(default=None, max_length=300)
    contact: Contact
    source: Source | None = Field(default=None, description="Defaults from the caller: wechat, api or phone.")
    attachments: list[Annotated[str, StringConstraints(max_length=500)]] = Field(
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


class TicketRead(BaseModel):
    id: int
    number: str
    state: TicketState
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
    contact: Contact
    technician_id: int | None
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
    offers: list[OfferRead] = Field(default_factory=list)
    merged: bool = Field(default=False, description="True when this report was merged into an open ticket.")


class TicketDetail(TicketRead):
    events: list[EventRead]


class AssignBody(BaseModel):
    technician_id: int
    note: Note | None = None


class ReasonBody(BaseModel):
    reason: Reason


class ArriveBody(BaseModel):
    location: Location


class Material(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    qty: Decimal = Field(gt=0, le=10000, max_digits=10, decimal_places=3)


class CompleteBody(BaseModel):
    note: Note
    materials: list[Material] = Field(default_factory=list, max_length=50)
    photos: list[Annotated[str, StringConstraints(max_length=500)]] = Field(default_factory=list, max_length=20)


class FollowupBody(BaseModel):
    satisfaction: int = Field(ge=1, le=5)
    comment: Note | None = None


class TicketPatch(BaseModel):
    type_code: TypeCode


class TicketTypeCreate(BaseModel):
    code: TypeCode
    name: str = Field(min_length=1, max_length=100)
    kind: TicketKind = TicketKind.FAULT
    skills: list[Skill] = Field(default_factory=list)
    standard_hours: Decimal = Field(gt=0, le=1000, max_digits=6, decimal_places=2)
    piece_rate: Decimal = Field(ge=0, le=100000, max_digits=10, decimal_places=2)
    response_sla_min: int = Field(gt=0, le=60 * 24 * 30)
    resolution_sla_min: int = Field(gt=0, le=60 * 24 * 90)
    tips: str = Field(default="", max_length=20000)


class TicketTypeUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    kind: TicketKind | None = None
    skills: list[Skill] | None = None
    standard_hours: Decimal | None = Field(default=None, gt=0, le=1000, max_digits=6, decimal_places=2)
    piece_rate: Decimal | None = Field(default=None, ge=0, le=100000, max_digits=10, decimal_places=2)
    response_sla_min: int | None = Field(default=None, gt=0, le=60 * 24 * 30)
    resolution_sla_min: int | None = Field(default=None, gt=0, le=60 * 24 * 90)
    tips: str | None = Field(default=None, max_length=20000)
    active: bool | None = None


class TicketTypeRead(TicketTypeCreate):
    model_config = ConfigDict(from_attributes=True)

    active: bool


class AttachmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    ticket_id: int
    kind: str
    content_type: str
    size: int
    created_at: datetime


def ticket_read(ticket: Ticket, *, merged: bool = False, offers: list[OfferRead] | None = None) -> TicketRead:
    """The API view of a ticket: WGS-84 location out of PostGIS, contact as one object."""
    point = from_wkb(ticket.location)
    fields = {name: getattr(ticket, name) for name in TicketRead.model_fields
              if name not in {"location", "contact", "attachments", "offers", "merged"}}
    return TicketRead(**fields, location=LocationRead(lat=point.lat, lng=point.lng),
                      contact=Contact(name=ticket.contact_name, phone=ticket.contact_phone),
                      attachments=ticket.attachment_refs, merged=merged, offers=offers or [])


def event_read(event: TicketEvent) -> EventRead:
    point = from_wkb(event.location) if event.location is not None else None
    return EventRead(at=event.at, actor=event.actor, actor_role=event.actor_role, action=event.action,
                     from_state=TicketState(event.from_state) if event.from_state else None,
                     to_state=TicketState(event.to_state), technician_id=event.technician_id,
                     note=event.note, location=LocationRead(lat=point.lat, lng=point.lng) if point else None)


class NearestRead(BaseModel):
    technician_id: int
    name: str
    phone: str
    distance_m: float
    active_count: int


class MyOfferRead(BaseModel):
    ticket: TicketRead
    distance_m: float
    ring: int
    offered_at: datetime


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


class TypeStats(StatsMetrics):
    type_code: str


class RegionStats(StatsMetrics):
    region_id: int
    name: str


class TechnicianStats(StatsMetrics):
    technician_id: int
    name: str


class StatsRead(StatsMetrics):
    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    region_id: int | None
    timezone: str
    by_state: dict[str, int]
    by_type: list[TypeStats]
    by_region: list[RegionStats]
    by_technician: list[TechnicianStats]
