"""The ticket lifecycle over HTTP: every allowed step, every refused one, who may take which step."""

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.tickets.lifecycle import NEXT_STATE, Action
from dispatch.tickets.models import Ticket, TicketEvent, TicketState
from technicians.models import Technician
from tests.conftest import on_duty

S = TicketState
XL_POINT = {"lat": 43.935, "lng": 116.08}
EH_POINT = {"lat": 43.6577, "lng": 111.9584}
DISPATCHER = "dispatcher.xl"
CLERK = "clerk.xl"
HOLDER = "tech04"  # XL, max_active 6: holds every accepted ticket these tests build
OTHER = "tech05"  # XL, max_active 5: a second technician of the same branch
_phones = itertools.count(1)

Headers = Callable[[str], dict[str, str]]


class Desk:
    """Drives tickets through the API the way the console and the phones do."""

    def __init__(self, client: TestClient, as_user: Headers, db: Session) -> None:
        self.client, self.as_user, self.db = client, as_user, db
        self.on_duty: set[str] = set()

    def post(self, ticket_id: int, verb: str, username: str, body: dict[str, Any] | None = None) -> Any:
        if verb == "grab" and username.startswith("tech") and username not in self.on_duty:
            on_duty(self.client, self.as_user(username))  # a phone that grabs is on duty and located
            self.on_duty.add(username)
        return self.client.post(f"/api/v1/tickets/{ticket_id}/{verb}", json=body, headers=self.as_user(username))

    def ok(self, ticket_id: int, verb: str, username: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = self.post(ticket_id, verb, username, body)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def report(self, *, type_code: str = "broadband_fault", point: dict[str, float] = XL_POINT,
               reporter: str = DISPATCHER) -> dict[str, Any]:
        body = {"type_code": type_code, "description": "断网了", "location": point,
                "contact": {"name": "张三", "phone": f"1390000{next(_phones):04d}"}}
        reply = self.client.post("/api/v1/tickets", json=body, headers=self.as_user(reporter))
        assert reply.status_code == 201, reply.text
        return reply.json()

    def read(self, ticket_id: int) -> dict[str, Any]:
        reply = self.client.get(f"/api/v1/tickets/{ticket_id}", headers=self.as_user(DISPATCHER))
        assert reply.status_code == 200, reply.text
        return reply.json()

    def time_out(self, ticket_id: int) -> None:
        # The SLA sweep is not built yet: put the ticket where the sweep would.
        self.db.execute(update(Ticket).where(Ticket.id == ticket_id).values(state=TicketState.TIMED_OUT))

    def in_state(self, state: TicketState) -> int:
        """A ticket in `state`; pending and timed-out ones were handed back by HOLDER, the others are HOLDER's."""
        ticket_id = self.report()["id"]
        if state is S.GROUPED:  # with another report, under an incident a dispatcher opened
            grouped = self.client.post("/api/v1/incidents", json={"ticket_ids": [ticket_id, self.report()["id"]]},
                                       headers=self.as_user(DISPATCHER))
            assert grouped.status_code == 201, grouped.text
            return ticket_id
        if state is S.PENDING or state is S.TIMED_OUT:
            self.ok(ticket_id, "grab", HOLDER)
            self.ok(ticket_id, "release", HOLDER, {"reason": "车坏了"})
            if state is S.TIMED_OUT:
                self.time_out(ticket_id)
            return ticket_id
        self.ok(ticket_id, "grab", HOLDER)
        if state is S.INVALID:
            self.ok(ticket_id, "invalidate", DISPATCHER, {"reason": "虚假报修"})
        if state in {S.AWAITING_FOLLOWUP, S.COMPLETED}:
            self.ok(ticket_id, "complete", HOLDER, {"note": "换了光猫"})
        if state is S.COMPLETED:
            self.ok(ticket_id, "followup", CLERK, {"satisfaction": 5})
        assert self.read(ticket_id)["state"] == state
        return ticket_id

    def technician_id(self, username: str) -> int:
        return self.db.scalars(select(Technician.id).join(User, User.id == Technician.user_id)
                               .where(User.username == username)).one()


@pytest.fixture
def desk(client: TestClient, as_user: Headers, db: Session) -> Desk:
    return Desk(client, as_user, db)


def snapshot(ticket: dict[str, Any]) -> tuple[str, int, int]:
    return ticket["state"], ticket["version"], len(ticket["events"])


# --- every HTTP verb, as (who takes it, the body it sends) -------------------------------------

def _call(desk: Desk, ticket_id: int, verb: str) -> Any:
    """Take `verb` on the ticket as the person who would normally take it."""
    if verb == "grab":
        return desk.post(ticket_id, "grab", OTHER)
    if verb == "assign":
        return desk.post(ticket_id, "assign", DISPATCHER, {"technician_id": desk.technician_id(OTHER)})
    if verb == "release":
        return desk.post(ticket_id, "release", DISPATCHER, {"reason": "用户改约"})
    if verb == "arrive":
        return desk.post(ticket_id, "arrive", HOLDER, {"location": XL_POINT})
    if verb == "complete":
        return desk.post(ticket_id, "complete", HOLDER, {"note": "修好了"})
    if verb == "followup":
        return desk.post(ticket_id, "followup", CLERK, {"satisfaction": 4})
    if verb == "invalidate":
        return desk.post(ticket_id, "invalidate", DISPATCHER, {"reason": "重复报修"})
    assert verb == "retype"
    return desk.client.patch(f"/api/v1/tickets/{ticket_id}", json={"type_code": "slow_network"},
                             headers=desk.as_user(DISPATCHER))


HTTP_VERBS: dict[str, set[Action]] = {
    "grab": {Action.GRAB},
    "assign": {Action.ASSIGN, Action.REASSIGN},
    "release": {Action.RELEASE},
    "arrive": {Action.ARRIVE},
    "complete": {Action.COMPLETE},
    "followup": {Action.FOLLOWUP},
    "invalidate": {Action.INVALIDATE},
    "retype": {Action.RETYPE},
}
FORBIDDEN = [(state, verb) for state in TicketState for verb, actions in HTTP_VERBS.items()
             if not any((state, action) in NEXT_STATE for action in actions)]
TAKEN = {S.ACCEPTED, S.AWAITING_FOLLOWUP, S.COMPLETED}
TECHNICIAN_VERBS = {"arrive", "complete"}  # a grab is judged by the pool, which says why not


def test_the_forbidden_matrix_covers_every_verb_and_state() -> None:
    # 7 states x 8 verbs, of which 18 are allowed: a change to NEXT_STATE shows up here.
    assert len(FORBIDDEN) == 38


@pytest.mark.parametrize(("state", "verb"), FORBIDDEN, ids=[f"{s}-{v}" for s, v in FORBIDDEN])
def test_forbidden_transition_is_409_with_current_state_and_changes_nothing(
        desk: Desk, state: TicketState, verb: str) -> None:
    ticket_id = desk.in_state(state)
    before = desk.read(ticket_id)

    reply = _call(desk, ticket_id, verb)

    assert reply.headers["content-type"].startswith("application/problem+json")
    problem = reply.json()
    if state is S.GROUPED and verb in TECHNICIAN_VERBS:
        # Neither in the pool nor anyone's: a technician does not see it (PRODUCT.md), so it is not there.
        assert (reply.status_code, problem["code"]) == (404, "ticket_not_found"), reply.text
    else:
        assert reply.status_code == 409, reply.text
        expected_code = "already_taken" if verb == "grab" and state in TAKEN else "invalid_transition"
        assert problem["code"] == expected_code
        assert problem["state"] == state
    assert snapshot(desk.read(ticket_id)) == snapshot(before)


def test_arriving_twice_is_an_invalid_transition(desk: Desk) -> None:
    ticket_id = desk.in_state(S.ACCEPTED)
    desk.ok(ticket_id, "arrive", HOLDER, {"location": XL_POINT})
    before = desk.read(ticket_id)

    reply = desk.post(ticket_id, "arrive", HOLDER, {"location": XL_POINT})

    assert reply.status_code == 409
    assert reply.json()["code"] == "invalid_transition"
    assert reply.json()["state"] == "accepted"
    after = desk.read(ticket_id)
    assert snapshot(after) == snapshot(before)
    assert after["arrived_at"] == before["arrived_at"]


# --- every allowed transition: one event with actor, from and to ------------------------------

ALLOWED = [
    # (start, verb, who, end, event action)
    (S.PENDING, "grab", OTHER, S.ACCEPTED, "grab"),
    (S.TIMED_OUT, "grab", OTHER, S.ACCEPTED, "grab"),
    (S.PENDING, "assign", DISPATCHER, S.ACCEPTED, "assign"),
    (S.TIMED_OUT, "assign", DISPATCHER, S.ACCEPTED, "assign"),
    (S.ACCEPTED, "assign", DISPATCHER, S.ACCEPTED, "reassign"),
    (S.ACCEPTED, "release", HOLDER, S.PENDING, "release"),
    (S.ACCEPTED, "release", DISPATCHER, S.PENDING, "release"),
    (S.ACCEPTED, "arrive", HOLDER, S.ACCEPTED, "arrive"),
    (S.ACCEPTED, "complete", HOLDER, S.AWAITING_FOLLOWUP, "complete"),
    (S.AWAITING_FOLLOWUP, "followup", CLERK, S.COMPLETED, "followup"),
    (S.PENDING, "invalidate", DISPATCHER, S.INVALID, "invalidate"),
    (S.TIMED_OUT, "invalidate", DISPATCHER, S.INVALID, "invalidate"),
    (S.ACCEPTED, "invalidate", DISPATCHER, S.INVALID, "invalidate"),
    (S.PENDING, "retype", DISPATCHER, S.PENDING, "retype"),
    (S.TIMED_OUT, "retype", DISPATCHER, S.TIMED_OUT, "retype"),
    (S.ACCEPTED, "retype", DISPATCHER, S.ACCEPTED, "retype"),
    (S.AWAITING_FOLLOWUP, "retype", DISPATCHER, S.AWAITING_FOLLOWUP, "retype"),
    (S.GROUPED, "invalidate", DISPATCHER, S.INVALID, "invalidate"),
    (S.GROUPED, "retype", DISPATCHER, S.GROUPED, "retype"),
]


def test_every_allowed_pair_of_the_state_machine_is_exercised() -> None:
    exercised = {(start, verb) for start, verb, *_ in ALLOWED}
    allowed = {(state, verb) for state in TicketState for verb in HTTP_VERBS} - set(FORBIDDEN)
    assert exercised == allowed


@pytest.mark.parametrize(("start", "verb", "who", "end", "action"), ALLOWED,
                         ids=[f"{s}-{v}-by-{w}" for s, v, w, *_ in ALLOWED])
def test_allowed_transition_writes_exactly_one_event_with_actor_and_states(
        desk: Desk, start: TicketState, verb: str, who: str, end: TicketState, action: str) -> None:
    ticket_id = desk.in_state(start)
    before = desk.read(ticket_id)

    if verb == "release" and who == HOLDER:
        reply = desk.post(ticket_id, "release", HOLDER, {"reason": "车坏了"})
    else:
        reply = _call(desk, ticket_id, verb)

    assert reply.status_code == 200, reply.text
    assert reply.json()["state"] == end
    after = desk.read(ticket_id)
    assert after["state"] == end
    assert after["version"] == before["version"] + 1
    new_events = after["events"][len(before["events"]):]
    assert [(e["actor"], e["action"], e["from_state"], e["to_state"]) for e in new_events] == [
        (who, action, start, end)]


# --- what each allowed step leaves behind -----------------------------------------------------

def test_grab_gives_a_pending_ticket_to_the_grabbing_technician(desk: Desk) -> None:
    ticket_id = desk.report()["id"]

    ticket = desk.ok(ticket_id, "grab", OTHER)

    assert ticket["state"] == "accepted"
    assert ticket["technician_id"] == desk.technician_id(OTHER)
    assert ticket["accepted_at"] is not None


def test_timed_out_ticket_is_still_grabbable(desk: Desk) -> None:
    ticket_id = desk.report()["id"]
    desk.time_out(ticket_id)

    ticket = desk.ok(ticket_id, "grab", OTHER)

    assert ticket["state"] == "accepted"
    assert ticket["technician_id"] == desk.technician_id(OTHER)


def test_dispatcher_force_assigns_a_timed_out_ticket(desk: Desk) -> None:
    ticket_id = desk.report()["id"]
    desk.time_out(ticket_id)

    ticket = desk.ok(ticket_id, "assign", DISPATCHER, {"technician_id": desk.technician_id(OTHER)})

    assert ticket["state"] == "accepted"
    assert ticket["technician_id"] == desk.technician_id(OTHER)


def test_reassign_moves_an_accepted_ticket_to_another_technician(desk: Desk) -> None:
    ticket_id = desk.in_state(S.ACCEPTED)
    other = desk.technician_id(OTHER)

    ticket = desk.ok(ticket_id, "assign", DISPATCHER, {"technician_id": other, "note": "离得近"})

    assert ticket["state"] == "accepted"
    assert ticket["technician_id"] == other
    last = desk.read(ticket_id)["events"][-1]
    assert (last["action"], last["technician_id"], last["note"]) == ("reassign", other, "离得近")
    # The former holder lost it: another technician's work in progress does not exist for them.
    assert desk.post(ticket_id, "arrive", HOLDER, {"location": XL_POINT}).json()["code"] == "ticket_not_found"


def test_release_puts_the_ticket_back_in_the_pool_without_a_technician(desk: Desk) -> None:
    ticket_id = desk.in_state(S.ACCEPTED)

    ticket = desk.ok(ticket_id, "release", HOLDER, {"reason": "车坏了"})

    assert ticket["state"] == "pending"
    assert ticket["technician_id"] is None
    assert ticket["accepted_at"] is None
    assert desk.read(ticket_id)["events"][-1]["note"] == "车坏了"
    regrabbed = desk.ok(ticket_id, "grab", OTHER)
    assert regrabbed["technician_id"] == desk.technician_id(OTHER)


def test_arrive_records_the_check_in_time_and_place(desk: Desk) -> None:
    ticket_id = desk.in_state(S.ACCEPTED)
    here = {"lat": 43.9361, "lng": 116.0812}

    ticket = desk.ok(ticket_id, "arrive", HOLDER, {"location": here})

    assert ticket["state"] == "accepted"
    assert ticket["arrived_at"] is not None
    event = desk.read(ticket_id)["events"][-1]
    assert event["action"] == "arrive"
    assert event["location"]["lat"] == pytest.approx(here["lat"], abs=1e-9)
    assert event["location"]["lng"] == pytest.approx(here["lng"], abs=1e-9)


def test_complete_waits_for_followup_and_keeps_the_note(desk: Desk) -> None:
    ticket_id = desk.in_state(S.ACCEPTED)

    ticket = desk.ok(ticket_id, "complete", HOLDER, {"note": "换了光猫", "materials": [{"sku": "ONU-1", "qty": 1}]})

    assert ticket["state"] == "awaiting_followup"
    assert ticket["completion_note"] == "换了光猫"
    assert ticket["completed_at"] is not None
    assert [m["sku"] for m in ticket["materials"]] == ["ONU-1"]


def test_followup_closes_the_ticket_with_the_rating(desk: Desk) -> None:
    ticket_id = desk.in_state(S.AWAITING_FOLLOWUP)

    ticket = desk.ok(ticket_id, "followup", CLERK, {"satisfaction": 4, "comment": "师傅很准时"})

    assert ticket["state"] == "completed"
    assert ticket["satisfaction"] == 4
    assert ticket["closed_at"] is not None
    assert desk.read(ticket_id)["satisfaction"] == 4


@pytest.mark.parametrize("start", [S.PENDING, S.TIMED_OUT, S.ACCEPTED])
def test_invalidate_marks_the_ticket_invalid_with_the_reason(desk: Desk, start: TicketState) -> None:
    ticket_id = desk.in_state(start)

    ticket = desk.ok(ticket_id, "invalidate", DISPATCHER, {"reason": "虚假报修"})

    assert ticket["state"] == "invalid"
    assert ticket["invalid_reason"] == "虚假报修"
    assert desk.read(ticket_id)["events"][-1]["note"] == "虚假报修"


def test_type_change_is_audited_and_the_due_times_follow_the_new_type(desk: Desk) -> None:
    created = desk.report(type_code="broadband_fault")  # response 30 min, resolution 240 min
    ticket_id = created["id"]

    reply = desk.client.patch(f"/api/v1/tickets/{ticket_id}", json={"type_code": "slow_network"},
                              headers=desk.as_user(DISPATCHER))

    assert reply.status_code == 200, reply.text
    ticket = reply.json()
    assert ticket["type_code"] == "slow_network"
    opened = datetime.fromisoformat(created["created_at"])
    assert datetime.fromisoformat(ticket["response_due_at"]) == opened + timedelta(minutes=60)
    assert datetime.fromisoformat(ticket["resolution_due_at"]) == opened + timedelta(minutes=1440)
    last = desk.read(ticket_id)["events"][-1]
    assert (last["action"], last["actor"], last["from_state"], last["to_state"]) == (
        "retype", DISPATCHER, "pending", "pending")
    assert "broadband_fault" in last["note"] and "slow_network" in last["note"]


# --- who may take which step -----------------------------------------------------------------

@pytest.mark.parametrize(("verb", "body"), [
    ("arrive", {"location": XL_POINT}),
    ("complete", {"note": "修好了"}),
    ("release", {"reason": "不想去"}),
])
def test_technician_other_than_the_holder_is_told_the_ticket_does_not_exist(desk: Desk, verb: str,
                                                                           body: dict) -> None:
    ticket_id = desk.in_state(S.ACCEPTED)
    before = desk.read(ticket_id)

    reply = desk.post(ticket_id, verb, OTHER, body)

    assert reply.status_code == 404
    assert reply.json()["code"] == "ticket_not_found"
    assert snapshot(desk.read(ticket_id)) == snapshot(before)


def test_clerk_cannot_assign(desk: Desk) -> None:
    ticket_id = desk.report()["id"]

    reply = desk.post(ticket_id, "assign", CLERK, {"technician_id": desk.technician_id(OTHER)})

    assert reply.status_code == 403
    assert reply.json()["code"] == "forbidden"
    assert desk.read(ticket_id)["state"] == "pending"


def test_dispatcher_cannot_grab(desk: Desk) -> None:
    ticket_id = desk.report()["id"]

    reply = desk.post(ticket_id, "grab", DISPATCHER)

    assert reply.status_code == 403
    assert reply.json()["code"] == "not_a_technician"
    assert desk.read(ticket_id)["state"] == "pending"


def test_erenhot_technician_grabbing_a_xilinhot_ticket_is_out_of_scope(desk: Desk) -> None:
    ticket_id = desk.report()["id"]

    reply = desk.post(ticket_id, "grab", "tech33")

    assert reply.status_code == 403
    assert reply.json()["code"] == "out_of_scope"
    assert desk.read(ticket_id)["state"] == "pending"


def test_erenhot_technician_may_grab_an_erenhot_ticket(desk: Desk) -> None:
    ticket_id = desk.report(point=EH_POINT, reporter="dispatcher.eh")["id"]

    assert desk.ok(ticket_id, "grab", "tech33")["state"] == "accepted"


def test_technician_at_max_active_gets_limit_reached(desk: Desk) -> None:
    limit = desk.db.scalars(select(Technician.max_active).where(Technician.id == desk.technician_id("tech01"))).one()
    for _ in range(limit):
        desk.ok(desk.report()["id"], "grab", "tech01")
    one_more = desk.report()["id"]

    reply = desk.post(one_more, "grab", "tech01")

    assert reply.status_code == 409
    assert reply.json()["code"] == "limit_reached"
    assert desk.read(one_more)["state"] == "pending"


def test_assigning_a_technician_of_another_branch_is_422_naming_technician_id(desk: Desk) -> None:
    ticket_id = desk.report()["id"]

    reply = desk.post(ticket_id, "assign", DISPATCHER, {"technician_id": desk.technician_id("tech33")})

    assert reply.status_code == 422
    assert [e["field"] for e in reply.json()["errors"]] == ["technician_id"]
    assert desk.read(ticket_id)["state"] == "pending"


# --- the event table is append-only ----------------------------------------------------------

@pytest.mark.parametrize("statement", [
    lambda ticket_id: update(TicketEvent).where(TicketEvent.ticket_id == ticket_id).values(note="改写历史"),
    lambda ticket_id: delete(TicketEvent).where(TicketEvent.ticket_id == ticket_id),
], ids=["update", "delete"])
def test_ticket_events_cannot_be_rewritten_or_deleted(desk: Desk, db: Session, statement: Callable) -> None:
    ticket_id = desk.in_state(S.ACCEPTED)
    before = desk.read(ticket_id)["events"]

    # Refused to the app's role by its grants; the table's trigger ("append-only") holds for the owner too.
    with pytest.raises(DBAPIError, match="permission denied for table ticket_event"), db.begin_nested():
        db.execute(statement(ticket_id).execution_options(synchronize_session=False))

    assert desk.read(ticket_id)["events"] == before
