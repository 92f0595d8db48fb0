"""The ticket lifecycle as a state machine: Hypothesis drives the HTTP API of a live server against a model
of PRODUCT.md's states, permissions and visibility.

Every step the model allows must succeed and land where the model says; every
step it forbids must answer the model's problem JSON (403, 404, 409, 422) and
change nothing: state, holder, version and the ticket's transitions are read
back after each step. Some steps race two real clients against each other
(two grabs, a grab against a force-assign, a completion against a reassign):
exactly one of them may win, and the ticket must show that winner's effect.
"""

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, precondition, rule, run_state_machine_as_test
from redis import Redis
from sqlalchemy import text
from sqlalchemy.engine import Engine

from dispatch.accounts.service import token_for
from dispatch.kernel.settings import Settings
from dispatch.tickets import jobs
from tests.concurrency.test_races import race
from tests.conftest import log_in

XL_POINT = {"lat": 43.935, "lng": 116.08}
DISPATCHER, ADMIN, CLERK, PAYROLL = "dispatcher.xl", "admin", "clerk.xl", "payroll"
# Xilinhot technicians (max_active 3, 4, 5) and one of Erenhot, outside Xilinhot's pool.
TECHS = ("tech01", "tech02", "tech03")
OUTSIDER = "tech33"
HOLDER = "the holder"
MAX_ACTIVE = {"tech01": 3, "tech02": 4, "tech03": 5}
TYPES = ("broadband_fault", "tv_no_signal", "slow_network")
MAX_TICKETS = 5  # per run of the machine: enough for tech01 to reach its limit
PHONES = itertools.count()  # a subscriber per report: none merges into another

GRABBABLE = {"pending", "timed_out"}
OPEN = GRABBABLE | {"accepted", "awaiting_followup"}
# The events that record a transition; SLA checkpoints and escalation steps come on their own.
TRANSITIONS = {"create", "grab", "assign", "reassign", "release", "arrive", "complete", "followup", "invalidate",
               "retype", "time_out"}

Expect = tuple[int, str | None]
OK: Expect = (200, None)


@dataclass(frozen=True)
class Ticket:
    """What the model says about one ticket."""

    id: int
    subscriber_id: int
    state: str = "pending"
    holder: str | None = None
    arrived: bool = False
    type_code: str = TYPES[0]
    overdue: bool = False  # its response SLA passed: the next sweep times it out while it is pending
    version: int = 1
    steps: tuple[str, ...] = ("create",)

    def step(self, action: str, **changes: Any) -> "Ticket":
        return replace(self, version=self.version + 1, steps=(*self.steps, action), **changes)

    def visible_to_technician(self, username: str) -> bool:
        """PRODUCT.md: their own tickets, and the pool of their grab scope (Xilinhot's technicians here)."""
        return self.holder == username or (self.state in GRABBABLE and username in TECHS)


@dataclass
class World:
    api: httpx.Client
    engine: Engine
    base_url: str
    secret: str
    technician_ids: dict[str, int] = field(default_factory=dict)

    def headers(self, who: str | Ticket) -> dict[str, str]:
        if isinstance(who, Ticket):  # the ticket's subscriber, as WeChat's OAuth signs them in
            token = token_for(f"subscriber:{who.subscriber_id}", secret=self.secret, ttl_min=30)
            return {"Authorization": f"Bearer {token}"}
        return log_in(self.api, who)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()


class LifecycleMachine(RuleBasedStateMachine):
    world: ClassVar[World]
    tickets = Bundle("tickets")

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[int, Ticket] = {}

    # --- helpers ----------------------------------------------------------------------------

    def post(self, ticket: Ticket, verb: str, who: str | Ticket, body: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        return self.world.api.post(f"/api/v1/tickets/{ticket.id}/{verb}", json=body,
                                   headers={**self.world.headers(who), **(headers or {})})

    def active(self, username: str) -> int:
        return sum(1 for t in self.model.values() if t.holder == username and t.state == "accepted")

    def tid(self, username: str) -> int:
        return self.world.technician_ids[username]

    def check(self, reply: httpx.Response, expected: Expect, before: Ticket, after: Ticket) -> None:
        """The reply is what the model expects, and the ticket is now where the model says."""
        status, code = expected
        assert reply.status_code == status, (reply.status_code, reply.text, before)
        if code is not None:
            assert reply.headers["content-type"].startswith("application/problem+json"), reply.text
            assert reply.json()["code"] == code, (reply.text, before)
        self.model[after.id] = after
        self.agrees(after)

    def agrees(self, ticket: Ticket) -> None:
        seen = self.world.api.get(f"/api/v1/tickets/{ticket.id}", headers=self.world.headers(DISPATCHER)).json()
        holder = self.world.technician_ids.get(ticket.holder) if ticket.holder else None
        steps = tuple(e["action"] for e in seen["events"] if e["action"] in TRANSITIONS)
        assert (seen["state"], seen["technician_id"], seen["arrived_at"] is not None, seen["type_code"],
                seen["version"], steps) == (ticket.state, holder, ticket.arrived, ticket.type_code, ticket.version,
                                            ticket.steps), seen

    @staticmethod
    def resolve(ticket: Ticket, by: str) -> str:
        """HOLDER stands for whoever holds the ticket (tech01 when nobody does): the happy path, often."""
        return (ticket.holder or TECHS[0]) if by == HOLDER else by

    def expect_technician(self, ticket: Ticket, username: str, allowed: Expect) -> Expect:
        """A technician's step on a ticket they cannot see is 404 before anything else is checked."""
        return allowed if ticket.visible_to_technician(username) else (404, "ticket_not_found")

    # --- the steps ------------------------------------------------------------------------------

    @precondition(lambda self: len(self.model) < MAX_TICKETS)
    @rule(target=tickets, reporter=st.sampled_from([DISPATCHER, CLERK]))
    def report(self, reporter: str) -> int:
        body = {"type_code": TYPES[0], "description": "断网了", "location": XL_POINT,
                "contact": {"name": "张三", "phone": f"1371{next(PHONES):07d}"}}
        reply = self.world.api.post("/api/v1/tickets", json=body, headers=self.world.headers(reporter))
        assert reply.status_code == 201, reply.text
        created = reply.json()
        subscriber_id = self.world.scalar("SELECT subscriber_id FROM ticket WHERE id = :id", id=created["id"])
        self.model[created["id"]] = Ticket(id=created["id"], subscriber_id=subscriber_id)
        self.agrees(self.model[created["id"]])
        return int(created["id"])

    @rule(ticket_id=tickets, username=st.sampled_from([*TECHS, OUTSIDER]))
    def grab(self, ticket_id: int, username: str) -> None:
        t = self.model[ticket_id]
        after = t
        if username == OUTSIDER:  # the scope is checked before the state: only a resent grab of their own passes
            expected: Expect = OK if (t.state, t.holder) == ("accepted", OUTSIDER) else (403, "out_of_scope")
        elif t.state in GRABBABLE:
            if self.active(username) >= MAX_ACTIVE[username]:
                expected = (409, "limit_reached")
            else:
                expected, after = OK, t.step("grab", state="accepted", holder=username, arrived=False)
        elif t.state == "accepted" and t.holder == username:
            expected = OK  # a resent grab of the winner: never told it lost, nothing written twice
        elif t.state == "invalid":
            expected = (409, "invalid_transition")
        else:
            expected = (409, "already_taken")
        self.check(self.post(t, "grab", username), expected, t, after)

    @rule(ticket_id=tickets, target_tech=st.sampled_from([*TECHS, OUTSIDER]),
          by=st.sampled_from([DISPATCHER, ADMIN, CLERK]))
    def assign(self, ticket_id: int, target_tech: str, by: str) -> None:
        t = self.model[ticket_id]
        after = t
        if by == CLERK:
            expected: Expect = (403, "forbidden")
        elif by == DISPATCHER and target_tech == OUTSIDER:  # named before any state: not in Xilinhot's regions
            expected = (422, "validation_error")
        elif t.state in GRABBABLE:
            expected, after = OK, t.step("assign", state="accepted", holder=target_tech, arrived=False)
        elif t.state == "accepted" and t.holder != target_tech:
            expected, after = OK, t.step("reassign", holder=target_tech, arrived=False)
        else:
            expected = (409, "invalid_transition")
        self.check(self.post(t, "assign", by, {"technician_id": self.tid(target_tech)}), expected, t, after)

    @rule(ticket_id=tickets, by=st.sampled_from([HOLDER, HOLDER, *TECHS, OUTSIDER, DISPATCHER, CLERK, PAYROLL]))
    def release(self, ticket_id: int, by: str) -> None:
        t = self.model[ticket_id]
        by = self.resolve(t, by)
        allowed = t.state == "accepted"
        after = t.step("release", state="pending", holder=None, arrived=False) if allowed else t
        if by in {CLERK, PAYROLL}:
            expected: Expect = (403, "forbidden")
            after = t
        elif by == DISPATCHER:
            expected = OK if allowed else (409, "invalid_transition")
        else:
            expected = self.expect_technician(t, by, OK if allowed else (409, "invalid_transition"))
            if expected != OK:
                after = t
        self.check(self.post(t, "release", by, {"reason": "用户改约"}), expected, t, after)

    @rule(ticket_id=tickets, by=st.sampled_from([HOLDER, HOLDER, *TECHS, DISPATCHER]))
    def arrive(self, ticket_id: int, by: str) -> None:
        t = self.model[ticket_id]
        by = self.resolve(t, by)
        after = t
        if t.state != "accepted":
            expected: Expect = (409, "invalid_transition")
        elif by == DISPATCHER:
            expected = (403, "not_a_technician")
        elif t.arrived:
            expected = (409, "invalid_transition")
        else:
            expected, after = OK, t.step("arrive", arrived=True)
        if by != DISPATCHER:
            expected = self.expect_technician(t, by, expected)
            after = after if expected == OK else t
        self.check(self.post(t, "arrive", by, {"location": XL_POINT}), expected, t, after)

    @rule(ticket_id=tickets, by=st.sampled_from([HOLDER, HOLDER, *TECHS, DISPATCHER]))
    def complete(self, ticket_id: int, by: str) -> None:
        t = self.model[ticket_id]
        by = self.resolve(t, by)
        after = t
        if t.state != "accepted":
            expected: Expect = (409, "invalid_transition")
        elif by == DISPATCHER:
            expected = (403, "not_a_technician")
        else:
            expected, after = OK, t.step("complete", state="awaiting_followup")
        if by != DISPATCHER:
            expected = self.expect_technician(t, by, expected)
            after = after if expected == OK else t
        self.check(self.post(t, "complete", by, {"note": "修好了"}), expected, t, after)

    @rule(ticket_id=tickets, by=st.sampled_from(["subscriber", "other subscriber", CLERK, DISPATCHER, PAYROLL,
                                                 *TECHS]))
    def followup(self, ticket_id: int, by: str) -> None:
        t = self.model[ticket_id]
        allowed = t.state == "awaiting_followup"
        after = t.step("followup", state="completed") if allowed else t
        who: str | Ticket = by
        if by in {PAYROLL, *TECHS}:
            expected: Expect = (403, "forbidden")
            if by in TECHS:
                expected = self.expect_technician(t, by, expected)
            after = t
        elif by == "other subscriber":
            others = [o for o in self.model.values() if o.subscriber_id != t.subscriber_id]
            if not others:
                return
            who, expected, after = others[0], (404, "ticket_not_found"), t
        else:
            who = t if by == "subscriber" else by
            expected = OK if allowed else (409, "invalid_transition")
        self.check(self.post(t, "followup", who, {"satisfaction": 4}), expected, t, after)

    @rule(ticket_id=tickets, by=st.sampled_from([DISPATCHER, CLERK, PAYROLL]))
    def invalidate(self, ticket_id: int, by: str) -> None:
        t = self.model[ticket_id]
        after = t
        if by in {CLERK, PAYROLL}:
            expected: Expect = (403, "forbidden")
        elif t.state in GRABBABLE | {"accepted"}:
            expected, after = OK, t.step("invalidate", state="invalid")  # the holder keeps it: they worked it
        else:
            expected = (409, "invalid_transition")
        self.check(self.post(t, "invalidate", by, {"reason": "虚假报修"}), expected, t, after)

    @rule(ticket_id=tickets, type_code=st.sampled_from(TYPES))
    def retype(self, ticket_id: int, type_code: str) -> None:
        t = self.model[ticket_id]
        after = t
        if type_code == t.type_code:
            expected: Expect = (422, "validation_error")
        elif t.state not in OPEN:
            expected = (409, "invalid_transition")
        else:  # due times follow the new type from the ticket's creation: no longer overdue
            expected, after = OK, t.step("retype", type_code=type_code, overdue=False)
        reply = self.world.api.patch(f"/api/v1/tickets/{t.id}", json={"type_code": type_code},
                                     headers=self.world.headers(DISPATCHER))
        self.check(reply, expected, t, after)

    @rule(ticket_id=tickets)
    def response_sla_passes(self, ticket_id: int) -> None:
        """The SLA sweep (a worker's periodic job) times out a pending ticket whose response time passed."""
        with self.world.engine.begin() as conn:
            conn.execute(text("UPDATE ticket SET response_due_at = now() - interval '1 minute' WHERE id = :id"),
                         {"id": ticket_id})
        self.model[ticket_id] = replace(self.model[ticket_id], overdue=True)
        jobs.sweep_sla()
        for t in list(self.model.values()):  # a ticket handed back after its time passed times out again
            if t.overdue and t.state == "pending":
                self.model[t.id] = t.step("time_out", state="timed_out")
            self.agrees(self.model[t.id])

    @rule(ticket_id=tickets, username=st.sampled_from([*TECHS, OUTSIDER]))
    def technician_reads(self, ticket_id: int, username: str) -> None:
        """Pool tickets without who reported them, their own in full, anything else not found."""
        t = self.model[ticket_id]
        reply = self.world.api.get(f"/api/v1/tickets/{t.id}", headers=self.world.headers(username))
        listed = self.world.api.get("/api/v1/tickets", params={"limit": 500}, headers=self.world.headers(username))
        in_list = {item["id"]: item for item in listed.json()["items"]}
        if not t.visible_to_technician(username):
            assert reply.status_code == 404 and reply.json()["code"] == "ticket_not_found", reply.text
            assert t.id not in in_list
            return
        assert reply.status_code == 200, reply.text
        held = t.holder == username
        assert (reply.json()["contact"] is not None) == held, reply.text
        assert (in_list[t.id]["contact"] is not None) == held

    # --- two clients at once ----------------------------------------------------------------------

    @rule(ticket_id=tickets, pair=st.permutations(TECHS).map(lambda p: p[:2]))
    def two_technicians_grab_at_once(self, ticket_id: int, pair: tuple[str, str]) -> None:
        t = self.model[ticket_id]
        if t.state not in GRABBABLE or any(self.active(u) >= MAX_ACTIVE[u] for u in pair):
            return
        path = f"/api/v1/tickets/{t.id}/grab"
        headers = [self.world.headers(u) for u in pair]
        replies = race(self.world.base_url, [lambda c, h=h: c.post(path, headers=h) for h in headers])
        assert sorted(r.status_code for r in replies) == [200, 409], [r.text for r in replies]
        loser = next(r for r in replies if r.status_code == 409)
        assert loser.json()["code"] == "already_taken", loser.text
        winner = pair[[r.status_code for r in replies].index(200)]
        self.model[t.id] = t.step("grab", state="accepted", holder=winner, arrived=False)
        self.agrees(self.model[t.id])

    @rule(ticket_id=tickets, pair=st.permutations(TECHS).map(lambda p: p[:2]))
    def a_grab_races_a_force_assign(self, ticket_id: int, pair: tuple[str, str]) -> None:
        """With If-Match, the force-assign applies only to the ticket as the dispatcher saw it."""
        t = self.model[ticket_id]
        grabber, assignee = pair
        if t.state not in GRABBABLE or self.active(grabber) >= MAX_ACTIVE[grabber]:
            return
        grab = {"headers": self.world.headers(grabber)}
        assign = {"headers": {**self.world.headers(DISPATCHER), "If-Match": str(t.version)},
                  "json": {"technician_id": self.tid(assignee)}}
        replies = race(self.world.base_url, [lambda c: c.post(f"/api/v1/tickets/{t.id}/grab", **grab),
                                             lambda c: c.post(f"/api/v1/tickets/{t.id}/assign", **assign)])
        statuses = [r.status_code for r in replies]
        assert sorted(statuses) == [200, 409], [r.text for r in replies]
        assert replies[statuses.index(409)].json()["code"] == "already_taken", [r.text for r in replies]
        if statuses[0] == 200:
            self.model[t.id] = t.step("grab", state="accepted", holder=grabber, arrived=False)
        else:
            self.model[t.id] = t.step("assign", state="accepted", holder=assignee, arrived=False)
        self.agrees(self.model[t.id])

    @rule(ticket_id=tickets, assignee=st.sampled_from(TECHS))
    def a_completion_races_a_reassign(self, ticket_id: int, assignee: str) -> None:
        t = self.model[ticket_id]
        if t.state != "accepted" or t.holder == assignee or t.holder is None:
            return
        complete = {"headers": self.world.headers(t.holder), "json": {"note": "修好了"}}
        reassign = {"headers": self.world.headers(DISPATCHER), "json": {"technician_id": self.tid(assignee)}}
        replies = race(self.world.base_url, [lambda c: c.post(f"/api/v1/tickets/{t.id}/complete", **complete),
                                             lambda c: c.post(f"/api/v1/tickets/{t.id}/assign", **reassign)])
        statuses = [r.status_code for r in replies]
        assert statuses.count(200) == 1, [r.text for r in replies]
        # The completion that lost either found the ticket gone to another (404) or changed under it (409).
        loser = replies[1 - statuses.index(200)]
        assert loser.status_code in {404, 409}, loser.text
        if statuses[0] == 200:
            self.model[t.id] = t.step("complete", state="awaiting_followup")
        else:
            self.model[t.id] = t.step("reassign", holder=assignee, arrived=False)
        self.agrees(self.model[t.id])

    def teardown(self) -> None:
        """Close what this run left open: the next run starts with every technician's hands free."""
        for t in self.model.values():
            if t.state == "awaiting_followup":
                assert self.post(t, "followup", CLERK, {"satisfaction": 5}).status_code == 200
            elif t.state in OPEN:
                assert self.post(t, "invalidate", ADMIN, {"reason": "测试结束"}).status_code == 200


@pytest.fixture
def world(live_server: str, committed_db: Engine, redis: Redis, settings: Settings) -> Iterator[World]:
    with httpx.Client(base_url=live_server, timeout=60) as api:
        world = World(api=api, engine=committed_db, base_url=live_server, secret=settings.secret_key)
        with committed_db.connect() as conn:
            world.technician_ids = dict(conn.execute(text(
                "SELECT u.username, t.id FROM technician t JOIN user_account u ON u.id = t.user_id "
                "WHERE u.username = ANY(:names)"), {"names": [*TECHS, OUTSIDER]}).all())
        yield world


def test_the_ticket_lifecycle_follows_the_product_state_machine(world: World) -> None:
    LifecycleMachine.world = world
    # Bounded to about a minute on a shared machine; the database is off: no example files left behind.
    run_state_machine_as_test(LifecycleMachine, settings=hypothesis_settings(
        max_examples=10, stateful_step_count=30, deadline=None, database=None, derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
