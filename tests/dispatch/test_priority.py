"""Priority P1-P4 through the API on real PostgreSQL and Redis: where it comes from (type, subscriber, site, a
dispatcher), and what it picks (SLA profile, first ring, technicians at their limit, order, escalation)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.audit.models import AuditEvent
from dispatch.kernel.settings import Settings
from dispatch.tickets import sla
from technicians import presence
from tests.conftest import log_in
from tests.dispatch.test_offers import CENTRE, north_of, on_duty, technician  # noqa: F401 (on_duty: a fixture)

_phones = iter(range(1, 100_000))


def new_type(client: TestClient, admin: dict[str, str], code: str, **terms: Any) -> dict[str, Any]:
    body = {"code": code, "name": code, "skills": [], "standard_hours": "1.00", "piece_rate": "10.00",
            "response_sla_min": 40, "resolution_sla_min": 240, **terms}
    reply = client.post("/api/v1/ticket-types", json=body, headers=admin)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def report(client: TestClient, headers: dict[str, str], type_code: str, *, phone: str | None = None,
           at: dict[str, float] | None = None) -> dict[str, Any]:
    body = {"type_code": type_code, "description": "断网了", "location": at or {"lat": CENTRE.lat, "lng": CENTRE.lng},
            "contact": {"name": "王五", "phone": phone or f"1380{next(_phones):07d}"}}
    reply = client.post("/api/v1/tickets", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def minutes(ticket: dict[str, Any], field: str) -> float:
    return (datetime.fromisoformat(ticket[field]) - datetime.fromisoformat(ticket["created_at"])) / timedelta(minutes=1)


def north(metres: float) -> dict[str, float]:
    point = north_of(CENTRE, metres)
    return {"lat": point.lat, "lng": point.lng}


@pytest.fixture
def staff(as_user) -> dict[str, dict[str, str]]:
    return {"admin": as_user("admin"), "dispatcher": as_user("dispatcher.xl")}


def test_a_report_takes_its_types_priority_and_the_sla_profile_of_that_priority(client, staff) -> None:
    new_type(client, staff["admin"], "pri_scaled", priority="P2")
    new_type(client, staff["admin"], "pri_named", priority="P1",
             sla_by_priority={"P1": {"response_sla_min": 5, "resolution_sla_min": 90}})
    plain = new_type(client, staff["admin"], "pri_plain")
    assert plain["priority"] == "P3" and plain["sla_by_priority"] == {} and plain["urgent_over_limit"] is False

    scaled = report(client, staff["dispatcher"], "pri_scaled")
    named = report(client, staff["dispatcher"], "pri_named")
    default = report(client, staff["dispatcher"], "pri_plain")

    assert [t["priority"] for t in (scaled, named, default)] == ["P2", "P1", "P3"]
    # P2 scales the type's own minutes (its P3 profile) by 0.5; P1 takes the minutes the type names for it.
    assert (minutes(scaled, "response_due_at"), minutes(scaled, "resolution_due_at")) == (20, 120)
    assert (minutes(named, "response_due_at"), minutes(named, "resolution_due_at")) == (5, 90)
    assert (minutes(default, "response_due_at"), minutes(default, "resolution_due_at")) == (40, 240)


def test_an_important_subscriber_raises_every_report_of_theirs(client, staff, db: Session) -> None:
    new_type(client, staff["admin"], "pri_vip")
    marked = client.post("/api/v1/subscribers/importance", json={"phone": "13911112222", "importance": "hospital"},
                         headers=staff["dispatcher"])
    assert marked.status_code == 200, marked.text
    assert marked.json()["importance"] == "hospital"

    hospital = report(client, staff["dispatcher"], "pri_vip", phone="13911112222")
    home = report(client, staff["dispatcher"], "pri_vip", phone="13911113333")
    assert (hospital["priority"], home["priority"]) == ("P1", "P3")
    assert minutes(hospital, "response_due_at") == 10, "the P1 profile: 40 min x 0.25"

    unmarked = client.post("/api/v1/subscribers/importance", json={"phone": "13911112222", "importance": None},
                           headers=staff["dispatcher"])
    assert unmarked.json()["importance"] is None
    audit = db.scalars(select(AuditEvent.detail).where(AuditEvent.action == "subscriber.marked")
                       .order_by(AuditEvent.id)).all()
    assert [(d["before"], d["after"]) for d in audit] == [(None, "hospital"), ("hospital", None)]
    refused = client.post("/api/v1/subscribers/importance", json={"phone": "13911112222", "importance": "vip"},
                          headers=log_in(client, "tech01"))
    assert refused.status_code == 403


def test_reports_at_an_important_site_are_raised_and_those_away_from_it_are_not(client, staff) -> None:
    new_type(client, staff["admin"], "pri_site")
    site = client.post("/api/v1/important-sites", headers=staff["dispatcher"], json={
        "name": "锡林浩特第二医院", "importance": "hospital", "location": north(0), "radius_m": 300})
    assert site.status_code == 201, site.text
    listed = {s["id"]: s for s in client.get("/api/v1/important-sites", headers=staff["dispatcher"]).json()}
    # The demo's two hospitals in Xilinhot and this one: Erenhot's lies in another branch.
    assert listed[site.json()["id"]]["radius_m"] == 300 and len(listed) == 3

    inside = report(client, staff["dispatcher"], "pri_site", at=north(250))
    outside = report(client, staff["dispatcher"], "pri_site", at=north(1000))
    assert (inside["priority"], outside["priority"]) == ("P1", "P3")

    removed = client.delete(f"/api/v1/important-sites/{site.json()['id']}", headers=staff["dispatcher"])
    assert removed.status_code == 204
    assert report(client, staff["dispatcher"], "pri_site", at=north(250))["priority"] == "P3"
    assert client.delete(f"/api/v1/important-sites/{site.json()['id']}",
                         headers=staff["dispatcher"]).status_code == 404


def test_a_dispatcher_changes_a_priority_as_an_audited_event_and_the_sla_follows(client, staff, db) -> None:
    new_type(client, staff["admin"], "pri_change")
    ticket = report(client, staff["dispatcher"], "pri_change")
    path = f"/api/v1/tickets/{ticket['id']}"

    raised = client.patch(path, json={"priority": "P1", "reason": "医院专线"}, headers=staff["dispatcher"])
    assert raised.status_code == 200, raised.text
    assert raised.json()["priority"] == "P1" and raised.json()["version"] == ticket["version"] + 1
    assert (minutes(raised.json(), "response_due_at"), minutes(raised.json(), "resolution_due_at")) == (10, 60)
    [event] = [e for e in client.get(path, headers=staff["dispatcher"]).json()["events"]
               if e["action"] == "prioritize"]
    assert event["note"] == "P3 → P1: 医院专线" and event["actor"] == "dispatcher.xl"
    [audit] = db.scalars(select(AuditEvent).where(AuditEvent.action == "ticket.prioritized")).all()
    assert audit.target_id == ticket["id"] and audit.detail["to"] == "P1"

    again = client.patch(path, json={"priority": "P1"}, headers=staff["dispatcher"])
    assert again.status_code == 422 and again.json()["errors"][0]["field"] == "priority"
    assert client.patch(path, json={}, headers=staff["dispatcher"]).status_code == 422
    assert client.patch(path, json={"priority": "P9"}, headers=staff["dispatcher"]).status_code == 422
    assert client.patch(path, json={"priority": "P2"}, headers=log_in(client, "tech01")).status_code in {
        403, 404}


def test_a_p1_first_ring_reaches_more_technicians_further_out(client, staff, whole_first_ring,
                                                              on_duty) -> None:  # noqa: F811
    new_type(client, staff["admin"], "pri_ring", skills=["broadband"])
    p3 = report(client, staff["dispatcher"], "pri_ring")
    new_type(client, staff["admin"], "pri_ring_urgent", skills=["broadband"], priority="P1")
    p1 = report(client, staff["dispatcher"], "pri_ring_urgent")

    assert len(p3["offers"]) == 5 and max(o["distance_m"] for o in p3["offers"]) <= 3000
    # Eight on duty within 6 km (the P1 first radius): all of them, up to its ten.
    assert sorted(o["technician_id"] for o in p1["offers"]) == sorted(on_duty.values())


def test_a_p1_of_a_type_that_allows_it_goes_to_technicians_at_their_limit_too(
        client, staff, on_duty, db, redis: Redis) -> None:  # noqa: F811
    tech = technician(db, "tech01")
    tech.max_active = 1
    presence.set_duty(db, redis, technician=tech, on_duty=True)
    new_type(client, staff["admin"], "pri_full", skills=["broadband"])
    first = report(client, staff["dispatcher"], "pri_full")
    grabbed = client.post(f"/api/v1/tickets/{first['id']}/grab", headers=log_in(client, "tech01"))
    assert grabbed.status_code == 200, grabbed.text

    new_type(client, staff["admin"], "pri_full_urgent", skills=["broadband"], priority="P1", urgent_over_limit=True)
    new_type(client, staff["admin"], "pri_full_strict", skills=["broadband"], priority="P1")
    allowed = report(client, staff["dispatcher"], "pri_full_urgent")
    strict = report(client, staff["dispatcher"], "pri_full_strict")
    assert on_duty["tech01"] in [o["technician_id"] for o in allowed["offers"]]
    assert on_duty["tech01"] not in [o["technician_id"] for o in strict["offers"]]


def test_the_pool_and_offers_list_the_most_urgent_first(client, staff, whole_first_ring,
                                                        on_duty) -> None:  # noqa: F811
    new_type(client, staff["admin"], "pri_pool", skills=["broadband"])
    near = report(client, staff["dispatcher"], "pri_pool", at=north(50))
    far = report(client, staff["dispatcher"], "pri_pool", at=north(1200))
    tech = log_in(client, "tech01")
    assert [t["id"] for t in client.get("/api/v1/me/pool", headers=tech).json()] == [near["id"], far["id"]]

    client.patch(f"/api/v1/tickets/{far['id']}", json={"priority": "P1"}, headers=staff["dispatcher"])
    assert [t["id"] for t in client.get("/api/v1/me/pool", headers=tech).json()] == [far["id"], near["id"]]
    assert [o["ticket"]["id"] for o in client.get("/api/v1/me/offers", headers=tech).json()] == [far["id"], near["id"]]


def test_the_ticket_list_sorts_and_filters_by_priority_across_pages(client, staff) -> None:
    new_type(client, staff["admin"], "pri_list")
    made = [report(client, staff["dispatcher"], "pri_list") for _ in range(5)]
    for ticket, level in zip(made, ["P3", "P1", "P4", "P1", "P2"], strict=True):
        if level != "P3":
            client.patch(f"/api/v1/tickets/{ticket['id']}", json={"priority": level}, headers=staff["dispatcher"])

    seen: list[tuple[str, int]] = []
    cursor = None
    while True:
        params = {"type_code": "pri_list", "order": "priority", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/tickets", params=params, headers=staff["dispatcher"]).json()
        seen += [(t["priority"], t["id"]) for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [t["id"] for t in made]
    assert seen == [("P1", ids[3]), ("P1", ids[1]), ("P2", ids[4]), ("P3", ids[0]), ("P4", ids[2])]

    urgent = client.get("/api/v1/tickets", params={"type_code": "pri_list", "priority": "P1"},
                        headers=staff["dispatcher"]).json()["items"]
    assert [t["id"] for t in urgent] == [ids[3], ids[1]]
    newest_cursor = client.get("/api/v1/tickets", params={"type_code": "pri_list", "limit": 2},
                               headers=staff["dispatcher"]).json()["next_cursor"]
    mixed = client.get("/api/v1/tickets", params={"order": "priority", "cursor": newest_cursor},
                       headers=staff["dispatcher"])
    assert mixed.status_code == 422 and mixed.json()["errors"][0]["field"] == "cursor"


def test_a_p1_breach_climbs_the_whole_chain_at_once(client, staff, db: Session, redis: Redis,
                                                    settings: Settings) -> None:
    new_type(client, staff["admin"], "pri_esc", priority="P1")
    new_type(client, staff["admin"], "pri_esc_home")
    urgent = report(client, staff["dispatcher"], "pri_esc")
    home = report(client, staff["dispatcher"], "pri_esc_home")
    late = datetime.now(UTC) + timedelta(hours=1)  # past both response limits (10 and 40 min)

    result = sla.sweep(db, redis, cfg=settings.sla, now=late, limit=100)

    assert sorted(result.timed_out) == sorted([urgent["id"], home["id"]])
    levels = {t["id"]: t["sla"]["escalation_level"]
              for t in (client.get(f"/api/v1/tickets/{i}", headers=staff["dispatcher"]).json()
                        for i in (urgent["id"], home["id"]))}
    assert levels == {urgent["id"]: 4, home["id"]: 1}, "the P1 told grid, branch, manager and HQ at once"
