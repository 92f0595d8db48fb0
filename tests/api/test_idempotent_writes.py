"""A phone's queued taps, sent again after a lost answer: each lifecycle write honours Idempotency-Key."""

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.tickets.models import Attachment, TicketEvent
from tests.api.test_attachments import png, upload
from tests.conftest import on_duty

Headers = Callable[[str], dict[str, str]]
XL_POINT = {"lat": 43.935, "lng": 116.08}
HOLDER = "tech04"


def held_ticket(client: TestClient, as_user: Headers, phone: str = "13900004001") -> dict[str, Any]:
    """A ticket the technician HOLDER grabbed, as the phone has it before going into a basement."""
    reply = client.post("/api/v1/tickets", headers=as_user("dispatcher.xl"), json={
        "type_code": "broadband_fault", "description": "地下室断网", "location": XL_POINT,
        "contact": {"name": "张三", "phone": phone}})
    assert reply.status_code == 201, reply.text
    ticket = reply.json()
    on_duty(client, as_user(HOLDER))
    grabbed = client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=as_user(HOLDER))
    assert grabbed.status_code == 200, grabbed.text
    return ticket


def events(db: Session, ticket_id: int, action: str) -> int:
    return db.scalar(select(func.count()).select_from(TicketEvent).where(
        TicketEvent.ticket_id == ticket_id, TicketEvent.action == action)) or 0


ARRIVE = ("arrive", {"location": {"lat": 43.9351, "lng": 116.0801, "crs": "wgs84"}},
          {"location": {"lat": 43.9, "lng": 116.0, "crs": "wgs84"}})
COMPLETE = ("complete", {"note": "更换光猫", "materials": [], "photos": []},
            {"note": "另一种说法", "materials": [], "photos": []})
RELEASE = ("release", {"reason": "缺少备件"}, {"reason": "车坏了"})


@pytest.mark.parametrize(("verb", "body", "other_body"), [ARRIVE, COMPLETE, RELEASE], ids=["arrive", "complete",
                                                                                           "release"])
def test_a_resent_write_with_its_key_happens_once(client: TestClient, as_user: Headers, db: Session, verb: str,
                                                  body: dict, other_body: dict) -> None:
    ticket = held_ticket(client, as_user)
    headers = {**as_user(HOLDER), "Idempotency-Key": f"phone-{verb}-1"}
    first = client.post(f"/api/v1/tickets/{ticket['id']}/{verb}", json=body, headers=headers)
    again = client.post(f"/api/v1/tickets/{ticket['id']}/{verb}", json=body, headers=headers)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.json()["state"] == first.json()["state"]
    assert again.json()["version"] == first.json()["version"]
    assert events(db, ticket["id"], verb) == 1

    reused = client.post(f"/api/v1/tickets/{ticket['id']}/{verb}", json=other_body, headers=headers)
    assert reused.status_code == 422, reused.text
    assert reused.json()["code"] == "idempotency_key_reused"
    assert reused.json()["errors"][0]["field"] == "Idempotency-Key"
    assert events(db, ticket["id"], verb) == 1


def test_without_a_key_a_second_arrival_is_refused(client: TestClient, as_user: Headers) -> None:
    ticket = held_ticket(client, as_user)
    verb, body, _ = ARRIVE
    assert client.post(f"/api/v1/tickets/{ticket['id']}/{verb}", json=body, headers=as_user(HOLDER)).status_code == 200
    second = client.post(f"/api/v1/tickets/{ticket['id']}/{verb}", json=body, headers=as_user(HOLDER))
    assert second.status_code == 409 and second.json()["code"] == "invalid_transition"


def test_a_key_from_one_ticket_on_another_is_reused(client: TestClient, as_user: Headers) -> None:
    first, second = held_ticket(client, as_user), held_ticket(client, as_user, phone="13900004002")
    headers = {**as_user(HOLDER), "Idempotency-Key": "phone-arrive-7"}
    verb, body, _ = ARRIVE
    assert client.post(f"/api/v1/tickets/{first['id']}/{verb}", json=body, headers=headers).status_code == 200
    reused = client.post(f"/api/v1/tickets/{second['id']}/{verb}", json=body, headers=headers)
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"


def test_a_resent_upload_stores_one_file_and_answers_with_it(client: TestClient, as_user: Headers,
                                                            db: Session) -> None:
    ticket = held_ticket(client, as_user)
    headers = {**as_user(HOLDER), "Idempotency-Key": "phone-photo-1"}
    first = upload(client, ticket["id"], headers, png(2, 2))
    again = upload(client, ticket["id"], headers, png(2, 2))
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json()["id"] == first.json()["id"]
    assert db.scalar(select(func.count()).select_from(Attachment).where(Attachment.ticket_id == ticket["id"])) == 1

    other = upload(client, ticket["id"], headers, png(3, 3))
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


def test_an_upload_after_intake_is_listed_on_the_ticket(client: TestClient, as_user: Headers) -> None:
    ticket = held_ticket(client, as_user)
    stored = upload(client, ticket["id"], as_user(HOLDER), png()).json()
    ref = f"/api/v1/attachments/{stored['id']}"
    seen = client.get(f"/api/v1/tickets/{ticket['id']}", headers=as_user("dispatcher.xl")).json()
    assert seen["attachments"] == [ref]
    assert client.get(ref, headers=as_user("dispatcher.xl")).content == png()

    # The completion names the photo it uploaded: listed once, not twice.
    done = client.post(f"/api/v1/tickets/{ticket['id']}/complete", headers=as_user(HOLDER),
                       json={"note": "更换光猫", "photos": [ref]})
    assert done.status_code == 200, done.text
    assert done.json()["attachments"] == [ref]
