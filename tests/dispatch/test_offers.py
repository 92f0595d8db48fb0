"""The ring policy on real PostGIS and Redis: first ring at intake, widening, stopping, idempotence."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.kernel.settings import Settings
from dispatch.tickets import offers
from dispatch.tickets.models import Offer, OfferOutcome, Ticket
from geo.latlng import LatLng
from technicians import presence
from technicians.models import Technician

CENTRE = LatLng(43.9350, 116.0800)
# Metres north of the ticket for tech01..tech08: five inside the first ring (3 km),
# three more only inside the second (6 km).
OFFSETS_M = {"tech01": 100, "tech02": 400, "tech03": 900, "tech04": 1500, "tech05": 2500,
             "tech06": 3500, "tech07": 4500, "tech08": 5500}


def north_of(point: LatLng, metres: float) -> LatLng:
    return LatLng(point.lat + metres / 111_195.0, point.lng)


def technician(db: Session, username: str) -> Technician:
    return db.scalars(select(Technician).join(User, User.id == Technician.user_id)
                      .where(User.username == username)).one()


@pytest.fixture
def on_duty(db: Session, redis: Redis, settings: Settings) -> dict[str, int]:
    """tech01..tech08 on duty, all broadband-capable for the test, at known distances north of CENTRE."""
    now = datetime.now(UTC)
    ids = {}
    for username, metres in OFFSETS_M.items():
        tech = technician(db, username)
        tech.skills = ["broadband", "tv", "install"]
        tech.max_active = 5
        presence.set_duty(db, redis, technician=tech, on_duty=True)
        presence.record_ping(redis, ref=presence.ref_of(db, tech), point=north_of(CENTRE, metres), accuracy_m=5,
                             now=now, tz=settings.timezone, cfg=settings.presence)
        ids[username] = tech.id
    db.flush()
    return ids


def report(client: TestClient, headers: dict[str, str], phone: str = "13900001111") -> dict:
    body = {"type_code": "broadband_fault", "description": "光猫红灯", "contact": {"name": "李四", "phone": phone},
            "location": {"lat": CENTRE.lat, "lng": CENTRE.lng}}
    reply = client.post("/api/v1/tickets", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    return reply.json()


def offered_in(db: Session, ticket_id: int, ring: int) -> list[int]:
    return sorted(db.scalars(select(Offer.technician_id).where(Offer.ticket_id == ticket_id, Offer.ring == ring)))


def test_intake_offers_the_nearest_free_technician_alone_first(client, as_user, on_duty, db, settings) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    assert [o["technician_id"] for o in ticket["offers"]] == [on_duty["tech01"]]
    assert ticket["address"], "intake names the place of the report"
    # The lead ring reaches as far as its own and the tie band beyond (300 m): the pool lists it that far.
    assert db.get(Ticket, ticket["id"]).ring_radius_m == 101 + settings.offer.tie_band_m


def test_after_the_lead_the_rest_of_the_first_ring_is_offered(client, as_user, on_duty, db, redis,
                                                              settings) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    early = datetime.now(UTC) + timedelta(seconds=settings.offer.lead_s - 5)
    assert offers.sweep(db, redis, settings=settings, now=early, limit=50) == 0, "the lead has its time alone"
    later = datetime.now(UTC) + timedelta(seconds=settings.offer.lead_s + 1)
    assert offers.sweep(db, redis, settings=settings, now=later, limit=50) == 1
    assert offered_in(db, ticket["id"], 2) == sorted(on_duty[u] for u in ("tech02", "tech03", "tech04", "tech05"))
    assert db.get(Ticket, ticket["id"]).ring_radius_m == 3000


def test_the_lead_passes_over_a_nearer_technician_already_holding_a_ticket(client, as_user, on_duty) -> None:
    first = report(client, as_user("dispatcher.xl"), phone="13900002222")
    assert client.post(f"/api/v1/tickets/{first['id']}/grab", headers=as_user("tech01")).status_code == 200
    second = report(client, as_user("dispatcher.xl"), phone="13900003333")
    assert [o["technician_id"] for o in second["offers"]] == [on_duty["tech02"]]


def test_without_a_lead_intake_offers_the_five_nearest_within_the_first_ring(client, as_user, on_duty,
                                                                             whole_first_ring) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    offered = [o["technician_id"] for o in ticket["offers"]]
    assert offered == [on_duty[u] for u in ("tech01", "tech02", "tech03", "tech04", "tech05")]
    assert all(o["distance_m"] <= 3000 for o in ticket["offers"])


def pool_of(client: TestClient, headers: dict[str, str]) -> list[int]:
    reply = client.get("/api/v1/me/pool", headers=headers)
    assert reply.status_code == 200, reply.text
    return [t["id"] for t in reply.json()]


def test_by_default_the_pool_lists_a_ticket_to_everyone_in_reach_from_intake_on(client, as_user, on_duty) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    assert ticket["id"] in pool_of(client, as_user("tech01")), "the lead"
    assert ticket["id"] in pool_of(client, as_user("tech03")), "900 m off, not offered yet, in the pool all the same"


def test_the_pool_lists_a_ticket_only_as_far_as_its_ring_has_reached(client, as_user, on_duty, db, redis,
                                                                    settings, monkeypatch) -> None:
    monkeypatch.setattr(settings, "offer", settings.offer.model_copy(update={"pool_within_ring": True}))
    ticket = report(client, as_user("dispatcher.xl"))
    assert ticket["id"] in pool_of(client, as_user("tech01")), "the lead sees it"
    assert ticket["id"] not in pool_of(client, as_user("tech03")), "900 m off, not offered yet"
    offers.sweep(db, redis, settings=settings, now=datetime.now(UTC) + timedelta(seconds=settings.offer.lead_s + 1),
                 limit=50)
    assert ticket["id"] in pool_of(client, as_user("tech03"))
    assert ticket["id"] not in pool_of(client, as_user("tech07")), "4.5 km off, beyond the 3 km ring"


def test_an_offered_technician_sees_the_offer_and_another_does_not(client, as_user, on_duty,
                                                                    whole_first_ring) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    mine = client.get("/api/v1/me/offers", headers=as_user("tech02")).json()
    assert [o["ticket"]["id"] for o in mine] == [ticket["id"]]
    assert 350 < mine[0]["distance_m"] < 450
    assert client.get("/api/v1/me/offers", headers=as_user("tech07")).json() == []


def test_an_untaken_ticket_reaches_the_second_ring_after_the_step(client, as_user, on_duty, db, redis,
                                                                   whole_first_ring) -> None:
    settings = whole_first_ring
    ticket = report(client, as_user("dispatcher.xl"))
    later = datetime.now(UTC) + timedelta(seconds=settings.offer.step_s + 1)
    assert offers.sweep(db, redis, settings=settings, now=later, limit=50) == 1
    ring2 = db.scalars(select(Offer.technician_id).where(Offer.ticket_id == ticket["id"], Offer.ring == 2)).all()
    assert sorted(ring2) == sorted(on_duty[u] for u in ("tech06", "tech07", "tech08"))
    assert db.get(Ticket, ticket["id"]).ring_radius_m == 6000


def test_sweeping_twice_offers_nobody_twice(client, as_user, on_duty, db, redis, whole_first_ring) -> None:
    settings = whole_first_ring
    ticket = report(client, as_user("dispatcher.xl"))
    later = datetime.now(UTC) + timedelta(seconds=settings.offer.step_s + 1)
    offers.sweep(db, redis, settings=settings, now=later, limit=50)
    assert offers.sweep(db, redis, settings=settings, now=later, limit=50) == 0
    rows = db.scalars(select(Offer.technician_id).where(Offer.ticket_id == ticket["id"])).all()
    assert len(rows) == len(set(rows)) == 8


def test_a_grabbed_ticket_stops_widening_and_closes_its_offers(client, as_user, on_duty, db, redis,
                                                              whole_first_ring) -> None:
    settings = whole_first_ring
    ticket = report(client, as_user("dispatcher.xl"))
    assert client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=as_user("tech03")).status_code == 200
    db.expire_all()
    later = datetime.now(UTC) + timedelta(hours=1)
    assert offers.sweep(db, redis, settings=settings, now=later, limit=50) == 0
    outcomes = dict(db.execute(select(Offer.technician_id, Offer.outcome).where(Offer.ticket_id == ticket["id"])).all())
    assert outcomes.pop(on_duty["tech03"]) == OfferOutcome.TAKEN
    assert set(outcomes.values()) == {OfferOutcome.CLOSED}
    assert client.get("/api/v1/me/offers", headers=as_user("tech01")).json() == []


def test_a_released_ticket_is_offered_again_to_those_not_yet_offered(client, as_user, on_duty, db, redis,
                                                                    settings) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=as_user("tech01"))
    reply = client.post(f"/api/v1/tickets/{ticket['id']}/release", json={"reason": "车坏了"},
                        headers=as_user("tech01"))
    assert reply.status_code == 200, reply.text
    db.expire_all()
    assert offers.sweep(db, redis, settings=settings, now=datetime.now(UTC) + timedelta(seconds=1), limit=50) == 1


def test_a_technician_at_the_limit_is_not_offered(client, as_user, on_duty, db, redis) -> None:
    tech = technician(db, "tech01")
    tech.max_active = 1
    presence.set_duty(db, redis, technician=tech, on_duty=True)  # the live index learns the new limit
    first = report(client, as_user("dispatcher.xl"), phone="13900002222")
    client.post(f"/api/v1/tickets/{first['id']}/grab", headers=as_user("tech01"))
    second = report(client, as_user("dispatcher.xl"), phone="13900003333")
    assert on_duty["tech01"] not in [o["technician_id"] for o in second["offers"]]


def test_nearest_endpoint_lists_distance_and_load(client, as_user, on_duty) -> None:
    reply = client.get("/api/v1/technicians/nearest", headers=as_user("dispatcher.xl"),
                       params={"lat": CENTRE.lat, "lng": CENTRE.lng, "k": 3, "type_code": "broadband_fault"})
    assert reply.status_code == 200, reply.text
    rows = reply.json()
    assert [r["technician_id"] for r in rows] == [on_duty[u] for u in ("tech01", "tech02", "tech03")]
    assert rows[0]["distance_m"] == pytest.approx(100, abs=5)
    assert client.get("/api/v1/technicians/nearest", headers=as_user("dispatcher.eh"),
                      params={"lat": CENTRE.lat, "lng": CENTRE.lng}).status_code == 403


def test_a_search_names_technicians_of_the_branch_it_never_named_before_without_a_statement(
        client, as_user, on_duty, db) -> None:
    def search(k: int) -> list[dict]:
        reply = client.get("/api/v1/technicians/nearest", headers=as_user("dispatcher.xl"),
                           params={"lat": CENTRE.lat, "lng": CENTRE.lng, "k": k, "type_code": "broadband_fault"})
        assert reply.status_code == 200, reply.text
        return reply.json()

    assert [r["technician_id"] for r in search(1)] == [on_duty["tech01"]]
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        rows = search(5)
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    named = [f"tech0{n}" for n in range(1, 6)]
    assert {r["technician_id"]: r["name"] for r in rows} == {on_duty[u]: technician(db, u).name for u in named}
    assert statements == []
