from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, computed_field

from dispatch.kernel.inputs import JsonId, Text
from dispatch.webhooks.models import DeliveryState


class EventType(StrEnum):
    """The live feed's event types, as a webhook subscribes to them."""

    TICKET_CREATED = "ticket.created"
    TICKET_MERGED = "ticket.merged"
    TICKET_OFFERED = "ticket.offered"
    TICKET_ACCEPTED = "ticket.accepted"
    TICKET_REASSIGNED = "ticket.reassigned"
    TICKET_RELEASED = "ticket.released"
    TICKET_ARRIVED = "ticket.arrived"
    TICKET_COMPLETED = "ticket.completed"
    TICKET_CLOSED = "ticket.closed"
    TICKET_INVALIDATED = "ticket.invalidated"
    TICKET_RETYPED = "ticket.retyped"
    TICKET_PRIORITIZED = "ticket.prioritized"
    TICKET_GROUPED = "ticket.grouped"
    TICKET_DETACHED = "ticket.detached"
    TICKET_TIMED_OUT = "ticket.timed_out"
    TICKET_SLA_WARNING = "ticket.sla_warning"
    TICKET_SLA_BREACHED = "ticket.sla_breached"
    TICKET_ESCALATED = "ticket.escalated"
    TICKET_ACKNOWLEDGED = "ticket.acknowledged"
    TICKET_URGED = "ticket.urged"
    TICKET_ASSIGNED = "ticket.assigned"  # by the system (a branch's assign or hybrid mode)
    TICKET_DECLINED = "ticket.declined"
    INCIDENT_OPENED = "incident.opened"
    INCIDENT_GREW = "incident.grew"
    INCIDENT_RESOLVED = "incident.resolved"


class WebhookCreate(BaseModel):
    url: Text = Field(min_length=1, max_length=2000, examples=["https://crm.example.com/fieldpool/events"],
                      description="http or https; refused when its host resolves to a non-public address "
                                  "unless WEBHOOKS__ALLOW_PRIVATE_URLS is on.")
    event_types: list[EventType] = Field(min_length=1, max_length=len(EventType))
    region_ids: list[JsonId] = Field(min_length=1, max_length=100,
                                     description="Events of tickets inside these regions only.")
    secret: Text | None = Field(default=None, min_length=16, max_length=200,
                                description="Signs each delivery; generated (whsec_...) when not given.")
    description: Text | None = Field(default=None, max_length=200)


class WebhookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    description: str | None
    event_types: list[str]
    region_ids: list[int]
    created_at: datetime
    consecutive_failures: int
    failing_since: datetime | None
    retry_at: datetime | None = Field(description="No delivery before this, after a failure.")
    disabled_at: datetime | None
    disabled_reason: str | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


class WebhookIssued(WebhookRead):
    secret: str = Field(description="Signs every delivery (X-Fieldpool-Signature); shown this once.")


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    webhook_id: int
    event_id: str
    event_type: str
    ticket_id: int
    state: DeliveryState
    attempts: int
    created_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None = Field(description="The receiver's HTTP status at the last attempt.")
    last_error: str | None
    delivered_at: datetime | None
    redelivery_of: int | None
