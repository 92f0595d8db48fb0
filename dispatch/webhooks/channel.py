"""The seam from the live feed: every feed event the outbox drains becomes deliveries to the webhooks that
hear it, written in the drain's own transaction and sent by a job once it commits."""

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from dispatch.tickets import feed, notify
from dispatch.webhooks import jobs, service

NAME = "webhooks"


def fan_out(session: Session, topic: str, event: dict[str, Any]) -> None:
    """Raises: whatever PostgreSQL raised (the outbox retries the event; the fan-out is idempotent)."""
    if service.fan_out(session, event):
        jobs.send_after_commit(session)


def hearing(session: Session) -> Callable[[dict[str, Any]], bool]:
    """The events some enabled webhook takes, as the drain begins: one made meanwhile hears what follows."""
    kinds = service.event_types_heard(session)
    return lambda event: event.get("type") in kinds


def register() -> None:
    """Hear the live feed's events (create_app, worker start-up)."""
    notify.register_writer(NAME, fan_out, topics={feed.TOPIC}, interest=hearing)
