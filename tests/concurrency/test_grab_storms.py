"""抢单 storms against three API processes: one owner per ticket, limits kept, pool and PostgreSQL agreeing.

The server is three uvicorn worker processes in a subprocess; the racers are
minted technicians of the Xilinhot branch, each with its own connection,
released together once every connection is open.
"""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from tests.concurrency.storms import (
    ApiServer,
    Crowd,
    Member,
    StormLog,
    build_pool,
    events,
    fieldpool,
    open_client,
    outcome_of,
    owners,
    release_together,
    report,
    storm,
)
from tests.conftest import TEST_REDIS_URL

DISPATCHER = "dispatcher.xl"
Call = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


def grab(ticket_id: int, member: Member) -> Call:
    return lambda client: client.post(f"/api/v1/tickets/{ticket_id}/grab", headers=member.headers)


def force_assign(ticket_id: int, member: Member, dispatcher: dict[str, str]) -> Call:
    # As the console sends it: the version the dispatcher saw (a new ticket's), so a grab that
    # commits first turns the assign away instead of it becoming a reassign.
    return lambda client: client.post(f"/api/v1/tickets/{ticket_id}/assign",
                                      json={"technician_id": member.technician_id},
                                      headers={**dispatcher, "If-Match": "1"})


def tickets(server_url: str, crowd: Crowd, count: int) -> list[int]:
    with httpx.Client(base_url=server_url, timeout=30) as api:
        return report(api, crowd.staff(DISPATCHER), count)


async def race(server_url: str, calls: list[Call]) -> list[httpx.Response]:
    client = await open_client(server_url, len(calls))
    try:
        return await release_together(client, calls)
    finally:
        await client.aclose()


def test_a_thousand_technicians_tapping_one_ticket_make_exactly_one_owner(
        crowd: Crowd, api_server: ApiServer, committed_db: Engine) -> None:
    members = crowd.enlist(1000)
    [ticket_id] = tickets(api_server.base_url, crowd, 1)
    build_pool(committed_db, TEST_REDIS_URL)

    replies = asyncio.run(race(api_server.base_url, [grab(ticket_id, m) for m in members]))

    outcomes = [outcome_of(r) for r in replies]
    assert Counter(outcomes) == {(200, ""): 1, (409, "already_taken"): 999}
    winner = members[outcomes.index((200, ""))]
    assert owners(committed_db, [ticket_id]) == {ticket_id: ("accepted", winner.technician_id)}
    assert events(committed_db, [ticket_id], "grab", "assign") == {
        ticket_id: [("grab", winner.username, winner.technician_id)]}


def test_three_hundred_technicians_storming_a_hundred_tickets_leave_one_owner_each_within_limits(
        crowd: Crowd, api_server: ApiServer, committed_db: Engine) -> None:
    members = crowd.enlist(300, max_active=lambda n: 1 + n % 2)
    ticket_ids = tickets(api_server.base_url, crowd, 100)
    build_pool(committed_db, TEST_REDIS_URL)

    async def run() -> StormLog:
        client = await open_client(api_server.base_url, len(members))
        try:
            return await storm(client, members, ticket_ids, seed=1)
        finally:
            await client.aclose()

    log = asyncio.run(run())

    assert_one_owner_each(committed_db, ticket_ids, log)
    assert_within_limits(committed_db)
    checked = fieldpool("pool", "check", redis_url=TEST_REDIS_URL)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def assert_one_owner_each(engine: Engine, ticket_ids: list[int], log: StormLog) -> None:
    """Every ticket accepted by the one technician told they won it, with one grab event naming them."""
    assert set(log.outcomes) <= {(200, ""), (409, "already_taken"), (409, "limit_reached")}, log.outcomes
    assert {t: len(w) for t, w in log.won.items() if len(w) != 1} == {}
    found = owners(engine, ticket_ids)
    assert {t: state for t, (state, _) in found.items() if state != "accepted"} == {}
    assert {t: by for t, (_, by) in found.items()} == {t: w[0] for t, w in log.won.items()}
    grabbed = events(engine, ticket_ids, "grab", "assign")
    assert {t: [e[2] for e in evs] for t, evs in grabbed.items()} == {t: [w[0]] for t, w in log.won.items()}


def assert_within_limits(engine: Engine) -> None:
    with engine.connect() as conn:
        over = conn.execute(text(
            "SELECT t.id, t.max_active, count(*) FROM ticket k JOIN technician t ON t.id = k.technician_id "
            "WHERE k.state = 'accepted' GROUP BY t.id, t.max_active HAVING count(*) > t.max_active")).all()
    assert over == []


def test_force_assign_racing_grabs_has_one_winner_and_the_event_log_names_it(
        crowd: Crowd, api_server: ApiServer, committed_db: Engine) -> None:
    [assignee] = crowd.enlist(1, max_active=lambda n: 50)
    grabbers = crowd.enlist(20, max_active=lambda n: 50)
    dispatcher = crowd.staff(DISPATCHER)
    ticket_ids = tickets(api_server.base_url, crowd, 8)
    build_pool(committed_db, TEST_REDIS_URL)
    for ticket_id in ticket_ids:
        assign = force_assign(ticket_id, assignee, dispatcher)
        # The assign first in the list: it leaves the start line first, as it needs a worker thread.
        replies = asyncio.run(race(api_server.base_url, [assign, *[grab(ticket_id, m) for m in grabbers]]))

        outcomes = [outcome_of(r) for r in replies]
        assert outcomes.count((200, "")) == 1, outcomes
        assert set(outcomes) == {(200, ""), (409, "already_taken")}, outcomes
        if outcomes[0] == (200, ""):
            expected = ("assign", DISPATCHER, assignee.technician_id)
        else:
            winner = grabbers[outcomes.index((200, "")) - 1]
            expected = ("grab", winner.username, winner.technician_id)
        assert events(committed_db, [ticket_id], "grab", "assign") == {ticket_id: [expected]}
        assert owners(committed_db, [ticket_id]) == {ticket_id: ("accepted", expected[2])}
    checked = fieldpool("pool", "check", redis_url=TEST_REDIS_URL)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- what a loser costs PostgreSQL ---------------------------------------------------------------

class StatementCounter:
    """Counts every statement any engine of this process sends (the in-process server's included)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *args: object) -> None:
        self.count += 1


@pytest.fixture
def statements() -> Iterator[StatementCounter]:
    counter = StatementCounter()
    event.listen(Engine, "before_cursor_execute", counter)
    yield counter
    event.remove(Engine, "before_cursor_execute", counter)


def test_losers_of_a_storm_on_a_taken_ticket_cost_zero_postgresql_statements(
        crowd: Crowd, live_server: str, committed_db: Engine, statements: StatementCounter) -> None:
    members = crowd.enlist(200)
    [ticket_id] = tickets(live_server, crowd, 1)
    build_pool(committed_db, TEST_REDIS_URL)
    first = [outcome_of(r) for r in asyncio.run(race(live_server, [grab(ticket_id, m) for m in members]))]
    assert Counter(first) == {(200, ""): 1, (409, "already_taken"): 199}
    losers = [m for m, o in zip(members, first, strict=True) if o != (200, "")]
    before = statements.count  # every loser's token is now known to the server: no more log-in reads

    again = [outcome_of(r) for r in asyncio.run(race(live_server, [grab(ticket_id, m) for m in losers]))]

    assert Counter(again) == {(409, "already_taken"): 199}
    assert statements.count - before == 0


def test_a_technician_tapping_grab_five_times_at_once_is_told_they_won_every_time(
        crowd: Crowd, api_server: ApiServer, committed_db: Engine) -> None:
    # Room for exactly the five tickets: a tap must not count its own ticket against the limit either.
    [me] = crowd.enlist(1, max_active=lambda n: 5)
    ticket_ids = tickets(api_server.base_url, crowd, 5)
    build_pool(committed_db, TEST_REDIS_URL)
    for ticket_id in ticket_ids:
        replies = asyncio.run(race(api_server.base_url, [grab(ticket_id, me)] * 5))

        assert [outcome_of(r) for r in replies] == [(200, "")] * 5
        assert events(committed_db, [ticket_id], "grab") == {ticket_id: [("grab", me.username, me.technician_id)]}
