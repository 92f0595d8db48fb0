"""Outage incidents through the API on real PostgreSQL and Redis: detected from reports close in space and time,
offered once, grown by later reports, grouped and ungrouped by hand, completed (and paid) once for all."""

import math
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from dispatch.tickets.models import Offer, OfferOutcome, OutboxMessage
from geo.latlng import LatLng
from tests.conftest import log_in
from tests.dispatch.test_offers import CENTRE, on_duty  # noqa: F401 (on_duty: a fixture)
from workload.models import WorkRecord

OUTAGE = "fibre_cut"
_phones = iter(range(1, 100_000))


def around(metres: float, bearing_deg: float) -> dict[str, float]:
    """A point `metres` from CENTRE towards `bearing_deg` (0: north)."""
    north = metres * math.cos(math.radians(bearing_deg)) / 111_195.0
    east = metres * math.sin(math.radians(bearing_deg)) / (111_195.0 * math.cos(math.radians(CENTRE.lat)))
    return {"lat": CENTRE.lat + north, "lng": CENTRE.lng + east}


@pytest.fixture
def outage_type(client: TestClient, as_user) -> str:
    reply = client.post("/api/v1/ticket-types", headers=as_user("admin"), json={
        "code": OUTAGE, "name": "光缆中断", "skills": ["broadband"], "standard_hours": "2.00", "piece_rate": "80.00",
        "response_sla_min": 30, "resolution_sla_min": 240, "incident_reports": 3, "incident_radius_m": 300,
        "incident_window_min": 10, "visit_rate": "15.00"})
    assert reply.status_code == 201, reply.text
    return OUTAGE


def report(client: TestClient, headers: dict[str, str], at: dict[str, float]) -> dict[str, Any]:
    body = {"type_code": OUTAGE, "description": "没有网络", "location": at,
            "contact": {"name": "赵六", "phone": f"1370{next(_phones):07d}"}}
    reply = client.post("/api/v1/tickets", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def read(client: TestClient, headers: dict[str, str], ticket_id: int) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/tickets/{ticket_id}", headers=headers).json())


def feed_types(db: Session, *types: str) -> list[str]:
    return list(db.scalars(select(OutboxMessage.payload["type"].astext).where(
        OutboxMessage.payload["type"].astext.in_(types)).order_by(OutboxMessage.id)))


def open_offers_on(db: Session, ticket_ids: list[int]) -> int:
    return int(db.scalar(select(func.count()).select_from(Offer).where(
        Offer.ticket_id.in_(ticket_ids), Offer.outcome == OfferOutcome.OPEN)) or 0)


def test_twenty_reports_of_one_outage_become_one_incident_offered_once(
        client, as_user, db, outage_type, on_duty, whole_first_ring) -> None:  # noqa: F811
    dispatcher = as_user("dispatcher.xl")
    reports = [report(client, dispatcher, around(140 * (i % 2 + 0.2), 18 * i)) for i in range(20)]
    ids = [r["id"] for r in reports]

    [incident] = client.get("/api/v1/incidents", headers=dispatcher).json()
    assert sorted(incident["ticket_ids"]) == ids
    assert incident["opened_by"] == "dispatcher.xl" and incident["resolved_at"] is None
    lead = incident["ticket"]
    assert lead["state"] == "pending" and lead["incident_id"] == incident["id"]
    assert lead["offers"] == [] and "3 户报修" in lead["description"]
    assert {read(client, dispatcher, i)["state"] for i in ids} == {"grouped"}
    assert {read(client, dispatcher, i)["incident_id"] for i in ids} == {incident["id"]}
    # The first two were offered before the outage showed; grouping closed their offers: only the incident's
    # own ticket is on anyone's phone.
    assert open_offers_on(db, ids) == 0 and open_offers_on(db, [lead["id"]]) == 5
    assert reports[2]["offers"] == [] and reports[19]["offers"] == []
    assert feed_types(db, "incident.opened", "incident.grew") == ["incident.opened"] + ["incident.grew"] * 17
    pool = client.get("/api/v1/me/pool", headers=log_in(client, "tech01")).json()
    assert [t["id"] for t in pool] == [lead["id"]], "the pool lists the incident, not its reports"


def test_a_report_far_away_or_after_the_window_stays_a_ticket_of_its_own(
        client, as_user, db, outage_type, on_duty) -> None:  # noqa: F811
    dispatcher = as_user("dispatcher.xl")
    grouped = [report(client, dispatcher, around(100, bearing)) for bearing in (0, 120, 240)]
    far = report(client, dispatcher, around(2000, 90))
    assert far["state"] == "pending" and far["incident_id"] is None and far["offers"]

    # Two hours on: the incident's window and the reports around it are long past.
    db.execute(text("UPDATE incident SET last_report_at = last_report_at - interval '2 hours'"))
    db.execute(text("UPDATE ticket SET created_at = created_at - interval '2 hours' WHERE id = ANY(:ids)"),
               {"ids": [t["id"] for t in grouped]})
    later = report(client, dispatcher, around(50, 60))
    assert later["state"] == "pending" and later["incident_id"] is None
    [incident] = client.get("/api/v1/incidents", headers=dispatcher).json()
    assert sorted(incident["ticket_ids"]) == [t["id"] for t in grouped]


def test_a_dispatcher_groups_and_ungroups_reports_by_hand(client, as_user, db, whole_first_ring,
                                                          on_duty) -> None:  # noqa: F811
    dispatcher = as_user("dispatcher.xl")
    body = {"type_code": "broadband_fault", "description": "断网", "location": around(200, 0)}
    made = [client.post("/api/v1/tickets", headers=dispatcher,
                        json={**body, "contact": {"name": "孙七", "phone": f"1360000000{i}"}}).json()
            for i in range(3)]
    ids = [t["id"] for t in made]

    grouped = client.post("/api/v1/incidents", json={"ticket_ids": ids}, headers=dispatcher)
    assert grouped.status_code == 201, grouped.text
    incident = grouped.json()
    assert sorted(incident["ticket_ids"]) == ids and incident["opened_by"] == "dispatcher.xl"
    assert open_offers_on(db, ids) == 0 and open_offers_on(db, [incident["ticket"]["id"]]) == 5

    detached = client.post(f"/api/v1/incidents/{incident['id']}/detach", json={"ticket_id": ids[0]},
                           headers=dispatcher)
    assert detached.status_code == 200, detached.text
    assert detached.json()["state"] == "pending" and detached.json()["incident_id"] is None
    assert sorted(client.get("/api/v1/incidents", headers=dispatcher).json()[0]["ticket_ids"]) == ids[1:]

    again = client.post(f"/api/v1/incidents/{incident['id']}/detach", json={"ticket_id": ids[0]},
                        headers=dispatcher)
    assert again.status_code == 422 and again.json()["errors"][0]["field"] == "ticket_id"
    taken = client.post("/api/v1/incidents", json={"ticket_ids": ids[1:]}, headers=dispatcher)
    assert taken.status_code == 422 and taken.json()["errors"][0]["field"] == "ticket_ids"
    alone = client.post("/api/v1/incidents", json={"ticket_ids": [ids[0]]}, headers=dispatcher)
    assert alone.status_code == 422
    refused = client.post("/api/v1/incidents", json={"ticket_ids": ids}, headers=log_in(client, "tech01"))
    assert refused.status_code in {403, 404}


def test_completing_the_incident_completes_every_report_and_pays_the_repair_once(
        client, as_user, db, outage_type, on_duty) -> None:  # noqa: F811
    dispatcher = as_user("dispatcher.xl")
    ids = [report(client, dispatcher, around(120, bearing))["id"] for bearing in (0, 90, 180, 270)]
    [incident] = client.get("/api/v1/incidents", headers=dispatcher).json()
    lead = incident["ticket"]["id"]
    tech = log_in(client, "tech01")
    assert client.post(f"/api/v1/tickets/{lead}/grab", headers=tech).status_code == 200
    stray = client.post(f"/api/v1/tickets/{lead}/complete", headers=tech,
                        json={"note": "熔接光缆", "visited": [lead + 1000]})
    assert stray.status_code == 422 and stray.json()["errors"][0]["field"] == "visited"

    done = client.post(f"/api/v1/tickets/{lead}/complete", headers=tech, json={"note": "熔接光缆", "visited": [ids[1]]})
    assert done.status_code == 200, done.text

    children = [read(client, dispatcher, i) for i in ids]
    assert {c["state"] for c in children} == {"awaiting_followup"}
    assert {c["technician_id"] for c in children} == {on_duty["tech01"]}
    assert {c["completion_note"] for c in children} == {"熔接光缆"}
    resolved = client.get("/api/v1/incidents", params={"open": "false"}, headers=dispatcher).json()
    assert resolved[0]["resolved_at"] is not None
    assert client.get("/api/v1/incidents", headers=dispatcher).json() == []
    # Each subscriber is told once (their own completion event), the incident's resolution once.
    completed = db.scalars(select(OutboxMessage.payload["ticket_id"].as_integer()).where(
        OutboxMessage.payload["type"].astext == "ticket.completed")).all()
    assert sorted(completed) == sorted([lead, *ids])
    assert feed_types(db, "incident.resolved") == ["incident.resolved"]

    pay = dict(db.execute(select(WorkRecord.ticket_id, WorkRecord.piece_rate)).all())
    assert pay == {lead: Decimal("80.00"), ids[1]: Decimal("15.00")}, "the repair once, the one extra visit"

    rated = client.post(f"/api/v1/tickets/{ids[0]}/followup", json={"satisfaction": 5}, headers=dispatcher)
    assert rated.status_code == 200, rated.text
    assert rated.json()["state"] == "completed"


def test_invalidating_the_incident_returns_its_reports_to_the_pool(
        client, as_user, db, outage_type, on_duty) -> None:  # noqa: F811
    dispatcher = as_user("dispatcher.xl")
    ids = [report(client, dispatcher, around(80, bearing))["id"] for bearing in (0, 120, 240)]
    [incident] = client.get("/api/v1/incidents", headers=dispatcher).json()
    reply = client.post(f"/api/v1/tickets/{incident['ticket']['id']}/invalidate", json={"reason": "误报：调试中"},
                        headers=dispatcher)
    assert reply.status_code == 200, reply.text
    assert {read(client, dispatcher, i)["state"] for i in ids} == {"pending"}
    pool = client.get("/api/v1/me/pool", headers=log_in(client, "tech01")).json()
    assert sorted(t["id"] for t in pool) == ids


def test_detection_is_per_type_and_off_unless_a_type_asks(client, as_user, on_duty) -> None:  # noqa: F811
    dispatcher = as_user("dispatcher.xl")
    body = {"type_code": "broadband_fault", "description": "断网", "location": around(50, 0)}
    made = [client.post("/api/v1/tickets", headers=dispatcher,
                        json={**body, "contact": {"name": "周八", "phone": f"1350000000{i}"}}).json()
            for i in range(5)]
    assert {t["state"] for t in made} == {"pending"}
    assert client.get("/api/v1/incidents", headers=dispatcher).json() == []


def test_cells_cover_the_radius(outage_type) -> None:
    from dispatch.tickets.incidents import cells_of
    from geo import hexgrid

    cells = cells_of(CENTRE, 300)
    for bearing in range(0, 360, 15):
        edge = around(299, bearing)
        assert hexgrid.cell_of(LatLng(edge["lat"], edge["lng"])) in cells
