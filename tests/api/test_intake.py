"""Intake over HTTP: numbering, coordinate normalisation, idempotency, merging and bad input."""

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import h3
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.accounts.models import Subscriber
from dispatch.tickets.models import Ticket, TicketEvent
from geo import crs, hexgrid
from geo.distance import haversine_m
from geo.latlng import LatLng
from geo.models import Region

XL_POINT = {"lat": 43.935, "lng": 116.08}
EH_POINT = {"lat": 43.66, "lng": 111.96}
TICKETS = "/api/v1/tickets"


def report_body(**overrides: object) -> dict:
    return {"type_code": "broadband_fault", "description": "断网了", "location": XL_POINT,
            "contact": {"name": "张三", "phone": "13900000001"}, **overrides}


def report(client: TestClient, headers: dict[str, str], **overrides: object) -> dict:
    reply = client.post(TICKETS, json=report_body(**overrides), headers=headers)
    assert reply.status_code == 201, reply.text
    return reply.json()


def counts(db: Session) -> tuple[int, int, int]:
    return (db.scalar(select(func.count()).select_from(Ticket)) or 0,
            db.scalar(select(func.count()).select_from(Subscriber)) or 0,
            db.scalar(select(func.count()).select_from(TicketEvent)) or 0)


def shanghai_days() -> set[str]:
    return {datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")}


def seq_of(number: str) -> int:
    return int(number.rsplit("-", 1)[1])


# --- a new ticket -------------------------------------------------------------

def test_new_ticket_is_pending_with_branch_number_of_the_local_day(client: TestClient, as_user, db: Session) -> None:
    days = shanghai_days()
    ticket = report(client, as_user("dispatcher.xl"))
    days |= shanghai_days()  # a run across local midnight may see either day
    match = re.fullmatch(r"XL-(\d{8})-(\d{4})", ticket["number"])
    assert match is not None, ticket["number"]
    assert match.group(1) in days
    assert ticket["state"] == "pending"
    assert ticket["location"] == {"lat": XL_POINT["lat"], "lng": XL_POINT["lng"], "crs": "wgs84"}
    xl = db.scalar(select(Region.id).where(Region.code == "XL"))
    assert ticket["branch_id"] == xl
    assert ticket["outside_area"] is False and ticket["merged"] is False


def test_new_ticket_gets_the_h3_cell_of_its_point_at_resolution_9(client: TestClient, as_user) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    assert h3.get_resolution(ticket["h3"]) == 9
    assert ticket["h3"] == hexgrid.cell_of(LatLng(XL_POINT["lat"], XL_POINT["lng"]))


@pytest.mark.parametrize("source_crs", ["gcj02", "bd09"])
def test_chinese_map_coordinates_are_stored_as_wgs84(client: TestClient, as_user, source_crs: str) -> None:
    true_point = LatLng(43.935, 116.09)
    sent = crs.from_wgs84(true_point, source_crs)
    ticket = report(client, as_user("dispatcher.xl"),
                    location={"lat": sent.lat, "lng": sent.lng, "crs": source_crs})
    stored = LatLng(ticket["location"]["lat"], ticket["location"]["lng"])
    expected = crs.to_wgs84(sent, source_crs)
    assert ticket["location"]["crs"] == "wgs84"
    assert stored.lat == pytest.approx(expected.lat, abs=1e-9)
    assert stored.lng == pytest.approx(expected.lng, abs=1e-9)
    # GCJ-02 shifts Xilinhot by about 600 m, BD-09 by about 1.4 km: the conversion really moved the point.
    assert 300 < haversine_m(sent, stored) < 2000
    assert haversine_m(true_point, stored) < 1  # Baidu's published inverse is good to a few centimetres
    assert ticket["h3"] == hexgrid.cell_of(stored)


def test_numbers_count_up_per_branch_and_day(client: TestClient, as_user) -> None:
    xl, eh = as_user("dispatcher.xl"), as_user("dispatcher.eh")
    first = report(client, xl, contact={"name": "甲", "phone": "13900000011"})
    other_branch = report(client, eh, location=EH_POINT, contact={"name": "乙", "phone": "13900000012"})
    second = report(client, xl, contact={"name": "丙", "phone": "13900000013"})
    third = report(client, xl, contact={"name": "丁", "phone": "13900000014"})
    assert other_branch["number"].startswith("EH-")
    # The Erenhot ticket in between takes nothing from Xilinhot's sequence.
    assert [seq_of(t["number"]) for t in (first, second, third)] == [seq_of(first["number"]) + i for i in range(3)]
    assert first["number"][:12] == second["number"][:12] == third["number"][:12]
    assert len({first["number"], second["number"], third["number"], other_branch["number"]}) == 4


# --- Idempotency-Key ---------------------------------------------------------------

def test_same_idempotency_key_and_body_returns_the_first_ticket(client: TestClient, as_user, db: Session) -> None:
    headers = {**as_user("dispatcher.xl"), "Idempotency-Key": "hotline-call-1"}
    first = client.post(TICKETS, json=report_body(), headers=headers)
    before = counts(db)
    again = client.post(TICKETS, json=report_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["number"] == first.json()["number"]
    assert counts(db) == before


def test_same_idempotency_key_with_another_body_is_refused(client: TestClient, as_user, db: Session) -> None:
    headers = {**as_user("dispatcher.xl"), "Idempotency-Key": "hotline-call-2"}
    assert client.post(TICKETS, json=report_body(), headers=headers).status_code == 201
    before = counts(db)
    reply = client.post(TICKETS, json=report_body(description="电视也坏了"), headers=headers)
    assert reply.status_code == 422
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == "idempotency_key_reused"
    assert counts(db) == before


def test_different_callers_may_use_the_same_idempotency_key(client: TestClient, as_user) -> None:
    key = {"Idempotency-Key": "shared-key"}
    by_dispatcher = client.post(TICKETS, json=report_body(contact={"name": "甲", "phone": "13900000021"}),
                                headers={**as_user("dispatcher.xl"), **key})
    by_clerk = client.post(TICKETS, json=report_body(contact={"name": "乙", "phone": "13900000022"}),
                           headers={**as_user("clerk.xl"), **key})
    assert by_dispatcher.status_code == by_clerk.status_code == 201, by_clerk.text
    assert by_dispatcher.json()["id"] != by_clerk.json()["id"]


def test_replayed_idempotent_report_that_merged_answers_like_the_first_time(client: TestClient, as_user) -> None:
    # API.md: the same key and body "returns the first result". The first result here was a merge (200, merged).
    headers = as_user("dispatcher.xl")
    original = report(client, headers)
    keyed = {**headers, "Idempotency-Key": "merge-replay"}
    first = client.post(TICKETS, json=report_body(description="还是断网"), headers=keyed)
    replay = client.post(TICKETS, json=report_body(description="还是断网"), headers=keyed)
    assert first.status_code == 200 and first.json()["merged"] is True
    assert replay.json()["id"] == original["id"]
    assert (replay.status_code, replay.json()["merged"]) == (200, True)


# --- duplicate reports ------------------------------------------------------------

def test_second_open_report_of_same_phone_and_type_merges(client: TestClient, as_user, db: Session) -> None:
    headers = as_user("dispatcher.xl")
    first = report(client, headers)
    tickets_before = counts(db)[0]
    reply = client.post(TICKETS, json=report_body(description="还是断网"), headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["merged"] is True and reply.json()["id"] == first["id"]
    assert counts(db)[0] == tickets_before
    events = client.get(f"{TICKETS}/{first['id']}", headers=headers).json()["events"]
    assert [e["action"] for e in events] == ["create", "merge"]
    assert events[1]["note"] == "还是断网"


def test_report_of_another_type_makes_a_new_ticket(client: TestClient, as_user) -> None:
    headers = as_user("dispatcher.xl")
    first = report(client, headers)
    second = report(client, headers, type_code="tv_no_signal")
    assert second["id"] != first["id"] and second["merged"] is False


def test_report_after_the_earlier_ticket_was_invalidated_makes_a_new_ticket(client: TestClient, as_user) -> None:
    headers = as_user("dispatcher.xl")
    first = report(client, headers)
    closed = client.post(f"{TICKETS}/{first['id']}/invalidate", json={"reason": "测试"}, headers=headers)
    assert closed.json()["state"] == "invalid"
    second = report(client, headers)
    assert second["id"] != first["id"] and second["state"] == "pending"


def test_report_in_one_branch_never_merges_into_a_ticket_of_another_branch(client: TestClient, as_user) -> None:
    # The same subscriber (phone) with an open Xilinhot ticket reports the same fault type in Erenhot.
    xl_ticket = report(client, as_user("dispatcher.xl"))
    reply = client.post(TICKETS, json=report_body(location=EH_POINT), headers=as_user("dispatcher.eh"))
    assert reply.status_code in (200, 201), reply.text
    # The Erenhot dispatcher must not be handed the Xilinhot ticket (its contact, place and history).
    assert reply.json()["id"] != xl_ticket["id"]
    assert reply.json()["number"].startswith("EH-")


# --- bad input: 422 problem JSON, nothing written ---------------------------------

def _with_location(**location: object) -> dict:
    return report_body(location=location)


def _without(key: str) -> dict:
    body = report_body()
    del body[key]
    return body


BAD_BODIES = {
    "lat_91": (_with_location(lat=91, lng=116.08), "location.lat"),
    "lng_minus_181": (_with_location(lat=43.9, lng=-181), "location.lng"),
    "missing_location": (_without("location"), "location"),
    "unknown_crs": (_with_location(lat=43.9, lng=116.08, crs="osgb36"), "location.crs"),
    "unknown_type": (report_body(type_code="no_such_type"), "type_code"),
    "missing_phone": (report_body(contact={"name": "张三"}), "contact.phone"),
    "bad_phone": (report_body(contact={"name": "张三", "phone": "call me maybe"}), "contact.phone"),
    "description_100kb": (report_body(description="断" * 100_000), "description"),
    "ten_attachments": (report_body(attachments=[f"media/{i}.jpg" for i in range(10)]), "attachments"),
}


def assert_validation_problem(reply, field: str | None) -> None:
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    problem = reply.json()
    assert problem["code"] == "validation_error" and problem["status"] == 422
    assert problem["errors"]
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]], problem["errors"]


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_report_is_422_naming_the_field_and_writes_nothing(client: TestClient, as_user, db: Session,
                                                               case: str) -> None:
    body, field = BAD_BODIES[case]
    headers = as_user("dispatcher.xl")
    before = counts(db)
    assert_validation_problem(client.post(TICKETS, json=body, headers=headers), field)
    assert counts(db) == before


@pytest.mark.parametrize(("raw", "field"), [("NaN", "location.lat"), ("Infinity", "location.lng"),
                                            ("-Infinity", "location.lat")])
def test_non_finite_coordinates_are_422(client: TestClient, as_user, db: Session, raw: str, field: str) -> None:
    text = json.dumps(report_body(location={"lat": 43.9, "lng": 116.08}))
    text = text.replace('"lat": 43.9', f'"lat": {raw}') if field == "location.lat" else \
        text.replace('"lng": 116.08', f'"lng": {raw}')
    headers = {**as_user("dispatcher.xl"), "Content-Type": "application/json"}
    before = counts(db)
    assert_validation_problem(client.post(TICKETS, content=text, headers=headers), field)
    assert counts(db) == before


def test_malformed_json_is_422_blaming_the_body(client: TestClient, as_user, db: Session) -> None:
    headers = {**as_user("dispatcher.xl"), "Content-Type": "application/json"}
    before = counts(db)
    # The whole body is at fault, not a field named after the character offset where parsing stopped.
    assert_validation_problem(client.post(TICKETS, content='{"type_code":', headers=headers), "body")
    assert counts(db) == before


def test_report_sent_as_plain_text_is_422(client: TestClient, as_user, db: Session) -> None:
    headers = {**as_user("dispatcher.xl"), "Content-Type": "text/plain"}
    before = counts(db)
    assert_validation_problem(client.post(TICKETS, content=json.dumps(report_body()), headers=headers), "body")
    assert counts(db) == before


# --- who may report ------------------------------------------------------------------

def test_technician_may_not_report(client: TestClient, as_user, db: Session) -> None:
    before = counts(db)
    reply = client.post(TICKETS, json=report_body(), headers=as_user("tech01"))
    assert reply.status_code == 403
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert counts(db) == before


def test_dispatcher_cannot_report_a_point_in_another_branch(client: TestClient, as_user, db: Session) -> None:
    before = counts(db)
    reply = client.post(TICKETS, json=report_body(), headers=as_user("dispatcher.eh"))
    assert reply.status_code == 403
    assert reply.json()["code"] == "out_of_scope"
    assert counts(db) == before
