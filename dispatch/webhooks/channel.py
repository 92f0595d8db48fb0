"""The seam from the live feed: every feed event the outbox drains becomes deliveries to the webhooks that
hear it, written in a transaction of their own and sent by a job once it commits."""

from typing import Any

from sqlalchemy import text

from dispatch.kernel.db import session_scope
from dispatch.tickets import feed, notify
from dispatch.webhooks import jobs, service

NAME = "webhooks"


def fan_out(topic: str, event: dict[str, Any]) -> None:
    """Raises: whatever PostgreSQL raised (the outbox retries the event; the fan-out is idempotent)."""
    with session_scope() as session:
        # No wait for the disk here: the drain that called this marks the event sent in a synchronous commit
        # after it, which flushes this one with it. A crash before that leaves the event unsent, and the
        # fan-out runs again. It was a third of the drain's time per event.
        session.execute(text("SET LOCAL synchronous_commit = off"))
        if service.fan_out(session, event):
            jobs.send_after_commit(session)


def register() -> None:
    """Hear the live feed's events (create_app, worker start-up)."""
    notify.register_channel(NAME, fan_out, topics={feed.TOPIC})
