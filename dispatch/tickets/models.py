"""Ticket types, tickets, their append-only events, attachments and intake bookkeeping."""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispatch.accounts.models import Importance
from dispatch.kernel.auth import Role
from dispatch.kernel.db import Base, str_enum
from geo.models import RegionKind


class TicketState(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    AWAITING_FOLLOWUP = "awaiting_followup"
    COMPLETED = "completed"
    TIMED_OUT = "timed_out"
    INVALID = "invalid"
    # A report grouped under an outage incident: not offered itself, completed with the incident.
    GROUPED = "grouped"


class Priority(StrEnum):
    """P1 紧急 to P4 低; the values sort as the levels do (P1 first)."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class TicketKind(StrEnum):
    FAULT = "fault"
    INSTALLATION = "installation"
    RELOCATION = "relocation"
    REMOVAL = "removal"


class Source(StrEnum):
    WECHAT = "wechat"
    PHONE = "phone"
    COUNTER = "counter"
    API = "api"


class TicketType(Base):
    __tablename__ = "ticket_type"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[TicketKind] = mapped_column(str_enum(TicketKind, 16), default=TicketKind.FAULT)
    skills: Mapped[list[str]] = mapped_column(ARRAY(String(32)), default=list)
    standard_hours: Mapped[Decimal] = mapped_column(Numeric(6, 2))
    piece_rate: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    response_sla_min: Mapped[int] = mapped_column(Integer)
    resolution_sla_min: Mapped[int] = mapped_column(Integer)
    tips: Mapped[str] = mapped_column(Text, default="")
    # Its reports' priority unless the subscriber or the site raises it.
    priority: Mapped[Priority] = mapped_column(str_enum(Priority, 2), default=Priority.P3, server_default="P3")
    # SLA minutes per priority ({"P1": {"response_sla_min": .., "resolution_sla_min": ..}}); a priority not
    # named here scales the type's own minutes (its P3 profile) by SLA__PRIORITY_FACTORS.
    sla_by_priority: Mapped[dict[str, dict[str, int]]] = mapped_column(JSONB, default=dict, server_default="{}")
    # A P1 of this type is offered to technicians at their max_active limit too.
    urgent_over_limit: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # Outage detection: this many reports within incident_radius_m of each other in incident_window_min
    # minutes open an incident (None: never by themselves).
    incident_reports: Mapped[int | None] = mapped_column(Integer)
    incident_radius_m: Mapped[int] = mapped_column(Integer, default=300, server_default="300")
    incident_window_min: Mapped[int] = mapped_column(Integer, default=10, server_default="10")
    # Paid for a grouped report that needed its own visit; the repair itself is paid once, on the incident.
    visit_rate: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal(0), server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Retired: no new reports of it (intake refuses it, subscribers no longer see it); its tickets carry on.
    retired: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class Ticket(Base):
    __tablename__ = "ticket"
    __table_args__ = (
        Index("ix_ticket_state_region", "state", "region_id"),
        Index("ix_ticket_next_ring_due", "next_ring_at", postgresql_where="next_ring_at IS NOT NULL"),
        Index("ix_ticket_open_by_subscriber", "subscriber_id", "type_code",
              postgresql_where="state NOT IN ('completed', 'invalid')"),
        # The SLA sweep's due rows, one small index per checkpoint: each shrinks
        # as tickets pass the checkpoint or leave the state it applies to.
        Index("ix_ticket_response_warning_due", "response_warn_at",
              postgresql_where="state = 'pending' AND response_warned_at IS NULL"),
        Index("ix_ticket_response_due", "response_due_at", postgresql_where="state = 'pending'"),
        Index("ix_ticket_resolution_warning_due", "resolution_warn_at",
              postgresql_where="state = 'accepted' AND resolution_warned_at IS NULL"),
        Index("ix_ticket_resolution_due", "resolution_due_at",
              postgresql_where="state = 'accepted' AND sla_breached_at IS NULL"),
        Index("ix_ticket_next_escalation_due", "next_escalation_at",
              postgresql_where="next_escalation_at IS NOT NULL"),
        Index("ix_ticket_system_assign_due", "system_assign_at", postgresql_where="system_assign_at IS NOT NULL"),
        # A day's highest number (`number LIKE 'XL-20261205-%'`) when its Redis counter is seeded.
        Index("ix_ticket_number_prefix", "number", postgresql_ops={"number": "text_pattern_ops"}),
        # The console's search (`q=`): a part of a number, an address or a phone, anywhere in the text.
        Index("ix_ticket_number_trgm", "number", postgresql_using="gin", postgresql_ops={"number": "gin_trgm_ops"}),
        Index("ix_ticket_address_trgm", "address", postgresql_using="gin",
              postgresql_ops={"address": "gin_trgm_ops"}),
        Index("ix_ticket_contact_phone_trgm", "contact_phone", postgresql_using="gin",
              postgresql_ops={"contact_phone": "gin_trgm_ops"}),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    type_code: Mapped[str] = mapped_column(ForeignKey("ticket_type.code"))
    state: Mapped[TicketState] = mapped_column(str_enum(TicketState, 20), default=TicketState.PENDING)
    priority: Mapped[Priority] = mapped_column(str_enum(Priority, 2), default=Priority.P3, server_default="P3")
    # The fence for optimistic concurrency: every transition is a
    # compare-and-set on it, so a lost race matches no row instead of overwriting.
    version: Mapped[int] = mapped_column(Integer, default=1)
    source: Mapped[Source] = mapped_column(str_enum(Source, 16))
    description: Mapped[str] = mapped_column(Text)
    location: Mapped[WKBElement] = mapped_column(Geometry("POINT", srid=4326, spatial_index=True))
    h3: Mapped[str] = mapped_column(String(16), index=True)
    address: Mapped[str | None] = mapped_column(String(300))
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    outside_area: Mapped[bool] = mapped_column(Boolean, default=False)
    contact_name: Mapped[str] = mapped_column(String(100))
    contact_phone: Mapped[str] = mapped_column(String(32))
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscriber.id"))
    technician_id: Mapped[int | None] = mapped_column(ForeignKey("technician.id"), index=True)
    attachment_refs: Mapped[list[str]] = mapped_column(JSONB, default=list)
    completion_note: Mapped[str | None] = mapped_column(Text)
    materials: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    followup_comment: Mapped[str | None] = mapped_column(Text)
    invalid_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    response_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolution_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    arrived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    timed_out_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    invalidated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # The ring policy's state: the sweep offers the next ring when next_ring_at is due.
    ring: Mapped[int] = mapped_column(Integer, default=0)
    ring_radius_m: Mapped[int | None] = mapped_column(Integer)
    next_ring_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # The SLA sweep's state (dispatch/tickets/sla.py): when each warning is due and
    # when it went out, the resolution breach, and how far up the chain it went.
    response_warn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    response_warned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_warn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_warned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sla_breached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalation_level: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_escalation_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The surge switch whose SLA profile timed this ticket; NULL for the standard profile.
    sla_surge_id: Mapped[int | None] = mapped_column(ForeignKey("surge_switch.id"))
    # 催办: how often someone urged it, and when last (a subscriber may again 10 minutes after their last).
    urge_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    urged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The outage incident this ticket leads (its own ticket) or is grouped under.
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id", use_alter=True), index=True)
    # System dispatch (a branch's `assign` or `hybrid` mode): its holder got it from the system, so may decline it;
    # and, in hybrid mode, when the system assigns it if nobody grabbed it by then.
    system_assigned: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    system_assign_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    events: Mapped[list["TicketEvent"]] = relationship(lazy="raise", order_by="TicketEvent.id")


class TicketEvent(Base):
    """One row per transition; never updated or deleted (a trigger refuses both)."""

    __tablename__ = "ticket_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(String(100))
    actor_role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(20))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    technician_id: Mapped[int | None] = mapped_column(ForeignKey("technician.id"))
    note: Mapped[str | None] = mapped_column(Text)
    location: Mapped[WKBElement | None] = mapped_column(Geometry("POINT", srid=4326, spatial_index=False))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class Incident(Base):
    """An outage: many reports of one fault in one place, repaired once through its own ticket."""

    __tablename__ = "incident"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), unique=True)  # the ticket that is offered
    type_code: Mapped[str] = mapped_column(ForeignKey("ticket_type.code"))
    branch_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    # H3 cells (res 9) within the type's radius of its reports: a later report in them, in the window, joins.
    cells: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    last_report_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    opened_by: Mapped[str] = mapped_column(String(100))  # "system" when detected
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ImportantSite(Base):
    """A place whose reports go before others (a hospital, an enterprise's building): every report within
    `radius_m` of it is raised as its importance says (PRIORITY__RAISE)."""

    __tablename__ = "important_site"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    importance: Mapped[Importance] = mapped_column(str_enum(Importance, 16))
    location: Mapped[WKBElement] = mapped_column(Geometry("POINT", srid=4326, spatial_index=True))
    radius_m: Mapped[int] = mapped_column(Integer)
    branch_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Attachment(Base):
    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    uploaded_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IdempotencyKey(Base):
    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("principal", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    principal: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    # A replay answers as the first request did: created (201) or merged (200).
    merged: Mapped[bool] = mapped_column(Boolean, default=False)
    # A replayed upload answers with the file the first one stored, never a second copy.
    attachment_id: Mapped[int | None] = mapped_column(ForeignKey("attachment.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OfferOutcome(StrEnum):
    OPEN = "open"
    TAKEN = "taken"  # this technician got the ticket
    CLOSED = "closed"  # someone else got it, or it was invalidated


class Offer(Base):
    """A ticket pushed to one technician; unique per pair so a re-run ring offers nobody twice."""

    __tablename__ = "ticket_offer"
    __table_args__ = (
        UniqueConstraint("ticket_id", "technician_id"),
        Index("ix_ticket_offer_open_by_technician", "technician_id", postgresql_where="outcome = 'open'"),
        # Closing a ticket's open offers (every grab and assign) finds them here whatever the statistics
        # say: with stale ones the planner ANDed the by-technician index, every open offer of the branch.
        Index("ix_ticket_offer_open_by_ticket", "ticket_id", postgresql_where="outcome = 'open'"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    technician_id: Mapped[int] = mapped_column(ForeignKey("technician.id"))
    ring: Mapped[int] = mapped_column(Integer)
    distance_m: Mapped[float] = mapped_column(Float)
    offered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    outcome: Mapped[OfferOutcome] = mapped_column(str_enum(OfferOutcome, 10), default=OfferOutcome.OPEN)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutboxMessage(Base):
    """A notification decided in a transaction, sent after commit by a job: never lost if Redis is down."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unsent", "available_at", postgresql_where="sent_at IS NULL"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    topic: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TipOutcome(Base):
    """Someone read a ticket type's self-help tips (知识库) and said whether they solved the problem.

    A solved one is a visit saved: no report was filed. Kept per answer, not
    as counters, so statistics can read any period.
    """

    __tablename__ = "tip_outcome"

    id: Mapped[int] = mapped_column(primary_key=True)
    type_code: Mapped[str] = mapped_column(ForeignKey("ticket_type.code"))
    solved: Mapped[bool] = mapped_column(Boolean)
    reported_by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)


class EscalationStep(Base):
    """One step of a region's escalation chain: who is notified how long after a breach.

    A step names a user, or a role at a level of the ticket's region tree
    (dispatchers of its grid, of its branch, ...). The chain of the most
    specific region on a ticket's path applies; without one, the default chain
    from the settings.
    """

    __tablename__ = "escalation_step"
    __table_args__ = (
        UniqueConstraint("region_id", "level"),
        CheckConstraint("(user_id IS NULL) <> (role IS NULL)", name="user_or_role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id", ondelete="CASCADE"))
    level: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role | None] = mapped_column(str_enum(Role, 16))
    reach: Mapped[RegionKind | None] = mapped_column(str_enum(RegionKind, 16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    delay_min: Mapped[int] = mapped_column(Integer)
    # Staff notice channels the step's recipients are messaged through (dispatch/notices); empty: the event
    # and the live feed alone, as before channels existed.
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(16)), default=list, server_default="{}")


class SurgeSwitch(Base):
    """Surge mode turned on or off for a region: the audit trail and, latest per region, the current state."""

    __tablename__ = "surge_switch"
    __table_args__ = (Index("ix_surge_switch_latest", "region_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"))
    on: Mapped[bool] = mapped_column(Boolean)
    response_factor: Mapped[float] = mapped_column(Float)
    resolution_factor: Mapped[float] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
    actor_role: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Open tickets whose due times this switch changed.
    retimed: Mapped[int] = mapped_column(Integer, default=0)


class DispatchMode(StrEnum):
    """How a branch's new tickets find their technician."""

    GRAB = "grab"  # offered to the nearest, first tap wins (抢单)
    ASSIGN = "assign"  # the system assigns the best eligible technician at intake (系统派单)
    HYBRID = "hybrid"  # offered first; the system assigns after the branch's N seconds unanswered


class BranchDispatch(Base):
    """A branch's dispatch mode; a branch without a row grabs."""

    __tablename__ = "branch_dispatch"

    region_id: Mapped[int] = mapped_column(ForeignKey("region.id", ondelete="CASCADE"), primary_key=True)
    mode: Mapped[DispatchMode] = mapped_column(str_enum(DispatchMode, 10))
    # Hybrid mode's wait before the system assigns; NULL: OFFER__HYBRID_AFTER_S.
    hybrid_after_s: Mapped[int | None] = mapped_column(Integer)
    changed_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DeclineReason(StrEnum):
    TOO_FAR = "too_far"
    BUSY = "busy"
    NO_SKILL = "no_skill"
    OFF_SHIFT = "off_shift"
    OTHER = "other"


class TicketDecline(Base):
    """A technician declined a system assignment (拒单): the ticket is never assigned to them again."""

    __tablename__ = "ticket_decline"
    __table_args__ = (Index("ix_ticket_decline_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    technician_id: Mapped[int] = mapped_column(ForeignKey("technician.id"), index=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("region.id"))
    reason_code: Mapped[DeclineReason] = mapped_column(str_enum(DeclineReason, 16))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
