"""A breach at 02:00 walks the chain through people's channels: quiet hours honoured, nothing sent twice.

Real commits, a real drain through the adapters to the loopback peer; the sweep runs on a fixed clock.
"""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dispatch.accounts.models import NoticeChannel, User
from dispatch.kernel.auth import Actor, PrincipalKind, Role
from dispatch.kernel.settings import Settings
from dispatch.notices import service
from dispatch.notices.models import Notice, NoticeAttempt, NoticePreference, NoticeRoute, NoticeStatus
from dispatch.tickets import outbox, sla
from dispatch.tickets.models import Ticket, TicketEvent
from geo.models import Region
from tests.conftest import log_in
from tests.notices.peers import Peer

C = NoticeChannel
TZ = ZoneInfo("Asia/Shanghai")
G01_TOKEN, XL_TOKEN = "g01robot0token000", "xlrobot0token0000"
G01_SECRET = "SECg01-dingtalk-secret-0123456789"
MANAGER_PHONE = "13947900001"
ADMIN = Actor(kind=PrincipalKind.USER, id=0, role=Role.ADMIN, label="test:admin")


def users(session: Session) -> dict[str, int]:
    return {username: user_id for username, user_id in session.execute(select(User.username, User.id))}


def night_chain(session: Session, *, manager_channels: tuple[C, ...] = (C.SMS,)) -> None:
    """XL-G01's own chain: grid dispatcher by DingTalk, branch dispatcher by DingTalk or SMS, manager by SMS."""
    grid = session.scalar(select(Region.id).where(Region.code == "XL-G01"))
    assert grid is not None
    sla.set_chain(session, region_id=grid, actor=ADMIN, steps=[
        sla.Rung(level=1, title="网格值机员", delay_min=0, role=Role.DISPATCHER, reach=sla.RegionKind.GRID,
                 channels=(C.DINGTALK,)),
        sla.Rung(level=2, title="分公司值机员", delay_min=15, role=Role.DISPATCHER, reach=sla.RegionKind.BRANCH,
                 channels=(C.DINGTALK, C.SMS)),
        sla.Rung(level=3, title="分公司经理", delay_min=30, user_id=users(session)["manager.xl"],
                 channels=manager_channels)])


def set_up_people(session: Session, peer: Peer, *, grid_quiet: bool = False) -> dict[str, int]:
    ids = users(session)
    peer.dingtalk[G01_TOKEN], peer.dingtalk[XL_TOKEN] = G01_SECRET, None
    session.add_all([
        NoticeRoute(user_id=ids["dispatcher.xl.g01"], channel=C.DINGTALK, target=G01_TOKEN, secret=G01_SECRET),
        NoticeRoute(user_id=ids["dispatcher.xl"], channel=C.DINGTALK, target=XL_TOKEN),
        NoticeRoute(user_id=ids["manager.xl"], channel=C.SMS, target=MANAGER_PHONE),
        # The branch dispatcher sleeps from 22:00 to 07:00: at 02:00 the chain passes over them.
        NoticePreference(user_id=ids["dispatcher.xl"], quiet_start=time(22), quiet_end=time(7))])
    if grid_quiet:
        session.add(NoticePreference(user_id=ids["dispatcher.xl.g01"], quiet_start=time(23), quiet_end=time(7)))
    return ids


def report_in_g01(base_url: str, engine: Engine, count: int = 1) -> list[int]:
    with Session(engine) as session:
        lat, lng = session.execute(select(func.ST_Y(func.ST_PointOnSurface(Region.boundary)),
                                          func.ST_X(func.ST_PointOnSurface(Region.boundary)))
                                   .where(Region.code == "XL-G01")).one()
    with httpx.Client(base_url=base_url, timeout=30) as api:
        headers = log_in(api, "dispatcher.xl")
        ids = []
        for i in range(count):
            reply = api.post("/api/v1/tickets", headers=headers, json={
                "type_code": "broadband_fault", "description": "光猫红灯", "location": {"lat": lat, "lng": lng},
                "contact": {"name": "王五", "phone": f"1390000{i:04d}"}})
            assert reply.status_code == 201, reply.text
            ids.append(int(reply.json()["id"]))
    return ids


def two_am_after(engine: Engine, ticket_ids: list[int], *, due: str = "response_due_at") -> datetime:
    with Session(engine) as session:
        latest = session.scalar(select(func.max(getattr(Ticket, due))).where(Ticket.id.in_(ticket_ids)))
    assert latest is not None
    return datetime.combine(latest.astimezone(TZ).date() + timedelta(days=1), time(2), tzinfo=TZ)


def sweep(engine: Engine, redis: Redis, settings: Settings, now: datetime, *, limit: int = 100) -> int:
    with Session(engine) as session, session.begin():
        return sla.sweep(session, redis, cfg=settings.sla, now=now, limit=limit,
                         reach=service.Reacher(settings)).total


def escalations(engine: Engine, ticket_id: int) -> list[dict[str, Any]]:
    with Session(engine) as session:
        return list(session.scalars(select(TicketEvent.data).where(TicketEvent.ticket_id == ticket_id,
                                                                   TicketEvent.action == "escalate")
                                    .order_by(TicketEvent.id)))


@pytest.mark.usefixtures("grid_chain_cleared")
def test_a_breach_at_2am_reaches_the_grid_dispatcher_by_dingtalk_and_the_manager_by_sms(
        live_server: str, committed_db: Engine, redis: Redis, channels: Settings, peer: Peer) -> None:
    with Session(committed_db) as session, session.begin():
        night_chain(session)
        ids = set_up_people(session, peer)
    [ticket_id] = report_in_g01(live_server, committed_db)
    night = two_am_after(committed_db, [ticket_id])

    sweep(committed_db, redis, channels, night)
    outbox.drain_outbox_job()
    assert len(peer.of("dingtalk")) == 1 and peer.of("sms") == []
    # 02:15: the branch dispatcher's step, who sleeps: the manager's step (due 02:30) follows at once.
    sweep(committed_db, redis, channels, night + timedelta(minutes=15))
    outbox.drain_outbox_job()

    [ding] = peer.of("dingtalk")  # signed with the grid robot's secret: the peer checked it
    [sms] = peer.of("sms")
    with Session(committed_db) as session:
        number = session.get_one(Ticket, ticket_id).number
    assert ding.target == G01_TOKEN and number in ding.body["markdown"]["text"]
    assert "/console?ticket=" in ding.body["markdown"]["text"]
    assert sms.target == MANAGER_PHONE and sms.body["params"]["number"] == number
    steps = escalations(committed_db, ticket_id)
    assert [s["level"] for s in steps] == [1, 2, 3]  # the sleeping branch dispatcher's step passed at once
    assert steps[0]["reached"] == [{"user_id": ids["dispatcher.xl.g01"], "channels": ["dingtalk"]}]
    assert steps[1]["unreachable"] is True and steps[1]["reached"] == []
    assert steps[2]["reached"] == [{"user_id": ids["manager.xl"], "channels": ["sms"]}]

    with httpx.Client(base_url=live_server) as api:
        reply = api.get(f"/api/v1/tickets/{ticket_id}/notices", headers=log_in(api, "dispatcher.xl"))
    assert reply.status_code == 200, reply.text
    assert [(n["username"], n["channel"], n["status"], n["kind"]) for n in reply.json()["items"]] == [
        ("dispatcher.xl.g01", "dingtalk", "sent", "escalation"), ("manager.xl", "sms", "sent", "escalation")]
    with Session(committed_db) as session:
        assert session.scalar(select(func.count()).select_from(NoticeAttempt).where(NoticeAttempt.ok)) == 2


@pytest.mark.usefixtures("grid_chain_cleared")
def test_warnings_in_quiet_hours_wait_for_the_morning_as_one_digest(
        live_server: str, committed_db: Engine, redis: Redis, channels: Settings, peer: Peer) -> None:
    with Session(committed_db) as session, session.begin():
        night_chain(session)
        set_up_people(session, peer, grid_quiet=True)
    ticket_ids = report_in_g01(live_server, committed_db, count=3)
    with Session(committed_db) as session, session.begin():  # their warnings fall due at 02:00, their SLAs later
        for ticket in session.scalars(select(Ticket).where(Ticket.id.in_(ticket_ids))):
            ticket.response_due_at = datetime(2026, 12, 7, 3, 0, tzinfo=TZ)
            ticket.response_warn_at = datetime(2026, 12, 7, 1, 50, tzinfo=TZ)
    night = datetime(2026, 12, 7, 2, 0, tzinfo=TZ)

    assert sweep(committed_db, redis, channels, night) == 3
    outbox.drain_outbox_job()
    assert peer.of("dingtalk") == []  # the grid dispatcher sleeps until 07:00
    with Session(committed_db) as session, session.begin():
        assert service.flush_digests(session, settings=channels, now=night + timedelta(hours=1)) == 0
    with Session(committed_db) as session, session.begin():
        assert service.flush_digests(session, settings=channels, now=night + timedelta(hours=5, minutes=1)) == 1
    outbox.drain_outbox_job()

    [digest] = peer.of("dingtalk")
    assert digest.target == G01_TOKEN and "3 条时限预警" in digest.body["markdown"]["title"]
    assert digest.body["markdown"]["text"].count("【预警】") == 3
    with Session(committed_db) as session:
        statuses = Counter(session.scalars(select(Notice.status)))
    assert statuses == {NoticeStatus.DIGESTED: 3, NoticeStatus.SENT: 1}


@pytest.mark.usefixtures("grid_chain_cleared")
def test_two_sweepers_and_two_drains_at_once_send_every_notice_once(
        live_server: str, committed_db: Engine, redis: Redis, channels: Settings, peer: Peer) -> None:
    with Session(committed_db) as session, session.begin():
        night_chain(session)
        set_up_people(session, peer)
    ticket_ids = report_in_g01(live_server, committed_db, count=10)
    night = two_am_after(committed_db, ticket_ids)

    start = threading.Barrier(2)

    def sweep_all() -> int:
        start.wait()
        total = 0
        for now in (night, night + timedelta(minutes=15)):
            while done := sweep(committed_db, redis, channels, now, limit=2):  # small batches: interleaved
                total += done
        return total

    def drain() -> int:
        start.wait()
        return outbox.drain_outbox_job()

    with ThreadPoolExecutor(2) as pool:
        assert sum(f.result(timeout=120) for f in [pool.submit(sweep_all) for _ in range(2)]) > 0
    with ThreadPoolExecutor(2) as pool:
        [f.result(timeout=120) for f in [pool.submit(drain) for _ in range(2)]]

    with Session(committed_db) as session:
        numbers = set(session.scalars(select(Ticket.number).where(Ticket.id.in_(ticket_ids))))
        assert session.scalar(select(func.count()).select_from(NoticeAttempt)) == 20
    ding = [next(n for n in numbers if n in r.body["markdown"]["text"]) for r in peer.of("dingtalk")]
    sms = [r.body["params"]["number"] for r in peer.of("sms")]
    assert sorted(ding) == sorted(numbers) and sorted(sms) == sorted(numbers)  # each ticket once per channel


@pytest.mark.usefixtures("grid_chain_cleared")
def test_past_the_daily_sms_cap_a_notice_is_recorded_undeliverable_and_the_step_unreachable(
        live_server: str, committed_db: Engine, redis: Redis, channels: Settings, peer: Peer) -> None:
    capped = channels.model_copy(update={"notices": channels.notices.model_copy(update={"sms_daily_cap": 2})})
    with Session(committed_db) as session, session.begin():
        night_chain(session)
        set_up_people(session, peer)
    ticket_ids = report_in_g01(live_server, committed_db, count=3)
    night = two_am_after(committed_db, ticket_ids)
    sweep(committed_db, redis, capped, night)
    sweep(committed_db, redis, capped, night + timedelta(minutes=15))
    outbox.drain_outbox_job()

    assert len(peer.of("sms")) == 2
    with Session(committed_db) as session:
        refused = session.scalars(select(Notice).where(Notice.channel == C.SMS,
                                                       Notice.status == NoticeStatus.UNDELIVERABLE)).all()
    assert [n.last_error for n in refused] == ["daily SMS cap reached"]
    assert escalations(committed_db, refused[0].ticket_id or 0)[2]["unreachable"] is True

