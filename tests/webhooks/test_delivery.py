"""Webhook deliveries end to end: tickets committed through the API, the outbox drained, deliveries posted
by the worker's job to a real receiver on loopback that checks every signature."""

import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import SimpleWorker
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from dispatch.app import create_app
from dispatch.audit.models import AuditAction, AuditEvent
from dispatch.kernel.queues import queue
from dispatch.kernel.settings import Settings, WebhookSettings, get_settings
from dispatch.tickets import notify, outbox
from dispatch.webhooks import jobs, sender
from dispatch.webhooks.models import DeliveryState, Webhook, WebhookDelivery
from geo.models import Region
from tests.conftest import XL_CENTRE, log_in
from tests.webhooks.receiver import Receiver, receiving

EH_POINT = {"lat": 43.6577, "lng": 111.9584}
EVENTS = ["ticket.created", "ticket.prioritized", "ticket.invalidated"]
_phones = itertools.count(1)


@pytest.fixture
def cfg() -> WebhookSettings:
    return WebhookSettings(allow_private_urls=True, timeout_s=5.0)


@pytest.fixture
def api(settings: Settings, cfg: WebhookSettings, committed_db: Engine, redis: Redis,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app committing for real (its lifespan registers the feed and webhook channels); the worker's
    jobs read the same webhook settings from the environment."""
    monkeypatch.setattr(notify, "_CHANNELS", {})
    monkeypatch.setattr(notify, "_WRITERS", {})
    monkeypatch.setenv("WEBHOOKS__ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()  # the job reads the process settings: read them again, with the variable
    with TestClient(create_app(settings.model_copy(update={"webhooks": cfg})), raise_server_exceptions=False) as client:
        yield client
    get_settings.cache_clear()


def region_id(engine: Engine, code: str) -> int:
    with Session(engine) as session:
        return session.scalars(select(Region.id).where(Region.code == code)).one()


def webhook(api: TestClient, receiver: Receiver, *, regions: list[int], types: list[str] = EVENTS) -> int:
    made = api.post("/api/v1/webhooks", headers=log_in(api, "admin"),
                    json={"url": receiver.url, "event_types": types, "region_ids": regions,
                          "secret": receiver.secret})
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def ticket_with_three_events(api: TestClient, *, dispatcher: str = "dispatcher.xl",
                             at: dict[str, float] = XL_CENTRE) -> int:
    """created, prioritized, invalidated: three events of one ticket, in this order."""
    headers = log_in(api, dispatcher)
    made = api.post("/api/v1/tickets", headers=headers, json={
        "type_code": "broadband_fault", "description": "光猫红灯", "location": at,
        "contact": {"name": "张三", "phone": f"1390000{next(_phones):04d}"}})
    assert made.status_code == 201, made.text
    ticket_id = int(made.json()["id"])
    assert api.patch(f"/api/v1/tickets/{ticket_id}", headers=headers,
                     json={"priority": "P1", "reason": "医院"}).status_code == 200
    assert api.post(f"/api/v1/tickets/{ticket_id}/invalidate", headers=headers,
                    json={"reason": "测试"}).status_code == 200
    return ticket_id


def fan_out() -> None:
    """The outbox drain, as the worker runs it: each feed event becomes its deliveries."""
    outbox.drain_outbox_job()


def run_worker() -> None:
    SimpleWorker([queue()], connection=queue().connection).work(burst=True)


def deliveries(engine: Engine, webhook_id: int) -> list[WebhookDelivery]:
    with Session(engine) as session:
        return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
                                    .order_by(WebhookDelivery.id)))


def hook(engine: Engine, webhook_id: int) -> Webhook:
    with Session(engine) as session:
        return session.get_one(Webhook, webhook_id)


def send(cfg: WebhookSettings, now: datetime | None = None) -> int:
    with sender.client(cfg) as http:
        return jobs.send_due(http, cfg=cfg, now=now)


def test_the_worker_delivers_each_event_signed_once_in_order_per_ticket(
        api: TestClient, committed_db: Engine) -> None:
    with receiving(Receiver()) as receiver:
        webhook_id = webhook(api, receiver, regions=[region_id(committed_db, "XL")])
        tickets = [ticket_with_three_events(api) for _ in range(3)]
        fan_out()
        run_worker()  # the send job the fan-out's commit enqueued

        assert receiver.forged == []
        assert receiver.types_by_ticket() == {t: EVENTS for t in tickets}
        assert len(set(receiver.event_ids())) == len(receiver.accepted) == 9
        first = receiver.accepted[0]
        assert set(first) == {"id", "type", "created_at", "data"}
        assert first["data"]["number"] and first["data"]["branch_id"] == region_id(committed_db, "XL")
        assert {h["x-fieldpool-event-id"] for h in receiver.headers} == set(receiver.event_ids())
        assert all(d.state is DeliveryState.DELIVERED and d.attempts == 1 and d.last_status == 200
                   for d in deliveries(committed_db, webhook_id))

        fan_out()  # the outbox delivering an event twice (at least once) adds no delivery
        run_worker()
        assert len(receiver.accepted) == 9


def test_a_receiver_failing_five_times_gets_every_event_once_in_order_with_backoff(
        api: TestClient, committed_db: Engine, cfg: WebhookSettings) -> None:
    with receiving(Receiver(fail_first=5)) as receiver:
        webhook_id = webhook(api, receiver, regions=[region_id(committed_db, "XL")])
        tickets = [ticket_with_three_events(api) for _ in range(4)]
        fan_out()
        now = datetime.now(UTC)
        waits: list[float] = []
        for _ in range(10):
            send(cfg, now)
            retry_at = hook(committed_db, webhook_id).retry_at
            if retry_at is None:
                break
            waits.append((retry_at - now).total_seconds())
            now = retry_at

        assert receiver.refused == 5 and receiver.forged == []
        # Exponential backoff between the failed tries: the first may fail several deliveries in flight at
        # once, each later one is a single probe.
        assert waits == [2 ** n for n in range(1, len(waits) + 1)] and len(waits) >= 2
        assert receiver.types_by_ticket() == {t: EVENTS for t in tickets}
        assert len(set(receiver.event_ids())) == len(receiver.accepted) == 12
        sent = deliveries(committed_db, webhook_id)
        assert sum(d.attempts for d in sent) == 12 + 5
        assert all(d.state is DeliveryState.DELIVERED for d in sent)
        recovered = hook(committed_db, webhook_id)
        assert (recovered.consecutive_failures, recovered.failing_since, recovered.disabled_at) == (0, None, None)


def test_two_senders_at_once_deliver_each_event_once_and_keep_each_tickets_order(
        api: TestClient, committed_db: Engine, cfg: WebhookSettings) -> None:
    small = cfg.model_copy(update={"batch": 4, "concurrency": 4})
    with receiving(Receiver()) as receiver:
        webhook(api, receiver, regions=[region_id(committed_db, "XL")])
        tickets = [ticket_with_three_events(api) for _ in range(8)]
        fan_out()
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def sender_thread() -> None:
            try:
                start.wait()
                send(small)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=sender_thread) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        send(small)  # what a sender left as it ended (the other held the ticket's earlier event)

        assert errors == []
        assert len(set(receiver.event_ids())) == len(receiver.accepted) == 24
        assert receiver.types_by_ticket() == {t: EVENTS for t in tickets}


def test_a_branch_webhook_hears_only_its_branch_and_only_its_types(api: TestClient, committed_db: Engine) -> None:
    with receiving(Receiver()) as xl_receiver, receiving(Receiver()) as eh_receiver:
        webhook(api, xl_receiver, regions=[region_id(committed_db, "XL")])
        webhook(api, eh_receiver, regions=[region_id(committed_db, "EH")], types=["ticket.created"])
        in_xl = ticket_with_three_events(api)
        in_eh = ticket_with_three_events(api, dispatcher="dispatcher.eh", at=EH_POINT)
        fan_out()
        run_worker()

        assert xl_receiver.types_by_ticket() == {in_xl: EVENTS}
        assert eh_receiver.types_by_ticket() == {in_eh: ["ticket.created"]}


def test_a_delivery_is_resent_on_request_with_the_same_event_and_a_fresh_signature(
        api: TestClient, committed_db: Engine) -> None:
    with receiving(Receiver()) as receiver:
        webhook_id = webhook(api, receiver, regions=[region_id(committed_db, "XL")])
        ticket_with_three_events(api)
        fan_out()
        run_worker()
        admin = log_in(api, "admin")
        listed = api.get(f"/api/v1/webhooks/{webhook_id}/deliveries", headers=admin, params={"limit": 2})
        assert listed.status_code == 200, listed.text
        assert [d["event_type"] for d in listed.json()["items"]] == ["ticket.invalidated", "ticket.prioritized"]
        assert listed.json()["next_cursor"] is not None
        created = deliveries(committed_db, webhook_id)[0]

        again = api.post(f"/api/v1/webhooks/{webhook_id}/deliveries/{created.id}/redeliver", headers=admin)
        assert again.status_code == 202, again.text
        assert again.json()["state"] == "pending" and again.json()["redelivery_of"] == created.id
        run_worker()  # enqueued by the request's commit

        assert receiver.forged == []
        assert receiver.event_ids().count(created.event_id) == 2
        assert receiver.accepted[-1] == receiver.accepted[0]  # the same body, byte for byte in JSON
        assert api.post(f"/api/v1/webhooks/{webhook_id}/deliveries/999999/redeliver",
                        headers=admin).status_code == 404
        assert api.post(f"/api/v1/webhooks/{webhook_id}/deliveries/{created.id}/redeliver",
                        headers=log_in(api, "dispatcher.xl")).status_code == 403


def test_a_webhook_failing_for_a_day_is_disabled_with_a_notice_and_its_events_given_up(
        api: TestClient, committed_db: Engine, cfg: WebhookSettings) -> None:
    with receiving(Receiver(always_fail=True)) as receiver:
        webhook_id = webhook(api, receiver, regions=[region_id(committed_db, "XL")])
        ticket_with_three_events(api)
        fan_out()
        first = datetime.now(UTC)
        now = first
        for _ in range(100):
            send(cfg, now)
            if hook(committed_db, webhook_id).disabled_at is not None:
                break
            now = max(hook(committed_db, webhook_id).retry_at or now, now + timedelta(seconds=1))

        disabled = hook(committed_db, webhook_id)
        assert disabled.disabled_at is not None and disabled.disabled_reason.startswith("failing since")
        assert timedelta(hours=24) <= disabled.disabled_at - first <= timedelta(hours=25)
        assert receiver.refused < cfg.disable_after_failures  # backed off: probed, not flooded
        with Session(committed_db) as session:
            [notice] = session.scalars(select(AuditEvent).where(AuditEvent.action == AuditAction.WEBHOOK_DISABLED))
        assert notice.target_id == webhook_id and notice.actor_label == "webhooks"
        assert "HTTP 500" in notice.detail["last_error"]

        tried = receiver.refused
        send(cfg, now + timedelta(hours=1))
        assert receiver.refused == tried  # nothing goes to a disabled webhook
        assert {d.state for d in deliveries(committed_db, webhook_id)} == {DeliveryState.FAILED}  # past 24 h

        shown = api.get(f"/api/v1/webhooks/{webhook_id}", headers=log_in(api, "admin")).json()
        assert shown["enabled"] is False and shown["disabled_reason"] == disabled.disabled_reason
        enabled = api.post(f"/api/v1/webhooks/{webhook_id}/enable", headers=log_in(api, "admin"))
        assert enabled.status_code == 200 and enabled.json()["enabled"] is True
        assert enabled.json()["consecutive_failures"] == 0


def test_fifty_failures_in_a_row_disable_a_webhook(api: TestClient, committed_db: Engine,
                                                   cfg: WebhookSettings) -> None:
    quick = cfg.model_copy(update={"backoff_cap_s": 1})
    with receiving(Receiver(always_fail=True)) as receiver:
        webhook_id = webhook(api, receiver, regions=[region_id(committed_db, "XL")])
        ticket_with_three_events(api)
        fan_out()
        now = datetime.now(UTC)
        for _ in range(60):
            send(quick, now)
            now += timedelta(seconds=1)

        assert hook(committed_db, webhook_id).disabled_reason == "50 failed tries in a row"
        assert receiver.refused <= 50 + 3  # the first try may have had each ticket's first event in flight


def test_a_delivery_to_an_address_that_turned_private_is_refused_without_a_request(
        api: TestClient, committed_db: Engine, cfg: WebhookSettings) -> None:
    with receiving(Receiver()) as receiver:
        webhook_id = webhook(api, receiver, regions=[region_id(committed_db, "XL")])
        ticket_with_three_events(api)
        fan_out()
        send(cfg.model_copy(update={"allow_private_urls": False}))

        assert receiver.headers == []
        [first, *_] = deliveries(committed_db, webhook_id)
        assert first.state is DeliveryState.PENDING and first.last_error is not None
        assert first.last_error.startswith("refused: host 127.0.0.1 resolves to a non-public address")

