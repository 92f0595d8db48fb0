"""The server URL through the real app: verification, messages and events, the conversation, bad input."""

import time
from urllib.parse import urlencode

import pytest
import structlog
import structlog.testing
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from wechatpy.crypto import WeChatCrypto

import wechat.router
from dispatch.accounts.models import Subscriber
from dispatch.tickets.models import Attachment, Ticket
from geo import crs, regions
from geo.distance import haversine_m
from geo.latlng import LatLng
from geo.points import from_wkb
from tests.wechat.peer import APP_ID, WechatPeer
from tests.wechat.wire import (
    AES_KEY,
    TOKEN,
    drain,
    message_xml,
    post_message,
    reply_content,
    run_jobs,
    signed_query,
)

INSIDE = LatLng(43.9350, 116.0800)  # Xilinhot, inside a demo grid (WGS-84)
FAR_AWAY = LatLng(45.5, 119.9)  # grassland far from every grid
OPENID = "oSubscriber0000000000000001"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(2000)


def location(openid: str, point_wgs84: LatLng, msg_id: int) -> str:
    gcj = crs.wgs84_to_gcj02(point_wgs84)  # what a phone in China reports
    return message_xml(openid, "location", msg_id, Location_X=gcj.lat, Location_Y=gcj.lng, Scale=15,
                       Label="锡林浩特市某小区")


def tickets_of(db: Session, openid: str) -> list[Ticket]:
    return list(db.scalars(select(Ticket).join(Subscriber, Subscriber.id == Ticket.subscriber_id)
                           .where(Subscriber.openid == openid).order_by(Ticket.id)))


def test_server_verification_echoes_echostr(wx: TestClient) -> None:
    reply = wx.get(f"/wechat/callback?{urlencode({**signed_query(), 'echostr': '5837397520665436492'})}")
    assert reply.status_code == 200
    assert reply.text == "5837397520665436492"


def test_verification_with_a_wrong_signature_is_refused(wx: TestClient) -> None:
    query = {**signed_query(token="not-our-token"), "echostr": "x"}
    reply = wx.get(f"/wechat/callback?{urlencode(query)}")
    assert reply.status_code == 403
    assert reply.json()["code"] == "bad_signature"


def test_without_an_account_the_server_url_answers_503(client: TestClient) -> None:
    reply = client.post(f"/wechat/callback?{urlencode(signed_query())}", content=b"<xml/>")
    assert reply.status_code == 503
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == "wechat_off"


def test_following_the_account_welcomes_with_the_menu_and_knows_the_subscriber(wx: TestClient, db: Session) -> None:
    reply = post_message(wx, message_xml(OPENID, "event", Event="subscribe"))
    assert "报障" in reply_content(reply)
    assert db.scalar(select(Subscriber.id).where(Subscriber.openid == OPENID)) is not None


def test_a_location_then_a_few_words_become_a_ticket_in_the_right_grid(wx: TestClient, db: Session) -> None:
    first = reply_content(post_message(wx, location(OPENID, INSIDE, 1001)))
    assert "已收到您的位置" in first and "描述" in first
    done = reply_content(post_message(wx, message_xml(OPENID, "text", 1002,
                                                      Content="宽带上不了网，光猫红灯闪 13912345678")))
    [ticket] = tickets_of(db, OPENID)
    assert ticket.number in done
    # GCJ-02 from WeChat converted back: the ticket lies where the subscriber stands.
    assert haversine_m(from_wkb(ticket.location), INSIDE) < 1.0
    assert ticket.region_id == regions.place(db, INSIDE).grid_id
    assert ticket.source == "wechat" and ticket.contact_phone == "13912345678"
    assert ticket.description == "宽带上不了网，光猫红灯闪"
    assert not ticket.outside_area


def test_words_without_a_phone_ask_for_it_and_the_report_goes_on_when_it_comes(wx: TestClient, db: Session) -> None:
    reply_content(post_message(wx, location(OPENID, INSIDE, 2001)))
    asked = reply_content(post_message(wx, message_xml(OPENID, "text", 2002, Content="电视没有信号")))
    assert "手机号" in asked and not tickets_of(db, OPENID)
    reply_content(post_message(wx, message_xml(OPENID, "text", 2003, Content="13800001234")))
    [ticket] = tickets_of(db, OPENID)
    assert ticket.description == "电视没有信号" and ticket.contact_phone == "13800001234"
    assert db.scalar(select(Subscriber.phone).where(Subscriber.openid == OPENID)) == "13800001234"


def test_words_before_any_location_ask_for_the_location(wx: TestClient, db: Session) -> None:
    asked = reply_content(post_message(wx, message_xml(OPENID, "text", 3001, Content="宽带断了 13912345678")))
    assert "位置" in asked and not tickets_of(db, OPENID)
    reply_content(post_message(wx, location(OPENID, INSIDE, 3002)))
    assert len(tickets_of(db, OPENID)) == 1


def test_the_location_event_counts_as_where_the_subscriber_stands(wx: TestClient, db: Session) -> None:
    gcj = crs.wgs84_to_gcj02(INSIDE)
    silent = post_message(wx, message_xml(OPENID, "event", Event="LOCATION", Latitude=gcj.lat, Longitude=gcj.lng,
                                          Precision=30.0))
    assert silent.text == "success"
    reply_content(post_message(wx, message_xml(OPENID, "text", 4001, Content="光猫不亮 13912345678")))
    [ticket] = tickets_of(db, OPENID)
    assert haversine_m(from_wkb(ticket.location), INSIDE) < 1.0


def test_a_redelivered_message_is_handled_once(wx: TestClient, db: Session) -> None:
    post_message(wx, location(OPENID, INSIDE, 5001))
    words = message_xml(OPENID, "text", 5002, Content="宽带上不了网 13912345678")
    assert "报修成功" in reply_content(post_message(wx, words))
    again = post_message(wx, words)  # WeChat got no answer in 5 s and sends the same MsgId again
    assert again.status_code == 200 and again.text == "success"
    assert len(tickets_of(db, OPENID)) == 1


def test_a_location_outside_every_grid_is_answered_politely_and_reaches_a_dispatcher(wx: TestClient,
                                                                                   db: Session) -> None:
    polite = reply_content(post_message(wx, location(OPENID, FAR_AWAY, 6001)))
    assert "不在我们的服务网格内" in polite and "调度员" in polite
    reply_content(post_message(wx, message_xml(OPENID, "text", 6002, Content="宽带坏了 13912345678")))
    [ticket] = tickets_of(db, OPENID)
    assert ticket.outside_area  # intake placed it in the nearest branch, flagged for the dispatchers there


def test_a_report_intake_refuses_gets_an_apology_and_nothing_half_written(wx: TestClient, wx_app: FastAPI,
                                                                         db: Session) -> None:
    settings = wx_app.state.settings
    wx_app.state.settings = settings.model_copy(update={"wechat": settings.wechat.model_copy(
        update={"report_type_code": "no_such_type"})})
    post_message(wx, location(OPENID, INSIDE, 6501))
    sorry = reply_content(post_message(wx, message_xml(OPENID, "text", 6502, Content="宽带坏了 13912345678")))
    assert "抱歉" in sorry and not tickets_of(db, OPENID)
    assert db.scalar(select(Subscriber.phone).where(Subscriber.openid == OPENID)) is None


def test_progress_by_word_and_by_ticket_number(wx: TestClient, db: Session) -> None:
    assert "没有进行中的报修单" in reply_content(post_message(wx, message_xml(OPENID, "text", 7001, Content="进度")))
    post_message(wx, location(OPENID, INSIDE, 7002))
    post_message(wx, message_xml(OPENID, "text", 7003, Content="宽带断了 13912345678"))
    [ticket] = tickets_of(db, OPENID)
    by_word = reply_content(post_message(wx, message_xml(OPENID, "text", 7004, Content="进度")))
    by_number = reply_content(post_message(wx, message_xml(OPENID, "text", 7005, Content=ticket.number.lower())))
    assert f"{ticket.number}：等待维修员接单" in by_word
    assert by_number == by_word


def test_the_report_menu_starts_a_report(wx: TestClient) -> None:
    reply = reply_content(post_message(wx, message_xml(OPENID, "event", Event="CLICK", EventKey="REPORT")))
    assert "开始报修" in reply and "位置" in reply


def test_a_photo_reaches_the_subscribers_open_ticket_through_a_job(wx: TestClient, db: Session, redis: Redis,
                                                                   peer: WechatPeer) -> None:
    post_message(wx, location(OPENID, INSIDE, 8001))
    post_message(wx, message_xml(OPENID, "text", 8002, Content="宽带断了 13912345678"))
    [ticket] = tickets_of(db, OPENID)
    peer.media_file("MEDIA-1", JPEG)
    reply = reply_content(post_message(wx, message_xml(OPENID, "image", 8003, PicUrl="http://mmbiz/x",
                                                       MediaId="MEDIA-1")))
    assert ticket.number in reply
    drain()  # the outbox hands the download to rq once the message's transaction is committed
    run_jobs(redis)
    [attachment] = db.scalars(select(Attachment).where(Attachment.ticket_id == ticket.id)).all()
    assert attachment.kind == "image" and attachment.size == len(JPEG)
    assert [r.params["media_id"] for r in peer.seen("/cgi-bin/media/get")] == ["MEDIA-1"]


def test_a_photo_sent_first_is_attached_to_the_report_it_starts(wx: TestClient, db: Session, redis: Redis,
                                                                peer: WechatPeer) -> None:
    peer.media_file("MEDIA-2", JPEG)
    asked = reply_content(post_message(wx, message_xml(OPENID, "image", 9001, PicUrl="http://mmbiz/x",
                                                       MediaId="MEDIA-2")))
    assert "位置" in asked
    post_message(wx, message_xml(OPENID, "text", 9002, Content="13912345678"))
    post_message(wx, location(OPENID, INSIDE, 9003))
    [ticket] = tickets_of(db, OPENID)
    drain()
    run_jobs(redis)
    assert db.scalar(select(func.count()).select_from(Attachment).where(Attachment.ticket_id == ticket.id)) == 1


def test_safe_mode_message_gets_an_encrypted_reply(wx: TestClient) -> None:
    query = signed_query()
    reply = post_message(wx, message_xml(OPENID, "text", 10001, Content="进度"), encrypted=True, **query)
    assert reply.status_code == 200
    crypto = WeChatCrypto(TOKEN, AES_KEY, APP_ID)
    signature = reply.text.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    opened = crypto.decrypt_message(reply.text, signature, query["timestamp"], query["nonce"])
    assert "没有进行中的报修单" in opened


# --- bad input: refused with the right status, logged, nothing created ----------------------

def assert_refused(reply_status: int, reply: object, db: Session, status: int, code: str) -> None:
    assert reply_status == status
    assert reply.json()["code"] == code  # type: ignore[attr-defined]
    assert db.scalar(select(Subscriber.id).where(Subscriber.openid == OPENID)) is None


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> structlog.testing.CapturingLogger:
    """What the server URL logs, captured (its logger is cached at first use, so it is swapped)."""
    capture = structlog.testing.CapturingLogger()
    monkeypatch.setattr(wechat.router, "log", structlog.wrap_logger(capture, processors=[]))
    return capture


def refused_codes(capture: structlog.testing.CapturingLogger) -> list[str]:
    return [call.kwargs["code"] for call in capture.calls if call.kwargs["event"] == "wechat_delivery_refused"]


def test_a_message_with_a_wrong_signature_is_refused_and_logged(wx: TestClient, db: Session,
                                                              refusals: structlog.testing.CapturingLogger) -> None:
    reply = post_message(wx, message_xml(OPENID, "event", Event="subscribe"), **signed_query(token="guessed"))
    assert_refused(reply.status_code, reply, db, 403, "bad_signature")
    assert refused_codes(refusals) == ["bad_signature"]


def test_an_old_delivery_is_refused_as_a_replay(wx: TestClient, db: Session) -> None:
    reply = post_message(wx, message_xml(OPENID, "event", Event="subscribe"),
                         **signed_query(timestamp=int(time.time()) - 600))
    assert_refused(reply.status_code, reply, db, 403, "stale_delivery")


def test_an_oversized_body_is_refused_before_parsing(wx: TestClient, db: Session,
                                                    refusals: structlog.testing.CapturingLogger) -> None:
    reply = post_message(wx, message_xml(OPENID, "text", 11001, Content="长" * 40_000))
    assert_refused(reply.status_code, reply, db, 413, "body_too_large")
    assert refused_codes(refusals) == ["body_too_large"]


@pytest.mark.parametrize("body", [
    f'<!DOCTYPE xml [<!ENTITY who "{OPENID}">]><xml><ToUserName>a</ToUserName><FromUserName>&who;</FromUserName>'
    "<CreateTime>1</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>",
    "<xml><FromUserName>x</FromUserName>",
    "<xml><ToUserName>a</ToUserName></xml>",
])
def test_malformed_xml_or_entities_are_refused(wx: TestClient, db: Session, body: str) -> None:
    reply = post_message(wx, body)
    assert_refused(reply.status_code, reply, db, 400, "malformed_delivery")


@pytest.mark.parametrize(("lat", "lng"), [("north", "116.08"), ("91", "116.08"), ("nan", "116.08")])
def test_a_location_that_is_not_a_place_is_refused(wx: TestClient, db: Session, lat: str, lng: str) -> None:
    reply = post_message(wx, message_xml(OPENID, "location", 12001, Location_X=lat, Location_Y=lng, Scale=15))
    assert reply.status_code == 400 and reply.json()["code"] == "malformed_delivery"
    assert not tickets_of(db, OPENID)


def test_a_safe_mode_delivery_with_a_forged_msg_signature_is_refused(wx: TestClient, db: Session) -> None:
    reply = post_message(wx, message_xml(OPENID, "event", Event="subscribe"), encrypted=True,
                         msg_signature="0" * 40)
    assert_refused(reply.status_code, reply, db, 403, "bad_signature")
