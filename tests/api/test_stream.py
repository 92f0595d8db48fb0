"""The live feed (GET /api/v1/stream) across two API processes: who gets which event, and resuming.

Server A is the `live_server` fixture (a uvicorn thread in this process, which
publishes through the outbox and its notifier channel); server B is a second
uvicorn in a process of its own on the same database and Redis, where the
phones and consoles are connected.
"""

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dispatch.accounts.service import subscriber_by_phone, token_for
from dispatch.app import create_app
from dispatch.kernel.auth import Actor, PrincipalKind, Role
from dispatch.kernel.errors import Forbidden
from dispatch.kernel.redis import connect_async
from dispatch.kernel.settings import Settings
from dispatch.tickets import feed, notify, outbox, stream
from tests.conftest import TEST_REDIS_URL, _free_port, answers, fieldpool_process, log_in

ROOT = Path(__file__).resolve().parents[2]
STREAM = "/api/v1/stream"
TIMEOUT = httpx.Timeout(10.0, read=20.0)  # a keep-alive comes every 15 s


# --- a small SSE client -------------------------------------------------------------------

@dataclass
class Message:
    id: str | None = None
    event: str | None = None
    data: dict[str, Any] | None = None
    comments: list[str] = field(default_factory=list)


class Sse:
    """One open stream, read message by message (an httpx streaming response)."""

    def __init__(self, client: httpx.Client, headers: dict[str, str], last_event_id: str | None = None) -> None:
        if last_event_id is not None:
            headers = {**headers, "Last-Event-ID": last_event_id}
        self._context = client.stream("GET", STREAM, headers=headers, timeout=TIMEOUT)
        self.response = self._context.__enter__()
        assert self.response.status_code == 200, self.response.read()
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self._lines = self.response.iter_lines()
        self.start = self.next()  # the id-only message: where this stream starts
        assert self.start.id is not None and self.start.event is None
        self.last_id = self.start.id

    def next(self) -> Message:
        message = Message()
        for line in self._lines:
            if not line:
                if message.id is not None or message.event is not None or message.data is not None:
                    return message
                continue  # a lone comment (keep-alive) is not a message
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                message.comments.append(value)
            elif name == "id":
                message.id = value
            elif name == "event":
                message.event = value
            elif name == "data":
                message.data = json.loads(value)
        raise AssertionError("the stream ended")

    def until(self, *ticket_ids: int, deadline_s: float = 15.0) -> list[Message]:
        """Every event read until one about each of `ticket_ids` has come."""
        deadline = time.monotonic() + deadline_s
        seen: list[Message] = []
        while time.monotonic() < deadline:
            message = self.next()
            if message.id is not None:
                self.last_id = message.id
            if message.data is None:
                continue
            seen.append(message)
            if set(ticket_ids) <= {m.data["ticket_id"] for m in seen if m.data}:
                return seen
        raise AssertionError(f"no events about tickets {ticket_ids} within {deadline_s} s; saw {seen}")

    def ticket_ids(self, *ticket_ids: int) -> list[int]:
        return [m.data["ticket_id"] for m in self.until(*ticket_ids) if m.data]

    def close(self) -> None:
        self._context.__exit__(None, None, None)


# --- the two servers --------------------------------------------------------------------

@pytest.fixture(scope="module")
def server_b(settings: Settings, engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second API process on the same test database (migrated and seeded by `engine`) and Redis."""
    port = _free_port()
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url, "SECRET_KEY": settings.secret_key,
           "LOG_LEVEL": "WARNING", "MEDIA_DIR": str(settings.media_dir)}
    base_url = f"http://127.0.0.1:{port}"
    with fieldpool_process(["serve", "--port", str(port)], env, tmp_path_factory.mktemp("server_b") / "server.log",
                           answers(base_url)):
        yield base_url


@dataclass
class World:
    a: httpx.Client
    b: httpx.Client
    engine: Engine

    def headers(self, username: str) -> dict[str, str]:
        return log_in(self.a, username)

    def stream(self, username: str, last_event_id: str | None = None) -> Sse:
        return Sse(self.b, self.headers(username), last_event_id)

    def scalar(self, sql: str, **params: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(sql), params).scalar_one())

    def technician_id(self, username: str) -> int:
        return self.scalar("SELECT t.id FROM technician t JOIN user_account u ON u.id = t.user_id "
                           "WHERE u.username = :u", u=username)

    def branch_id(self, code: str) -> int:
        return self.scalar("SELECT id FROM region WHERE code = :c AND kind = 'branch'", c=code)

    def publish(self, *events: dict[str, Any]) -> None:
        """The way the ticket services do it: outbox rows in a transaction, then a drain
        delivering through the notifier's feed channel (registered by server A's lifespan)."""
        with Session(self.engine) as session, session.begin():
            for event in events:
                outbox.emit(session, feed.TOPIC, event)
        with Session(self.engine) as session, session.begin():
            assert outbox.drain(session, deliver=notify.deliver) == len(events)


@pytest.fixture
def world(live_server: str, server_b: str, committed_db: Engine, owner_engine: Engine,
          redis: Redis) -> Iterator[World]:
    with owner_engine.begin() as conn:
        conn.execute(text("TRUNCATE outbox RESTART IDENTITY"))
    with httpx.Client(base_url=live_server, timeout=TIMEOUT) as a, httpx.Client(base_url=server_b) as b:
        yield World(a=a, b=b, engine=committed_db)
    with owner_engine.begin() as conn:
        conn.execute(text("TRUNCATE outbox RESTART IDENTITY"))


@contextlib.contextmanager
def streams(world: World, *usernames: str) -> Iterator[list[Sse]]:
    opened: list[Sse] = []
    try:
        for username in usernames:
            opened.append(world.stream(username))
        yield opened
    finally:
        for sse in opened:
            sse.close()


def offer(ticket_id: int, branch_id: int, *technician_ids: int, **data: Any) -> dict[str, Any]:
    return feed.make_event("ticket.offered", ticket_id=ticket_id, branch_id=branch_id,
                           technician_ids=technician_ids, **data)


# --- across two API processes -----------------------------------------------------------------

def test_an_offer_reaches_its_technician_and_branch_on_another_server_and_no_one_else(world: World) -> None:
    xl, eh = world.branch_id("XL"), world.branch_id("EH")
    tech01, tech02 = world.technician_id("tech01"), world.technician_id("tech02")

    with streams(world, "tech01", "tech02", "dispatcher.xl", "dispatcher.eh") as (t1, t2, d_xl, d_eh):
        # The sentinel comes after the offer on every stream it shares with it: a stream
        # that shows the sentinel without the offer will never show the offer.
        world.publish(offer(1001, xl, tech01, ring=1, distance_m=120.5),
                      feed.make_event("ticket.created", ticket_id=1002, branch_id=eh, technician_ids=[tech02]))

        [got] = t1.until(1001)
        assert got.event == "ticket.offered"
        assert got.data == {"type": "ticket.offered", "ticket_id": 1001, "branch_id": xl,
                            "technician_ids": [tech01], "ring": 1, "distance_m": 120.5}
        assert got.id == f"t{tech01}:{got.id.split(':')[1]}"
        [on_console] = d_xl.until(1001)
        assert on_console.event == "ticket.offered"
        assert t2.ticket_ids(1002) == [1002]
        assert d_eh.ticket_ids(1002) == [1002]


def test_a_technician_reads_only_their_own_part_of_an_offer_the_console_reads_all(world: World) -> None:
    xl = world.branch_id("XL")
    tech01, tech02 = world.technician_id("tech01"), world.technician_id("tech02")
    distances = {str(tech01): 120, str(tech02): 340}

    with streams(world, "tech01", "tech02", "dispatcher.xl") as (t1, t2, console):
        world.publish(offer(1101, xl, tech01, tech02, ring=1, distances_m=distances))

        [to_1], [to_2], [on_console] = t1.until(1101), t2.until(1101), console.until(1101)
        assert (to_1.data["technician_ids"], to_1.data["distances_m"]) == ([tech01], {str(tech01): 120})
        assert (to_2.data["technician_ids"], to_2.data["distances_m"]) == ([tech02], {str(tech02): 340})
        assert (on_console.data["technician_ids"], on_console.data["distances_m"]) == ([tech01, tech02], distances)


def test_reconnecting_with_last_event_id_replays_what_was_published_meanwhile(world: World) -> None:
    xl, tech01 = world.branch_id("XL"), world.technician_id("tech01")

    with streams(world, "tech01") as [phone]:
        world.publish(offer(2001, xl, tech01))
        phone.until(2001)
        resume_from = phone.last_id
    world.publish(offer(2002, xl, tech01), offer(2003, xl, tech01))  # while the phone is in a tunnel

    again = world.stream("tech01", last_event_id=resume_from)
    try:
        assert again.ticket_ids(2003) == [2002, 2003]
    finally:
        again.close()

    fresh = world.stream("tech01")  # without Last-Event-ID: new events only
    try:
        world.publish(offer(2004, xl, tech01))
        assert fresh.ticket_ids(2004) == [2004]
    finally:
        fresh.close()


def test_a_client_that_saw_no_event_yet_resumes_from_where_it_connected(world: World) -> None:
    xl, tech01 = world.branch_id("XL"), world.technician_id("tech01")
    quiet = world.stream("tech01")
    start = quiet.start.id
    quiet.close()

    world.publish(offer(3001, xl, tech01))

    again = world.stream("tech01", last_event_id=start)
    try:
        assert again.ticket_ids(3001) == [3001]
    finally:
        again.close()


def test_an_admin_follows_every_branch_and_resumes_all_of_them_with_one_id(world: World) -> None:
    xl, eh = world.branch_id("XL"), world.branch_id("EH")

    with streams(world, "admin") as [console]:
        world.publish(offer(4001, xl), offer(4002, eh))
        assert sorted(console.ticket_ids(4001, 4002)) == [4001, 4002]
        labels = {part.split(":")[0] for part in console.last_id.split(",")}
        assert {f"b{xl}", f"b{eh}"} <= labels
        resume_from = console.last_id
    world.publish(offer(4003, eh), offer(4004, xl))

    again = world.stream("admin", last_event_id=resume_from)
    try:
        # Order holds within a stream, not across two: compare as sets.
        assert sorted(again.ticket_ids(4003, 4004)) == [4003, 4004]
    finally:
        again.close()


def test_a_closed_stream_leaves_no_blocked_read_behind(world: World, redis: Redis) -> None:
    test_db = str(redis.connection_pool.connection_kwargs.get("db", 0))  # the run's own Redis database

    def blocked_reads() -> int:  # flag "b": waiting in a blocking command (an idle one keeps cmd=xread)
        return sum(1 for c in redis.client_list()
                   if c.get("cmd") == "xread" and "b" in c.get("flags", "") and c.get("db") == test_db)

    with streams(world, "tech01", "dispatcher.xl"):
        deadline = time.monotonic() + 10
        while blocked_reads() < 2:  # polling with a deadline: the reads start in server B
            assert time.monotonic() < deadline, "the streams are not reading"
            time.sleep(0.02)
    deadline = time.monotonic() + 10
    while blocked_reads():
        assert time.monotonic() < deadline, "server B kept reading for a client that left"
        time.sleep(0.02)


def test_shutting_the_server_down_ends_open_streams(settings: Settings, committed_db: Engine,
                                                   redis: Redis) -> None:
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=_free_port(), log_level="critical",
                            access_log=False, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:  # as the live_server fixture does
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    with httpx.Client(base_url=f"http://127.0.0.1:{config.port}") as client:
        sse = Sse(client, log_in(client, "dispatcher.xl"))
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "the server waited for the open stream"
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, AssertionError)):
            sse.next()
        sse.close()


def test_app_shutdown_ends_a_blocked_read_at_once(redis: Redis) -> None:
    async def scenario() -> tuple[object, float]:
        client = connect_async(TEST_REDIS_URL)
        stopping = asyncio.Event()
        followed = feed.Subscription(streams={"t1": feed.tech_key(1)})
        started = time.monotonic()
        asyncio.get_running_loop().call_later(0.05, stopping.set)  # the lifespan's shutdown
        try:
            result = await stream._unless_stopping(
                feed.read(client, followed, {"t1": "0-0"}, block_ms=stream.BLOCK_MS), stopping)
        finally:
            await client.aclose()
        return result, time.monotonic() - started

    result, took = asyncio.run(scenario())
    assert result is None
    assert took < 5  # not the 15 s of the XREAD BLOCK


# --- who may follow what ----------------------------------------------------------------

def test_without_credentials_the_stream_is_401(client: TestClient) -> None:
    reply = client.get(STREAM)
    assert reply.status_code == 401
    assert reply.json()["code"] == "unauthorized"


def test_a_subscriber_gets_403(client: TestClient, db: Session, settings: Settings) -> None:
    subscriber_id = subscriber_by_phone(db, phone="13800009999", name="张三")
    token = token_for(f"subscriber:{subscriber_id}", secret=settings.secret_key, ttl_min=5)
    reply = client.get(STREAM, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 403
    assert reply.json()["code"] == "forbidden"


def region_ids(db: Session, *codes: str) -> list[int]:
    return [db.execute(text("SELECT id FROM region WHERE code = :c"), {"c": c}).scalar_one() for c in codes]


def staff(role: Role, *region_ids: int) -> Actor:
    return Actor(kind=PrincipalKind.USER, id=0, role=role, label="test", region_ids=tuple(region_ids))


@pytest.mark.parametrize(("role", "scope", "branches"), [
    (Role.ADMIN, (), ("XL", "EH")),
    (Role.PAYROLL, ("NMG",), ("XL", "EH")),
    (Role.DISPATCHER, ("XL",), ("XL",)),
    (Role.CLERK, ("EH",), ("EH",)),
    (Role.API, ("XL", "EH"), ("XL", "EH")),
])
def test_staff_follow_the_branches_of_their_regions(db: Session, role: Role, scope: tuple[str, ...],
                                                    branches: tuple[str, ...]) -> None:
    followed = feed.subscription_for(db, staff(role, *region_ids(db, *scope)))
    assert followed.streams == {f"b{b}": feed.branch_key(b) for b in region_ids(db, *branches)}
    assert followed.only_regions == {}


def test_a_user_scoped_to_one_grid_sees_only_that_grids_events_of_its_branch(db: Session) -> None:
    xl, grid, other_grid = region_ids(db, "XL", "XL-G01", "XL-G02")
    followed = feed.subscription_for(db, staff(Role.DISPATCHER, grid))

    assert followed.streams == {f"b{xl}": feed.branch_key(xl)}
    assert followed.visible(f"b{xl}", offer(1, xl, region_id=grid))
    assert not followed.visible(f"b{xl}", offer(1, xl, region_id=other_grid))
    assert not followed.visible(f"b{xl}", offer(1, xl))


def test_a_technician_follows_only_their_own_stream_and_a_subscriber_nothing(db: Session) -> None:
    tech01 = db.execute(text("SELECT t.id, t.user_id FROM technician t JOIN user_account u ON u.id = t.user_id "
                             "WHERE u.username = 'tech01'")).one()
    followed = feed.subscription_for(db, Actor(kind=PrincipalKind.USER, id=tech01.user_id, role=Role.TECHNICIAN,
                                               label="tech01"))
    assert followed.streams == {f"t{tech01.id}": feed.tech_key(tech01.id)}
    with pytest.raises(Forbidden):
        feed.subscription_for(db, Actor(kind=PrincipalKind.SUBSCRIBER, id=1, role=Role.SUBSCRIBER, label="s"))
    with pytest.raises(Forbidden):
        feed.subscription_for(db, staff(Role.DISPATCHER))  # no region at all


# --- the feed's mechanics -------------------------------------------------------------------

def test_publish_appends_to_the_branch_and_each_technician_stream_on_one_cluster_slot(redis: Redis) -> None:
    ids = feed.publish(redis, offer(9, 2, 11, 12, ring=1))

    assert set(ids) == {"fp:{feed}:branch:2", "fp:{feed}:tech:11", "fp:{feed}:tech:12"}
    for key, entry_id in ids.items():
        [(got_id, fields)] = redis.xrange(key)
        assert got_id.decode() == entry_id
        assert json.loads(fields[b"data"]) == offer(9, 2, 11, 12, ring=1)
        assert 0 < redis.ttl(key) <= feed.KEY_TTL_S
    # Every key hashes on "{feed}", so one XREAD may span them on Redis Cluster.
    assert all("{feed}" in key for key in ids)


@pytest.mark.parametrize("bad", [
    {"ticket_id": 1, "branch_id": 2},
    {"type": "ticket.offered", "branch_id": 2},
    {"type": "ticket.offered", "ticket_id": 1, "branch_id": "2"},
    {"type": "ticket.offered", "ticket_id": 1, "branch_id": 2, "technician_ids": "7"},
    {"type": "ticket.offered\ndata: forged", "ticket_id": 1, "branch_id": 2},
])
def test_an_incomplete_event_is_refused_before_anything_is_written(redis: Redis, bad: dict[str, Any]) -> None:
    with pytest.raises(feed.InvalidEvent):
        feed.publish(redis, bad)
    assert redis.keys("fp:*") == []


def test_the_cursor_resumes_only_followed_streams_and_ignores_garbage() -> None:
    cursor = feed.encode_cursor({"b4": "1700000000001-0", "b3": "1700000000000-2"})
    assert cursor == "b3:1700000000000-2,b4:1700000000001-0"
    assert feed.decode_cursor(cursor, ["b3", "b4"]) == {"b3": "1700000000000-2", "b4": "1700000000001-0"}
    assert feed.decode_cursor(cursor, ["b3"]) == {"b3": "1700000000000-2"}  # b4 is not (any more) in scope
    assert feed.decode_cursor("b3:$,t1:0-0,garbage,,b4:12", ["b3", "b4", "t1"]) == {"t1": "0-0"}
    assert feed.decode_cursor(None, ["b3"]) == {}

