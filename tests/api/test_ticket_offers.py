"""GET /api/v1/tickets/{id}/offers: whom a ticket's rings reached and where they are, for the console's map."""

import pytest
from fastapi.testclient import TestClient

from tests.conftest import log_in, on_duty

OLD_TOWN = {"lat": 43.935, "lng": 116.08}
NEAR = {"lat": 43.94, "lng": 116.08}  # about 560 m north
FAR_AWAY = {"lat": 44.2, "lng": 116.5}  # about 45 km: outside every ring


def report(client: TestClient) -> dict:
    reply = client.post("/api/v1/tickets", headers=log_in(client, "dispatcher.xl"), json={
        "type_code": "broadband_fault", "description": "光猫红灯", "location": OLD_TOWN,
        "contact": {"name": "王五", "phone": "13700000001"}})
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_the_offers_name_the_technicians_of_the_ring_where_they_are_and_its_radius(client: TestClient) -> None:
    on_duty(client, log_in(client, "tech01"), at=NEAR)
    on_duty(client, log_in(client, "tech02"), at=FAR_AWAY)
    ticket = report(client)

    reply = client.get(f"/api/v1/tickets/{ticket['id']}/offers", headers=log_in(client, "dispatcher.xl"))

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["ring"] == 1 and body["ring_radius_m"] == 3000
    [offer] = body["offers"]  # tech02 is beyond the first ring
    assert offer["technician_id"] == ticket["offers"][0]["technician_id"]
    assert offer["outcome"] == "open" and offer["ring"] == 1 and 500 < offer["distance_m"] < 600
    # Where the live index has them (a geohash: within a metre).
    assert (offer["last_seen"]["lat"], offer["last_seen"]["lng"]) == (pytest.approx(NEAR["lat"], abs=1e-5),
                                                                      pytest.approx(NEAR["lng"], abs=1e-5))
    assert offer["name"]


def test_a_ticket_offered_to_nobody_has_an_empty_ring(client: TestClient) -> None:
    ticket = report(client)

    body = client.get(f"/api/v1/tickets/{ticket['id']}/offers", headers=log_in(client, "dispatcher.xl")).json()

    assert body["offers"] == []


def test_a_technician_may_not_read_whom_a_ticket_was_offered_to(client: TestClient) -> None:
    ticket = report(client)

    reply = client.get(f"/api/v1/tickets/{ticket['id']}/offers", headers=log_in(client, "tech01"))

    assert reply.status_code in (403, 404)
    assert reply.headers["content-type"].startswith("application/problem+json")


def test_another_branchs_ticket_is_not_found(client: TestClient) -> None:
    ticket = report(client)

    reply = client.get(f"/api/v1/tickets/{ticket['id']}/offers", headers=log_in(client, "dispatcher.eh"))

    assert reply.status_code == 404
