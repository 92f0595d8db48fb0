"""The webhooks API: admins only, secrets shown once, URLs that could reach our own network refused."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.audit.models import AuditAction, AuditEvent
from dispatch.tickets.lifecycle import FEED_EVENT
from dispatch.webhooks.schemas import EventType
from tests.api.test_scope import region_id
from tests.conftest import log_in

WEBHOOKS = "/api/v1/webhooks"
PUBLIC_URL = "https://1.2.3.4/fieldpool/events"  # a public address literal: no DNS needed, never called here


def make(client: TestClient, db: Session, **body: object) -> dict:
    reply = client.post(WEBHOOKS, headers=log_in(client, "admin"), json={
        "url": PUBLIC_URL, "event_types": ["ticket.created"], "region_ids": [region_id(db, "XL")], **body})
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_an_admin_makes_a_webhook_whose_secret_is_shown_once_and_audited(client: TestClient, db: Session) -> None:
    made = make(client, db, event_types=["ticket.timed_out", "ticket.created", "ticket.created"])
    assert made["secret"].startswith("whsec_") and len(made["secret"]) > 40
    assert made["event_types"] == ["ticket.created", "ticket.timed_out"] and made["enabled"] is True

    listed = client.get(WEBHOOKS, headers=log_in(client, "admin")).json()
    assert [w["id"] for w in listed["items"]] == [made["id"]] and "secret" not in listed["items"][0]
    assert "secret" not in client.get(f"{WEBHOOKS}/{made['id']}", headers=log_in(client, "admin")).json()
    given = make(client, db, secret="a-secret-of-our-own-choosing")
    assert given["secret"] == "a-secret-of-our-own-choosing"
    [audit] = db.scalars(select(AuditEvent).where(AuditEvent.action == AuditAction.WEBHOOK_CREATED,
                                                  AuditEvent.target_id == made["id"])).all()
    assert audit.actor_label == "admin" and audit.detail["url"] == PUBLIC_URL


def test_only_admins_manage_webhooks(client: TestClient, db: Session) -> None:
    made = make(client, db)
    for username in ("dispatcher.xl", "payroll", "tech01"):
        headers = log_in(client, username)
        assert client.get(WEBHOOKS, headers=headers).status_code == 403
        assert client.post(WEBHOOKS, headers=headers, json={
            "url": PUBLIC_URL, "event_types": ["ticket.created"], "region_ids": [1]}).status_code == 403
        assert client.delete(f"{WEBHOOKS}/{made['id']}", headers=headers).status_code == 403
    assert client.get(WEBHOOKS).status_code == 401


def test_a_deleted_webhook_is_gone_with_its_deliveries(client: TestClient, db: Session) -> None:
    made = make(client, db)
    admin = log_in(client, "admin")
    assert client.delete(f"{WEBHOOKS}/{made['id']}", headers=admin).status_code == 204
    assert client.get(f"{WEBHOOKS}/{made['id']}", headers=admin).status_code == 404
    assert client.get(f"{WEBHOOKS}/{made['id']}/deliveries", headers=admin).status_code == 404
    assert client.delete(f"{WEBHOOKS}/{made['id']}", headers=admin).status_code == 404
    assert db.scalars(select(AuditEvent).where(AuditEvent.action == AuditAction.WEBHOOK_DELETED)).one()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:6379/", "http://localhost/hook", "http://[::1]/hook", "http://10.1.2.3/hook",
    "http://192.168.1.10/hook", "http://172.16.0.1/hook", "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0/", "http://2130706433/", "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/",
    "http://[fd00::1]/", "http://224.0.0.1/",
])
def test_a_url_reaching_a_non_public_address_is_refused(client: TestClient, db: Session, url: str) -> None:
    reply = client.post(WEBHOOKS, headers=log_in(client, "admin"), json={
        "url": url, "event_types": ["ticket.created"], "region_ids": [region_id(db, "XL")]})
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["errors"]
    assert error["field"] == "url" and "non-public address" in error["message"]


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://1.2.3.4/hook", "only http and https"), ("file:///etc/passwd", "only http and https"),
    ("https://user:pw@1.2.3.4/hook", "no credentials"), ("https:///hook", "names no host"),
    ("https://1.2.3.4/hook#x", "no #fragment"), ("https://1.2.3.4:99999/", "not a URL"),
    ("https://no-such-host.invalid/hook", "does not resolve"),
])
def test_a_url_that_is_not_a_plain_http_one_is_refused(client: TestClient, db: Session, url: str, says: str) -> None:
    reply = client.post(WEBHOOKS, headers=log_in(client, "admin"), json={
        "url": url, "event_types": ["ticket.created"], "region_ids": [region_id(db, "XL")]})
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["errors"]
    assert error["field"] == "url" and says in error["message"]


@pytest.mark.parametrize(("body", "field"), [
    ({"event_types": ["ticket.exploded"]}, "event_types.0"), ({"event_types": []}, "event_types"),
    ({"region_ids": []}, "region_ids"), ({"region_ids": [999999]}, "region_ids"),
    ({"secret": "short"}, "secret"), ({"url": "http://1.2.3.4/\u0000"}, "url"),
])
def test_bad_input_names_its_field(client: TestClient, db: Session, body: dict, field: str) -> None:
    reply = client.post(WEBHOOKS, headers=log_in(client, "admin"), json={
        "url": PUBLIC_URL, "event_types": ["ticket.created"], "region_ids": [region_id(db, "XL")], **body})
    assert reply.status_code == 422, reply.text
    assert reply.json()["errors"][0]["field"] == field


def test_every_lifecycle_event_on_the_feed_can_be_subscribed_to() -> None:
    assert set(FEED_EVENT.values()) <= {e.value for e in EventType}
