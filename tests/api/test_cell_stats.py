"""GET /api/v1/stats/cells: reports, open tickets, on-duty technicians and time to accept by H3 cell, through
HTTP with tickets reported where they are and technicians on duty where their phones say."""

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.tickets.models import Ticket, TicketEvent, TicketState
from geo.hexgrid import cell_of
from geo.latlng import LatLng
from geo.points import to_wkb
from technicians.models import Technician, TrackPoint
from tests.conftest import log_in, on_duty

TZ = ZoneInfo("Asia/Shanghai")
OLD_TOWN = LatLng(43.935, 116.08)  # grid XL-G05
STATION = LatLng(43.925, 116.06)  # 2 km south-west: another cell at res 8, the same at res 5
ERENHOT = LatLng(43.65, 111.98)
_phones = itertools.count(1)


def report(client: TestClient, where: LatLng, *, by: str = "dispatcher.xl") -> int:
    body = {"type_code": "broadband_fault", "description": "无信号", "location": {"lat": where.lat, "lng": where.lng},
            "contact": {"name": "王五", "phone": f"1370000{next(_phones):04d}"}}
    reply = client.post("/api/v1/tickets", json=body, headers=log_in(client, by))
    assert reply.status_code == 201, reply.text
    return int(reply.json()["id"])


def taken_after(db: Session, ticket_id: int, minutes: int) -> None:
    """The ticket was grabbed `minutes` after it was reported, as the lifecycle would have recorded it."""
    created = db.get(Ticket, ticket_id).created_at  # type: ignore[union-attr]
    db.execute(update(Ticket).where(Ticket.id == ticket_id).values(state=TicketState.ACCEPTED))
    db.add(TicketEvent(ticket_id=ticket_id, at=created + timedelta(minutes=minutes), actor="test", actor_role="system",
                       action="grab", from_state=TicketState.PENDING, to_state=TicketState.ACCEPTED, data={}))
    db.flush()


def closed(db: Session, ticket_id: int, state: TicketState) -> None:
    db.execute(update(Ticket).where(Ticket.id == ticket_id).values(state=state))
    db.flush()


def today() -> dict[str, str]:
    day = datetime.now(UTC).astimezone(TZ).date().isoformat()
    return {"from": day, "to": day}


def cells(client: TestClient, username: str = "dispatcher.xl", **params: Any) -> Any:
    reply = client.get("/api/v1/stats/cells", params={**today(), **params}, headers=log_in(client, username))
    assert reply.status_code == 200, reply.text
    return reply.json()


def by_cell(body: Any) -> dict[str, dict[str, Any]]:
    return {row["cell"]: row for row in body["cells"]}


@pytest.fixture
def town(client: TestClient, db: Session) -> None:
    """Three reports in the old town (taken after 10, 20 and 60 minutes, one of them completed since), one at
    the station (still pending), one in Erenhot; tech01 and tech02 on duty in the old town, tech03 at the
    station, tech33 in Erenhot."""
    for minutes in (10, 20, 60):
        taken_after(db, report(client, OLD_TOWN), minutes)
    closed(db, report(client, OLD_TOWN), TicketState.INVALID)
    report(client, STATION)
    report(client, ERENHOT, by="dispatcher.eh")
    for username, where in (("tech01", OLD_TOWN), ("tech02", OLD_TOWN), ("tech03", STATION), ("tech33", ERENHOT)):
        on_duty(client, log_in(client, username), at={"lat": where.lat, "lng": where.lng})


def test_each_cell_counts_its_reports_open_tickets_technicians_and_median_time_to_accept(
        client: TestClient, town: None) -> None:
    body = cells(client, res=8)
    found = by_cell(body)

    assert body["res"] == 8 and body["from"] == today()["from"] and body["region_id"] is None
    assert set(found) == {cell_of(OLD_TOWN, 8), cell_of(STATION, 8)}  # Erenhot is not the Xilinhot desk's
    old_town, station = found[cell_of(OLD_TOWN, 8)], found[cell_of(STATION, 8)]
    assert (old_town["reports"], old_town["open"], old_town["on_duty"]) == (4, 3, 2)
    assert old_town["accept_median_min"] == pytest.approx(20)
    assert (station["reports"], station["open"], station["on_duty"]) == (1, 1, 1)
    assert station["accept_median_min"] is None  # nobody took it yet


def test_a_coarser_resolution_gathers_neighbouring_places_into_one_cell(client: TestClient, town: None) -> None:
    assert cell_of(OLD_TOWN, 5) == cell_of(STATION, 5)

    [county] = cells(client, res=5)["cells"]

    assert county["cell"] == cell_of(OLD_TOWN, 5)
    assert (county["reports"], county["open"], county["on_duty"]) == (5, 4, 3)


def test_a_cell_comes_with_its_centre_and_corners_for_the_map(client: TestClient, town: None) -> None:
    row = by_cell(cells(client, res=9))[cell_of(OLD_TOWN, 9)]

    assert len(row["boundary"]) == 6
    assert cell_of(LatLng(row["centre"]["lat"], row["centre"]["lng"]), 9) == row["cell"]
    assert all(abs(corner["lat"] - OLD_TOWN.lat) < 0.01 and abs(corner["lng"] - OLD_TOWN.lng) < 0.01
               for corner in row["boundary"])


def test_admin_sees_every_branch_and_a_region_narrows_to_it(client: TestClient, db: Session, town: None) -> None:
    everywhere = by_cell(cells(client, "admin", res=8))
    eh_id = client.get("/api/v1/regions", headers=log_in(client, "admin")).json()
    erenhot = next(region["id"] for region in eh_id if region["code"] == "EH")

    only_erenhot = by_cell(cells(client, "admin", res=8, region_id=erenhot))

    assert cell_of(ERENHOT, 8) in everywhere and cell_of(OLD_TOWN, 8) in everywhere
    assert set(only_erenhot) == {cell_of(ERENHOT, 8)}
    assert (only_erenhot[cell_of(ERENHOT, 8)]["reports"], only_erenhot[cell_of(ERENHOT, 8)]["on_duty"]) == (1, 1)


def test_a_period_without_reports_still_shows_open_tickets_and_technicians_now(client: TestClient,
                                                                               town: None) -> None:
    old_town = by_cell(cells(client, res=8, **{"from": "2026-01-01", "to": "2026-01-31"}))[cell_of(OLD_TOWN, 8)]

    assert (old_town["reports"], old_town["open"], old_town["on_duty"]) == (0, 3, 2)
    assert old_town["accept_median_min"] is None


@pytest.mark.parametrize("res", ["4", "10", "x"])
def test_a_resolution_out_of_range_is_a_problem_naming_res(client: TestClient, res: str) -> None:
    reply = client.get("/api/v1/stats/cells", params={**today(), "res": res}, headers=log_in(client, "dispatcher.xl"))

    assert reply.status_code == 422
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert "res" in reply.text


def test_technicians_may_not_read_cell_stats(client: TestClient) -> None:
    reply = client.get("/api/v1/stats/cells", params=today(), headers=log_in(client, "tech01"))

    assert reply.status_code == 403


def test_a_region_outside_the_callers_is_not_found(client: TestClient) -> None:
    regions = client.get("/api/v1/regions", headers=log_in(client, "admin")).json()
    erenhot = next(region["id"] for region in regions if region["code"] == "EH")

    reply = client.get("/api/v1/stats/cells", params={**today(), "region_id": erenhot},
                       headers=log_in(client, "dispatcher.xl"))

    assert reply.status_code == 404


def test_an_hour_counts_only_the_reports_of_that_local_hour_and_keeps_the_now_columns(
        client: TestClient, db: Session, town: None) -> None:
    this_hour = datetime.now(TZ).hour
    other_hour = (this_hour + 12) % 24
    earlier = report(client, OLD_TOWN)
    db.execute(update(Ticket).where(Ticket.id == earlier).values(  # the same local day, another hour
        created_at=datetime.now(TZ).replace(hour=other_hour, minute=30)))
    db.flush()

    now = by_cell(cells(client, res=8, hour=this_hour))[cell_of(OLD_TOWN, 8)]
    then = cells(client, res=8, hour=other_hour)

    assert (now["reports"], now["open"], now["on_duty"]) == (4, 4, 2)
    assert then["hour"] == other_hour
    assert (by_cell(then)[cell_of(OLD_TOWN, 8)]["reports"], by_cell(then)[cell_of(OLD_TOWN, 8)]["on_duty"]) == (1, 2)


@pytest.mark.parametrize("hour", ["-1", "24", "x"])
def test_an_hour_out_of_range_is_a_problem_naming_hour(client: TestClient, hour: str) -> None:
    reply = client.get("/api/v1/stats/cells", params={**today(), "hour": hour},
                       headers=log_in(client, "dispatcher.xl"))

    assert reply.status_code == 422
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert "hour" in reply.text


def worked_at(db: Session, username: str, where: LatLng, at: datetime, samples: int = 3) -> None:
    """`username`'s phone sampled at `where` around `at`, as the track's write-through stores it."""
    technician = db.scalars(select(Technician).join(User, User.id == Technician.user_id)
                            .where(User.username == username)).one()
    db.add_all(TrackPoint(technician_id=technician.id, at=at + timedelta(minutes=n), location=to_wkb(where))
               for n in range(samples))
    db.flush()


def test_present_counts_who_worked_in_a_cell_in_the_slider_hour_not_who_is_on_duty_now(
        client: TestClient, db: Session) -> None:
    now = datetime.now(TZ)
    other_hour = (now.hour + 12) % 24
    worked_at(db, "tech01", OLD_TOWN, now.replace(minute=0))
    worked_at(db, "tech02", OLD_TOWN, now.replace(hour=other_hour, minute=0))
    worked_at(db, "tech03", STATION, now.replace(hour=other_hour, minute=0))
    worked_at(db, "tech33", ERENHOT, now.replace(minute=0))  # another branch: not the XL dispatcher's supply

    this = by_cell(cells(client, res=8, hour=now.hour))
    other = by_cell(cells(client, res=8, hour=other_hour))
    day = by_cell(cells(client, res=8))

    assert this[cell_of(OLD_TOWN, 8)]["present"] == 1 and cell_of(STATION, 8) not in this
    assert (other[cell_of(OLD_TOWN, 8)]["present"], other[cell_of(STATION, 8)]["present"]) == (1, 1)
    assert (day[cell_of(OLD_TOWN, 8)]["present"], day[cell_of(STATION, 8)]["present"]) == (2, 1)
    assert cell_of(ERENHOT, 8) not in day
    assert all(row["on_duty"] == 0 for row in day.values())  # nobody is on duty now: supply came from the track
