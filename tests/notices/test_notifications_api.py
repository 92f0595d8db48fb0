"""`/api/v1/me/notifications`, the test message and escalation steps' channels over HTTP (problem JSON on bad input)."""

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.notices.models import Notice, NoticeStatus
from dispatch.tickets.models import OutboxMessage
from geo.models import Region

DING_URL = "https://oapi.dingtalk.com/robot/send?access_token=9f8e7d6c5b4a39281706"


def put(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Any:
    return client.put("/api/v1/me/notifications", headers=headers, json=body)


def test_staff_set_channels_and_quiet_hours_and_read_them_back(client, as_user) -> None:
    me = as_user("dispatcher.xl")
    assert client.get("/api/v1/me/notifications", headers=me).json() == {
        "channels": [], "quiet_hours": None, "digest_min": None, "wechat_bound": False}
    reply = put(client, me, {"channels": [
        {"channel": "dingtalk", "target": DING_URL, "secret": "SECabc"},
        {"channel": "sms", "target": "+86 139-4790-0001"},
        {"channel": "email", "target": "xl@example.com", "enabled": False}],
        "quiet_hours": {"start": "22:00", "end": "07:00"}, "digest_min": 15})
    assert reply.status_code == 200, reply.text
    read = client.get("/api/v1/me/notifications", headers=me).json()
    assert read["channels"] == [
        {"channel": "dingtalk", "target": "9f8e7d6c5b4a39281706", "has_secret": True, "enabled": True},
        {"channel": "sms", "target": "13947900001", "has_secret": False, "enabled": True},
        {"channel": "email", "target": "xl@example.com", "has_secret": False, "enabled": False}]
    assert read["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00"} and read["digest_min"] == 15
    # Saved again without the secret (the console never has it): the stored one is kept.
    put(client, me, {"channels": [{"channel": "dingtalk", "target": "9f8e7d6c5b4a39281706"}]})
    assert client.get("/api/v1/me/notifications", headers=me).json()["channels"][0]["has_secret"] is True


def test_bad_channels_are_422_naming_the_field(client, as_user) -> None:
    me = as_user("dispatcher.xl")
    cases = [({"channels": [{"channel": "sms", "target": "12345"}]}, "channels.0.target"),
             ({"channels": [{"channel": "email", "target": "nobody"}]}, "channels.0.target"),
             ({"channels": [{"channel": "dingtalk", "target": "https://oapi.dingtalk.com/robot/send"}]},
              "channels.0.target"),
             ({"channels": [{"channel": "wechat"}]}, "channels.0.target"),  # no WeChat bound
             ({"channels": [{"channel": "sms", "target": "13947900001"}, {"channel": "sms", "target": "13947900002"}]},
              "channels.1.channel"),
             ({"channels": [{"channel": "pager", "target": "1"}]}, "channels.0.channel"),
             ({"quiet_hours": {"start": "22:00", "end": "22:00"}}, "quiet_hours"),
             ({"digest_min": 1}, "digest_min")]
    for body, field in cases:
        reply = put(client, me, body)
        assert reply.status_code == 422, (body, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json")
        assert any(e["field"].endswith(field) for e in reply.json()["errors"]), (body, reply.json())


def test_technicians_have_no_staff_notices(client, as_user) -> None:
    reply = client.get("/api/v1/me/notifications", headers=as_user("tech01"))
    assert reply.status_code == 403 and reply.json()["code"] == "forbidden"


def test_a_bound_wechat_is_a_channel(client, as_user, db: Session) -> None:
    db.scalars(select(User).where(User.username == "manager.xl")).one().wechat_openid = "oManagerXl0001"
    db.flush()
    me = as_user("manager.xl")
    assert put(client, me, {"channels": [{"channel": "wechat"}]}).status_code == 200
    assert client.get("/api/v1/me/notifications", headers=me).json()["wechat_bound"] is True


def test_a_test_message_is_one_queued_notice_per_enabled_channel(client, as_user, db: Session) -> None:
    me = as_user("clerk.xl")
    reply = client.post("/api/v1/me/notifications/test", headers=me, json={})
    assert reply.status_code == 409 and reply.json()["code"] == "no_notice_channel"
    put(client, me, {"channels": [{"channel": "sms", "target": "13947900003"},
                                  {"channel": "email", "target": "clerk@example.com", "enabled": False}]})
    reply = client.post("/api/v1/me/notifications/test", headers=me, json={})
    assert reply.status_code == 201, reply.text
    [notice] = reply.json()["items"]
    assert (notice["channel"], notice["kind"], notice["status"]) == ("sms", "test", "queued")
    outbox = db.scalars(select(OutboxMessage).where(OutboxMessage.topic == "notice.sms")).all()
    assert [row.payload for row in outbox] == [{"notice_id": notice["id"]}]
    assert db.get_one(Notice, notice["id"]).status is NoticeStatus.QUEUED


def test_escalation_steps_take_channels_and_default_to_none(client, as_user, db: Session) -> None:
    admin = as_user("admin")
    grid = db.scalar(select(Region.id).where(Region.code == "XL-G02"))
    reply = client.put(f"/api/v1/regions/{grid}/escalation", headers=admin, json={"steps": [
        {"title": "网格值机员", "role": "dispatcher", "reach": "grid", "delay_min": 0, "channels": ["dingtalk", "sms"]},
        {"title": "分公司值机员", "role": "dispatcher", "reach": "branch", "delay_min": 15}]})
    assert reply.status_code == 200, reply.text
    read = client.get(f"/api/v1/regions/{grid}/escalation", headers=admin).json()
    assert [s["channels"] for s in read["steps"]] == [["dingtalk", "sms"], []]
    reply = client.put(f"/api/v1/regions/{grid}/escalation", headers=admin, json={"steps": [
        {"title": "x", "role": "dispatcher", "reach": "grid", "delay_min": 0, "channels": ["fax"]}]})
    assert reply.status_code == 422 and "steps.0.channels.0" in reply.json()["errors"][0]["field"]


def test_a_tickets_notices_are_listed_for_staff_in_scope_only(client, as_user) -> None:
    dispatcher = as_user("dispatcher.xl")
    body = {"type_code": "broadband_fault", "description": "断网", "location": {"lat": 43.935, "lng": 116.08},
            "contact": {"name": "张三", "phone": "13900000001"}}
    ticket = client.post("/api/v1/tickets", headers=dispatcher, json=body).json()
    assert client.get(f"/api/v1/tickets/{ticket['id']}/notices", headers=dispatcher).json() == {"items": []}
    assert client.get(f"/api/v1/tickets/{ticket['id']}/notices", headers=as_user("dispatcher.eh")).status_code == 404
