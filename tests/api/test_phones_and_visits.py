"""Mainland mobile numbers are checked at the door; the subscriber's view names who is coming and when."""

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.kernel.settings import Settings
from geo.models import Region
from tests.api.test_idempotent_writes import HOLDER, XL_POINT
from tests.conftest import on_duty, subscriber_headers

Headers = Callable[[str], dict[str, str]]


def report(client: TestClient, headers: dict[str, str], phone: str):
    return client.post("/api/v1/tickets", headers=headers, json={
        "type_code": "broadband_fault", "description": "断网", "location": XL_POINT,
        "contact": {"name": "张三", "phone": phone}})


@pytest.mark.parametrize("phone", ["12345", "0479-8221234", "12912345678", "139123456789", "+8513912345678"])
def test_a_report_with_no_mainland_mobile_is_422_naming_contact_phone(client: TestClient, as_user: Headers,
                                                                      phone: str) -> None:
    reply = report(client, as_user("dispatcher.xl"), phone)
    assert reply.status_code == 422, reply.text
    assert reply.json()["code"] == "validation_error"
    assert [e["field"] for e in reply.json()["errors"]] == ["contact.phone"]


@pytest.mark.parametrize("phone", ["13912345678", "+8619912345678", " 15025550349 "])
def test_a_mainland_mobile_is_taken_with_or_without_86(client: TestClient, as_user: Headers, phone: str) -> None:
    reply = report(client, as_user("dispatcher.xl"), phone)
    assert reply.status_code == 201, reply.text
    assert reply.json()["contact"]["phone"] == phone.strip()


def test_a_technician_with_a_short_phone_is_422_naming_phone(client: TestClient, as_user: Headers,
                                                             db: Session) -> None:
    region_id = db.scalar(select(Region.id).where(Region.code == "XL"))
    reply = client.post("/api/v1/technicians", headers=as_user("dispatcher.xl"), json={
        "name": "新人", "phone": "12345", "username": "tech.new", "password": "new-pw-1234", "skills": ["broadband"],
        "region_id": region_id})
    assert reply.status_code == 422, reply.text
    assert [e["field"] for e in reply.json()["errors"]] == ["phone"]


def test_the_subscriber_sees_who_is_coming_and_about_when(client: TestClient, as_user: Headers, db: Session,
                                                          settings: Settings) -> None:
    mine = subscriber_headers(db, settings, phone="13800004321", name="刘女士")
    ticket = report(client, mine, "13800004321").json()
    assert client.get(f"/api/v1/tickets/{ticket['id']}", headers=mine).json()["visit"] is None

    held_ticket_id = ticket["id"]
    on_duty(client, as_user(HOLDER), at={"lat": 43.96, "lng": 116.08})  # about 2.8 km north of the report
    assert client.post(f"/api/v1/tickets/{held_ticket_id}/grab", headers=as_user(HOLDER)).status_code == 200
    before = datetime.now(UTC)
    visit = client.get(f"/api/v1/tickets/{held_ticket_id}", headers=mine).json()["visit"]
    assert (visit["technician_name"], visit["technician_phone"]) == ("张海涛", "13882606058")  # tech04
    minutes = (datetime.fromisoformat(visit["arrival_estimate_at"]) - before).total_seconds() / 60
    assert 5 <= minutes <= 15  # 2.8 km as the crow flies, by road at a city pace

    arrived = client.post(f"/api/v1/tickets/{held_ticket_id}/arrive", headers=as_user(HOLDER),
                          json={"location": XL_POINT})
    assert arrived.status_code == 200, arrived.text
    assert client.get(f"/api/v1/tickets/{held_ticket_id}", headers=mine).json()["visit"]["arrival_estimate_at"] is None

