"""Template pushes end to end: a WeChat report is offered to the nearest bound technicians, the subscriber
hears who took it; the shared access token is refreshed once on expiry; unreachable recipients are recorded."""

import threading
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.accounts.service import subscriber_by_openid, token_for
from dispatch.kernel.settings import Settings, WechatSettings
from dispatch.tickets import outbox
from dispatch.tickets.models import OutboxMessage, Ticket
from technicians.models import Technician
from tests.conftest import log_in
from tests.dispatch.test_offers import CENTRE, on_duty  # noqa: F401 (a fixture, used by name)
from tests.wechat.peer import WechatPeer
from tests.wechat.test_wechat_callback import OPENID, location, tickets_of
from tests.wechat.wire import PUBLIC, drain, message_xml, post_message, reply_content
from wechat.client import AccountClient

# Of the technicians on duty near CENTRE (tech01 100 m away, tech02 400 m, tech03 900 m, ...), two bound WeChat.
BOUND = {"tech01": "oTech01xxxxxxxxxxxxxxxxxxxxx", "tech02": "oTech02xxxxxxxxxxxxxxxxxxxxx"}


@pytest.fixture
def bound_on_duty(db: Session, on_duty: dict[str, int]) -> dict[str, int]:  # noqa: F811 (the fixture)
    for username, openid in BOUND.items():
        db.get_one(Technician, on_duty[username]).wechat_openid = openid
    db.flush()
    return on_duty


def report_by_wechat(wx: TestClient, db: Session) -> Ticket:
    post_message(wx, location(OPENID, CENTRE, 1))
    assert "报修成功" in reply_content(post_message(wx, message_xml(OPENID, "text", 2,
                                                                 Content="宽带上不了网 13912345678")))
    [ticket] = tickets_of(db, OPENID)
    return ticket


def sent(peer: WechatPeer, template_id: str) -> list[dict]:
    return [t for t in peer.templates if t["template_id"] == template_id]


def test_report_is_pushed_to_bound_technicians_nearby_and_the_subscriber_hears_who_took_it(
        whole_first_ring: Settings, wx: TestClient, db: Session, peer: WechatPeer,
        bound_on_duty: dict[str, int]) -> None:  # both bound technicians offered at once: no lead ring
    ticket = report_by_wechat(wx, db)
    drain()
    offers = {t["touser"]: t for t in sent(peer, "TPL-OFFER")}
    assert set(offers) == set(BOUND.values())  # the other three offered never bound WeChat
    nearest = offers[BOUND["tech01"]]
    assert nearest["data"]["keyword1"]["value"] == "宽带故障"
    assert nearest["data"]["keyword2"]["value"] == "100 米"
    assert nearest["data"]["keyword4"]["value"] == ticket.number
    assert nearest["url"] == f"{PUBLIC}/wechat/oauth/start?next={quote(f'/m/tech?ticket={ticket.id}', safe='')}"

    grabbed = wx.post(f"/api/v1/tickets/{ticket.id}/grab", headers=log_in(wx, "tech01"))
    assert grabbed.status_code == 200, grabbed.text
    drain()
    [accepted] = sent(peer, "TPL-ACCEPTED")
    assert accepted["touser"] == OPENID
    assert accepted["data"]["keyword2"]["value"] == "王建军"
    assert accepted["data"]["keyword3"]["value"] == "15025550349"


def test_the_subscriber_hears_of_the_arrival_and_is_asked_to_rate_the_visit(
        wx: TestClient, db: Session, peer: WechatPeer, bound_on_duty: dict[str, int]) -> None:
    ticket = report_by_wechat(wx, db)
    tech01 = log_in(wx, "tech01")
    wx.post(f"/api/v1/tickets/{ticket.id}/grab", headers=tech01)
    arrived = wx.post(f"/api/v1/tickets/{ticket.id}/arrive", headers=tech01,
                      json={"location": {"lat": CENTRE.lat, "lng": CENTRE.lng}})
    assert arrived.status_code == 200, arrived.text
    done = wx.post(f"/api/v1/tickets/{ticket.id}/complete", headers=tech01, json={"note": "更换光猫电源"})
    assert done.status_code == 200, done.text
    drain()
    to_subscriber = [t["template_id"] for t in peer.templates if t["touser"] == OPENID]
    assert to_subscriber == ["TPL-ACCEPTED", "TPL-ARRIVED", "TPL-COMPLETED"]
    [completed] = sent(peer, "TPL-COMPLETED")
    rating_page = quote(f"/m/report?ticket={ticket.id}&rate=1", safe="")
    assert completed["url"] == f"{PUBLIC}/wechat/oauth/start?next={rating_page}"


def test_a_token_expired_mid_send_is_refreshed_once_and_the_send_succeeds(
        wx: TestClient, db: Session, peer: WechatPeer, bound_on_duty: dict[str, int]) -> None:
    ticket = report_by_wechat(wx, db)
    drain()
    assert len(peer.seen("/cgi-bin/stable_token")) == 1  # one token for all the offers
    peer.expire_token()
    wx.post(f"/api/v1/tickets/{ticket.id}/grab", headers=log_in(wx, "tech01"))
    drain()
    assert [t["touser"] for t in sent(peer, "TPL-ACCEPTED")] == [OPENID]
    refreshes = peer.seen("/cgi-bin/stable_token")
    assert len(refreshes) == 2 and refreshes[1].body["force_refresh"] is True
    tokens = [r.params["access_token"] for r in peer.seen("/cgi-bin/message/template/send")][-2:]
    assert tokens[0] != tokens[1]  # the rejected try, then the retry with the new token


def test_a_subscriber_who_unfollowed_is_recorded_and_not_retried(
        wx: TestClient, db: Session, peer: WechatPeer, bound_on_duty: dict[str, int]) -> None:
    ticket = report_by_wechat(wx, db)
    drain()
    peer.unfollow(OPENID)
    wx.post(f"/api/v1/tickets/{ticket.id}/grab", headers=log_in(wx, "tech01"))
    drain()
    [row] = db.scalars(select(OutboxMessage).where(OutboxMessage.topic == "wechat",
                                                   OutboxMessage.payload["kind"].astext == "accepted")).all()
    assert row.sent_at is None and row.attempts == outbox.MAX_ATTEMPTS
    assert row.last_error.startswith("gave up: undeliverable: WeChat 43004")
    tries = len(peer.seen("/cgi-bin/message/template/send"))
    drain()
    assert len(peer.seen("/cgi-bin/message/template/send")) == tries


def test_processes_share_one_token_fetched_once(wechat_cfg: WechatSettings, redis: Redis, peer: WechatPeer) -> None:
    clients = [AccountClient(wechat_cfg, redis) for _ in range(8)]  # as in eight worker processes
    start, tokens = threading.Barrier(len(clients)), []

    def read(client: AccountClient) -> None:
        start.wait()
        tokens.append(client.access_token)

    threads = [threading.Thread(target=read, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(tokens)) == 1 and len(tokens) == 8
    assert len(peer.seen("/cgi-bin/stable_token")) == 1


def test_only_bound_technicians_can_be_force_assigned_when_the_account_is_on(
        wx: TestClient, db: Session, bound_on_duty: dict[str, int]) -> None:
    ticket = report_by_wechat(wx, db)
    headers = log_in(wx, "dispatcher.xl")
    refused = wx.post(f"/api/v1/tickets/{ticket.id}/assign", json={"technician_id": bound_on_duty["tech03"]},
                      headers=headers)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "technician_id"
    assigned = wx.post(f"/api/v1/tickets/{ticket.id}/assign", json={"technician_id": bound_on_duty["tech02"]},
                       headers=headers)
    assert assigned.status_code == 200, assigned.text


def test_an_outage_repaired_once_tells_each_subscriber_once(
        wx: TestClient, db: Session, peer: WechatPeer, settings, bound_on_duty: dict[str, int]) -> None:
    openids = [f"oOutage{n:02d}xxxxxxxxxxxxxxxxxxx" for n in range(3)]
    reported = []
    for n, openid in enumerate(openids):
        subscriber = subscriber_by_openid(db, openid=openid)
        token = token_for(f"subscriber:{subscriber.id}", secret=settings.secret_key, ttl_min=5)
        body = {"type_code": "broadband_fault", "description": "整栋楼断网",
                "contact": {"name": "住户", "phone": f"1391111000{n}"},
                "location": {"lat": CENTRE.lat + n * 1e-4, "lng": CENTRE.lng}}
        reply = wx.post("/api/v1/tickets", json=body, headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 201, reply.text
        reported.append(reply.json()["id"])
    dispatcher = log_in(wx, "dispatcher.xl")
    grouped = wx.post("/api/v1/incidents", json={"ticket_ids": reported}, headers=dispatcher)
    assert grouped.status_code == 201, grouped.text
    lead = grouped.json()["ticket"]["id"]
    tech01 = log_in(wx, "tech01")
    assert wx.post(f"/api/v1/tickets/{lead}/grab", headers=tech01).status_code == 200
    assert wx.post(f"/api/v1/tickets/{lead}/complete", headers=tech01, json={"note": "更换分光器"}).status_code == 200
    drain()
    drain()  # nothing is sent twice

    told = sorted(t["touser"] for t in sent(peer, "TPL-COMPLETED"))
    assert told == sorted(openids)


def test_an_urged_report_reaches_the_bound_technicians_it_is_offered_to(
        whole_first_ring: Settings, wx: TestClient, db: Session, peer: WechatPeer,
        bound_on_duty: dict[str, int]) -> None:  # both bound technicians offered at once: no lead ring
    ticket = report_by_wechat(wx, db)
    urged = wx.post(f"/api/v1/tickets/{ticket.id}/urge", json={"note": "老人在家等着"},
                    headers=log_in(wx, "clerk.xl"))
    assert urged.status_code == 200, urged.text
    drain()
    pushes = {t["touser"]: t for t in sent(peer, "TPL-URGED")}
    assert set(pushes) == set(BOUND.values())
    assert pushes[BOUND["tech01"]]["data"]["remark"]["value"] == "老人在家等着"


def test_a_system_assignment_reaches_its_technician_alone_and_the_subscriber_hears_who(
        wx: TestClient, db: Session, peer: WechatPeer, bound_on_duty: dict[str, int]) -> None:
    dispatcher = log_in(wx, "dispatcher.xl")
    [xl] = wx.get("/api/v1/dispatch-modes", headers=dispatcher).json()
    chosen = wx.put(f"/api/v1/regions/{xl['region_id']}/dispatch-mode", json={"mode": "assign"}, headers=dispatcher)
    assert chosen.status_code == 200, chosen.text
    ticket = report_by_wechat(wx, db)
    drain()
    [assigned] = sent(peer, "TPL-OFFER")
    assert assigned["touser"] == BOUND["tech01"]
    assert assigned["data"]["first"]["value"] == "系统已为您派单"
    assert assigned["data"]["keyword4"]["value"] == ticket.number
    [accepted] = sent(peer, "TPL-ACCEPTED")
    assert accepted["touser"] == OPENID and accepted["data"]["keyword2"]["value"] == "王建军"
