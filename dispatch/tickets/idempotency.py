"""Idempotency-Key: the same key and body within 24 h answers as the first request, never a second write.

A phone that lost its signal sends a queued tap again until it hears an answer:
the key makes the second arrival (or complete, release, upload) a replay.
"""

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dispatch.kernel.auth import Actor
from dispatch.tickets.errors import IdempotencyKeyReused
from dispatch.tickets.models import IdempotencyKey

WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Request:
    """A write as its key and a digest of what it asks: the verb, the ticket and the body."""

    key: str
    digest: str

    @classmethod
    def of(cls, key: str | None, *parts: str | bytes) -> "Request | None":
        if key is None:
            return None
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part.encode() if isinstance(part, str) else part)
            digest.update(b"\x00")  # "ab","c" and "a","bc" are different requests
        return cls(key=key, digest=digest.hexdigest())


def claim(session: Session, actor: Actor, request: Request, *, ticket_id: int | None = None) -> IdempotencyKey | None:
    """The key's row, claimed for this request; None when an earlier request within the window owns the key.

    A concurrent request with the same key blocks on the unique index until
    the first commits, then sees its row: never a second write.
    """
    stmt = insert(IdempotencyKey).values(principal=actor.principal, key=request.key, request_hash=request.digest,
                                         ticket_id=ticket_id)
    upsert = stmt.on_conflict_do_update(
        index_elements=[IdempotencyKey.principal, IdempotencyKey.key],
        set_={"request_hash": request.digest, "ticket_id": ticket_id, "merged": False, "attachment_id": None,
              "created_at": func.now()},
        where=IdempotencyKey.created_at < func.now() - WINDOW,
    ).returning(IdempotencyKey.id)
    claimed = session.execute(upsert).scalar()
    return session.get(IdempotencyKey, claimed) if claimed is not None else None


def earlier(session: Session, actor: Actor, request: Request) -> IdempotencyKey:
    """The first request's row, to answer as it did.

    Raises: IdempotencyKeyReused (the key came before with another verb, ticket or body).
    """
    row = session.scalars(select(IdempotencyKey).where(
        IdempotencyKey.principal == actor.principal, IdempotencyKey.key == request.key)).one()
    if row.request_hash != request.digest:
        raise IdempotencyKeyReused("Idempotency-Key", "this key was sent before with a different body")
    return row


def is_replay(session: Session, actor: Actor, request: Request | None, *, ticket_id: int) -> bool:
    """True when this lifecycle write was done already under the same key and body: skip it.

    Raises: IdempotencyKeyReused.
    """
    if request is None or claim(session, actor, request, ticket_id=ticket_id) is not None:
        return False
    earlier(session, actor, request)
    return True
