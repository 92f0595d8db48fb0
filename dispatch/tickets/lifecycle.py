"""The ticket state machine: which action leads where, applied as a compare-and-set."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from dispatch.kernel.auth import Actor
from dispatch.kernel.queues import queue
from dispatch.tickets import feed, notify, outbox
from dispatch.tickets.errors import AlreadyTaken, ConcurrentChange, InvalidTransition
from dispatch.tickets.models import Ticket, TicketEvent, TicketState
from geo.latlng import LatLng
from geo.points import to_wkb

S = TicketState


class Action(StrEnum):
    CREATE = "create"
    MERGE = "merge"
    GRAB = "grab"
    ASSIGN = "assign"
    SYSTEM_ASSIGN = "system_assign"  # by the branch's dispatch mode, no dispatcher involved
    DECLINE = "decline"  # 拒单: the technician turned a system assignment down
    REASSIGN = "reassign"
    RELEASE = "release"
    ARRIVE = "arrive"
    COMPLETE = "complete"
    FOLLOWUP = "followup"
    INVALIDATE = "invalidate"
    RETYPE = "retype"
    PRIORITIZE = "prioritize"
    GROUP = "group"  # into an outage incident
    RESOLVE = "resolve"  # completed with its incident: told as a completion
    URGE = "urge"  # 催办: someone is waiting
    DETACH = "detach"  # out of it again
    TIME_OUT = "time_out"
    # SLA checkpoints: recorded on the ticket, never a change of state.
    SLA_WARNING = "sla_warning"
    SLA_BREACH = "sla_breach"
    ESCALATE = "escalate"
    ACKNOWLEDGE = "acknowledge"


OPEN_STATES = frozenset({S.PENDING, S.TIMED_OUT, S.ACCEPTED, S.AWAITING_FOLLOWUP, S.GROUPED})
GRABBABLE = frozenset({S.PENDING, S.TIMED_OUT})

NEXT_STATE: dict[tuple[TicketState, Action], TicketState] = {
    (S.PENDING, Action.GRAB): S.ACCEPTED,
    (S.TIMED_OUT, Action.GRAB): S.ACCEPTED,
    (S.PENDING, Action.ASSIGN): S.ACCEPTED,
    (S.TIMED_OUT, Action.ASSIGN): S.ACCEPTED,
    (S.PENDING, Action.SYSTEM_ASSIGN): S.ACCEPTED,
    (S.TIMED_OUT, Action.SYSTEM_ASSIGN): S.ACCEPTED,
    (S.ACCEPTED, Action.DECLINE): S.PENDING,
    (S.ACCEPTED, Action.REASSIGN): S.ACCEPTED,
    (S.ACCEPTED, Action.RELEASE): S.PENDING,
    (S.ACCEPTED, Action.ARRIVE): S.ACCEPTED,
    (S.ACCEPTED, Action.COMPLETE): S.AWAITING_FOLLOWUP,
    (S.AWAITING_FOLLOWUP, Action.FOLLOWUP): S.COMPLETED,
    (S.PENDING, Action.INVALIDATE): S.INVALID,
    (S.TIMED_OUT, Action.INVALIDATE): S.INVALID,
    (S.ACCEPTED, Action.INVALIDATE): S.INVALID,
    (S.PENDING, Action.TIME_OUT): S.TIMED_OUT,
    (S.PENDING, Action.GROUP): S.GROUPED,
    (S.TIMED_OUT, Action.GROUP): S.GROUPED,
    (S.GROUPED, Action.DETACH): S.PENDING,
    (S.GROUPED, Action.RESOLVE): S.AWAITING_FOLLOWUP,
    (S.GROUPED, Action.INVALIDATE): S.INVALID,
    **{(state, Action.RETYPE): state for state in OPEN_STATES},
    **{(state, Action.PRIORITIZE): state for state in OPEN_STATES},
}


# What each action is called on the live feed.
FEED_EVENT = {
    Action.CREATE: "ticket.created", Action.MERGE: "ticket.merged", Action.GRAB: "ticket.accepted",
    Action.ASSIGN: "ticket.accepted", Action.SYSTEM_ASSIGN: "ticket.assigned", Action.DECLINE: "ticket.declined",
    Action.REASSIGN: "ticket.reassigned", Action.RELEASE: "ticket.released",
    Action.ARRIVE: "ticket.arrived", Action.COMPLETE: "ticket.completed", Action.FOLLOWUP: "ticket.closed",
    Action.INVALIDATE: "ticket.invalidated", Action.RETYPE: "ticket.retyped",
    Action.PRIORITIZE: "ticket.prioritized", Action.GROUP: "ticket.grouped", Action.DETACH: "ticket.detached",
    Action.RESOLVE: "ticket.completed", Action.URGE: "ticket.urged",
    Action.TIME_OUT: "ticket.timed_out",
    Action.SLA_WARNING: "ticket.sla_warning", Action.SLA_BREACH: "ticket.sla_breached",
    Action.ESCALATE: "ticket.escalated", Action.ACKNOWLEDGE: "ticket.acknowledged",
}


def announce(session: Session, ticket: Ticket, event_type: str, *, technician_ids: Sequence[int | None] = (),
             **data: Any) -> None:
    """Put an event on the live feed through the outbox: sent only if this transaction commits.

    Each event gets an `event_id` and the time `at` it was decided: a consumer that may see an event twice (the
    outbox delivers at least once; webhooks' receivers) tells a repeat by its id.
    """
    outbox.emit(session, feed.TOPIC, feed_event(ticket, event_type, technician_ids=technician_ids, **data))
    notify.after_commit_drain(session, queue())


def feed_event(ticket: Ticket, event_type: str, *, technician_ids: Sequence[int | None],
               **data: Any) -> dict[str, Any]:
    """What `announce` puts on the live feed."""
    return feed.make_event(event_type, ticket_id=ticket.id, branch_id=ticket.branch_id, region_id=ticket.region_id,
                           technician_ids=[t for t in technician_ids if t is not None], number=ticket.number,
                           state=str(ticket.state), event_id=uuid.uuid4().hex, at=datetime.now(UTC).isoformat(),
                           **data)


@dataclass(frozen=True)
class Step:
    """One applied transition, for callers that react after commit (feeds, pool, records)."""

    ticket_id: int
    action: Action
    from_state: TicketState
    to_state: TicketState
    at: datetime


def target_state(ticket: Ticket, action: Action) -> TicketState:
    """Raises: InvalidTransition."""
    to_state = NEXT_STATE.get((ticket.state, action))
    if to_state is None:
        raise InvalidTransition(f"cannot {action} a {ticket.state} ticket ({ticket.number})",
                                state=ticket.state)
    return to_state


def transition(session: Session, ticket: Ticket, *, action: Action, actor: Actor, note: str | None = None,
               technician_id: int | None = None, location: LatLng | None = None,
               changes: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> Step:
    """Apply one lifecycle action and append its event in the same transaction.

    Raises:
        InvalidTransition: the action is not allowed from the current state.
        AlreadyTaken: a grab or assign lost the race for a grabbable ticket.
        ConcurrentChange: another writer changed the ticket first.
    """
    from_state = ticket.state
    to_state = target_state(ticket, action)
    now = datetime.now(UTC)
    values = {**(changes or {}), "state": to_state, "version": ticket.version + 1, "updated_at": now}
    if to_state not in GRABBABLE:
        # Out of the pool: no further ring nor system assignment, cleared in this UPDATE rather than by another.
        values.setdefault("next_ring_at", None)
        values.setdefault("system_assign_at", None)
    if "technician_id" in values:
        # Only the system's own assignment may be declined: any other change of hands ends that.
        values.setdefault("system_assigned", False)
    # Compare-and-set on version rather than SELECT ... FOR UPDATE: no lock is
    # held while deciding, and the loser of a race matches no row. A Core statement on the
    # session's connection, the new values then set on the object as committed: the ORM's bulk
    # update did the same at twice the cost, on every state change.
    session.flush()
    won = session.connection().execute(
        update(Ticket).where(Ticket.id == ticket.id, Ticket.version == ticket.version).values(**values)
        .returning(Ticket.id)).first()
    if won is None:
        _raise_lost_race(session, ticket, action)
    for key, value in values.items():
        set_committed_value(ticket, key, value)
    append_event(session, ticket, at=now, actor=actor, action=action, from_state=from_state, to_state=to_state,
                 technician_id=technician_id, note=note, location=location, data=data,
                 announced=feed_event(ticket, FEED_EVENT[action], technician_ids=[technician_id, ticket.technician_id],
                                       from_state=str(from_state)))
    return Step(ticket_id=ticket.id, action=action, from_state=from_state, to_state=to_state, at=now)


def _raise_lost_race(session: Session, ticket: Ticket, action: Action) -> None:
    # READ COMMITTED: this fresh statement sees the winner's committed row.
    current = session.execute(select(Ticket.state).where(Ticket.id == ticket.id)).scalar_one()
    if action in {Action.GRAB, Action.ASSIGN, Action.SYSTEM_ASSIGN} and current not in GRABBABLE:
        raise AlreadyTaken(f"ticket {ticket.number} was taken meanwhile", state=current)
    if NEXT_STATE.get((TicketState(current), action)) is None:
        raise InvalidTransition(f"cannot {action} a {current} ticket ({ticket.number})", state=current)
    raise ConcurrentChange(f"ticket {ticket.number} changed meanwhile", state=current)


def record(session: Session, ticket: Ticket, *, action: Action, actor: Actor, note: str | None = None,
           data: dict[str, Any] | None = None, feed_data: dict[str, Any] | None = None) -> None:
    """Append an event that changes no state (intake, a merged duplicate, an SLA checkpoint).

    `feed_data` travels on the live feed with the event (the event row keeps `data`).
    """
    append_event(session, ticket, at=None, actor=actor, action=action,
                 from_state=None if action is Action.CREATE else ticket.state, to_state=ticket.state, note=note,
                 data=data, announced=feed_event(ticket, FEED_EVENT[action], technician_ids=[ticket.technician_id],
                                                  **(feed_data or {})))


# On the connection, not through the session: every state change appends one (nothing reads it back in the same
# transaction through the ORM: `Ticket.events` is never lazy-loaded), and the unit of work cost more than
# the statement. The feed's outbox row goes in the same statement.
_INSERT_EVENT_AND_MESSAGE = insert(TicketEvent).add_cte(outbox.insert_message().cte("message"))


def append_event(session: Session, ticket: Ticket, *, at: datetime | None, actor: Actor, action: Action | str,
                 from_state: TicketState | None, to_state: TicketState, technician_id: int | None = None,
                 note: str | None = None, location: LatLng | None = None, data: dict[str, Any] | None = None,
                 announced: dict[str, Any]) -> None:
    """Append one row to the ticket's history and put `announced` (a `feed_event`) on the live feed, in one
    statement (see `announce`). `at` None: the transaction's time (the column's default)."""
    row: dict[str, Any] = {
        "ticket_id": ticket.id, "actor": actor.label, "actor_role": actor.role, "action": action,
        "from_state": from_state, "to_state": to_state, "technician_id": technician_id, "note": note,
        "location": to_wkb(location) if location else None, "data": data or {}}
    if at is not None:
        row["at"] = at
    session.connection().execute(_INSERT_EVENT_AND_MESSAGE, {**row, **outbox.message(feed.TOPIC, announced)})
    notify.after_commit_drain(session, queue())
