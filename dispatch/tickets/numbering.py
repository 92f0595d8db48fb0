"""Ticket numbers (`XL-20261205-0042`): unique, increasing within a branch and local day.

Handed out by a Redis counter in the request's own round trip, so that a
burst of reports neither queues on one counter row's lock until commit nor
takes a second database connection per intake (every thread holding one and
waiting for another ran the pool dry). PostgreSQL stays the truth: the
counter is seeded from the highest number a day already has, and when
Redis cannot be reached the branch's intake is numbered under a
transaction-scoped advisory lock instead: slower, still unique.
"""

from datetime import date

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from dispatch.kernel.lua import ScriptBook
from dispatch.tickets.models import Ticket

# A day's counter outlives the day by a margin: a report at 23:59:59 still finds it.
COUNTER_TTL_S = 2 * 24 * 3600
_scripts = ScriptBook("dispatch.tickets")


def prefix(branch_code: str, day: date) -> str:
    return f"{branch_code}-{day:%Y%m%d}-"


def number(prefix_: str, seq: int) -> str:
    return f"{prefix_}{seq:04d}"


def _counter_key(branch_id: int, day: date) -> str:
    return f"fp:{{b{branch_id}}}:ticket-number:{day:%Y%m%d}"


def highest(session: Session, prefix_: str) -> int:
    """The highest sequence number PostgreSQL holds under `prefix_` (0 for none); committed rows only."""
    # `number LIKE 'XL-20261205-%'` runs on ix_ticket_number_prefix (text_pattern_ops).
    seq = cast(func.split_part(Ticket.number, "-", 3), Integer)
    return session.scalar(select(func.max(seq)).where(Ticket.number.like(f"{prefix_}%"))) or 0


def next_seq(session: Session, redis: Redis, *, branch_id: int, prefix_: str, day: date,
             resync: bool = False) -> int:
    """The next sequence number of the branch's day.

    `resync` reads PostgreSQL's highest again first: after a number turned out
    taken (a counter reseeded while older intakes were still uncommitted).
    """
    key = _counter_key(branch_id, day)
    try:
        seq = None if resync else _scripts.run(redis, "number", [key], [COUNTER_TTL_S, ""])
        if seq is None:
            seq = _scripts.run(redis, "number", [key], [COUNTER_TTL_S, highest(session, prefix_)])
        return int(seq)
    except RedisError:
        # Held to commit: the branch's intake is serialised while Redis is away, as it must be.
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(prefix_))))
        return highest(session, prefix_) + 1
