"""Presence over HTTP: duty, location pings into the live index, bad input, flood control and rosters.

The endpoints stamp pings with the real clock, so roster windows here are computed from the
current local time (Asia/Shanghai) with hours of margin; exact minute boundaries are checked with
a fixed `now` in tests/technicians/test_presence.py.
"""

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.kernel.settings import Settings
from geo import crs
from geo.distance import EARTH_MEAN_RADIUS_M, haversine_m
from geo.latlng import LatLng
from geo.models import Region
from geo.points import to_wkb
from technicians.live import LiveKeys
from technicians.models import Technician
from technicians.nearest import find_nearest

Headers = Callable[[str], dict[str, str]]
DUTY = "/api/v1/me/duty"
LOCATION = "/api/v1/me/location"
TICKET = LatLng(43.935, 116.08)  # grid XL-G05


def north_of(point: LatLng, metres: float) -> LatLng:
    return LatLng(point.lat + math.degrees(metres / EARTH_MEAN_RADIUS_M), point.lng)


def region(db: Session, code: str) -> Region:
    return db.scalars(select(Region).where(Region.code == code)).one()


def technician_id(db: Session, username: str) -> int:
    return db.scalars(select(Technician.id).join(User, User.id == Technician.user_id)
                      .where(User.username == username)).one()


def xl_keys(db: Session) -> LiveKeys:
    return LiveKeys.of(region(db, "XL").id)


def geopos(redis: Redis, db: Session, tid: int) -> LatLng | None:
    pos = redis.geopos(xl_keys(db).geo, str(tid))[0]
    return None if pos is None else LatLng(lat=pos[1], lng=pos[0])


def assert_problem(reply, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    body = reply.json()
    assert (body["status"], body["code"]) == (status, code)
    return body


def assert_nothing_stored(redis: Redis, db: Session) -> None:
    keys = xl_keys(db)
    assert redis.zcard(keys.geo) == 0
    assert redis.zcard(keys.fresh) == 0
    assert redis.llen(keys.track) == 0


def go_on_duty(client: TestClient, headers: dict[str, str]) -> None:
    reply = client.put(DUTY, json={"on_duty": True}, headers=headers)
    assert reply.status_code == 200, reply.text


def send(client: TestClient, headers: dict[str, str], point: LatLng, **extra: object):
    return client.put(LOCATION, json={"lat": point.lat, "lng": point.lng, **extra}, headers=headers)


def nearest_ids(db: Session, redis: Redis, settings: Settings) -> list[int]:
    found = find_nearest(redis, branch_id=region(db, "XL").id, point=TICKET, k=5, radius_m=3000, skills=[],
                         ticket_path=region(db, "XL-G05").path, now=datetime.now(UTC), tz=settings.timezone,
                         presence=settings.presence, offer=settings.offer)
    return [c.technician_id for c in found]


# --- duty --------------------------------------------------------------------------------

def test_going_on_duty_returns_on_duty_not_yet_located(client: TestClient, as_user: Headers, db: Session) -> None:
    reply = client.put(DUTY, json={"on_duty": True}, headers=as_user("tech01"))

    assert reply.status_code == 200, reply.text
    assert reply.json() == {"on_duty": True, "located": False}
    assert db.get(Technician, technician_id(db, "tech01")).on_duty is True


def test_going_on_duty_with_an_old_written_through_position_is_not_located(
        client: TestClient, as_user: Headers, db: Session, redis: Redis) -> None:
    # A position written through to PostgreSQL yesterday is not in the live index: the
    # technician cannot be found until the phone sends one ("False until the phone sends a
    # position after going on duty").
    tid = technician_id(db, "tech01")
    db.execute(update(Technician).where(Technician.id == tid).values(
        last_location=to_wkb(TICKET), last_seen_at=datetime.now(UTC) - timedelta(days=1)))

    reply = client.put(DUTY, json={"on_duty": True}, headers=as_user("tech01"))

    assert reply.status_code == 200, reply.text
    assert geopos(redis, db, tid) is None
    assert reply.json() == {"on_duty": True, "located": False}


def test_going_off_duty_removes_the_technician_from_the_live_index(client: TestClient, as_user: Headers,
                                                                   db: Session, redis: Redis) -> None:
    tech01 = as_user("tech01")
    go_on_duty(client, tech01)
    assert send(client, tech01, TICKET).status_code == 204
    assert geopos(redis, db, technician_id(db, "tech01")) is not None

    reply = client.put(DUTY, json={"on_duty": False}, headers=tech01)

    assert reply.status_code == 200, reply.text
    assert reply.json()["on_duty"] is False
    assert geopos(redis, db, technician_id(db, "tech01")) is None
    assert redis.hlen(xl_keys(db).meta) == 0


def test_dispatcher_cannot_go_on_duty(client: TestClient, as_user: Headers) -> None:
    assert_problem(client.put(DUTY, json={"on_duty": True}, headers=as_user("dispatcher.xl")),
                   403, "not_a_technician")


# --- location ----------------------------------------------------------------------------

def test_location_ping_lands_in_the_live_index(client: TestClient, as_user: Headers, db: Session,
                                               redis: Redis) -> None:
    tech01 = as_user("tech01")
    go_on_duty(client, tech01)
    where = north_of(TICKET, 100)
    before = int(datetime.now(UTC).timestamp())

    reply = send(client, tech01, where, accuracy_m=12.5)

    assert reply.status_code == 204, reply.text
    assert reply.content == b""
    tid = technician_id(db, "tech01")
    assert haversine_m(geopos(redis, db, tid), where) < 1
    assert before <= int(redis.zscore(xl_keys(db).fresh, str(tid))) <= before + 5
    # The accuracy is kept with the sampled track point.
    [sample] = redis.lrange(xl_keys(db).track, 0, -1)
    assert sample.decode().split("|")[0] == str(tid)
    assert float(sample.decode().split("|")[4]) == 12.5


@pytest.mark.parametrize("system", ["gcj02", "bd09"])
def test_location_in_a_chinese_datum_is_stored_as_wgs84(client: TestClient, as_user: Headers, db: Session,
                                                        redis: Redis, system: str) -> None:
    tech01 = as_user("tech01")
    go_on_duty(client, tech01)
    true_position = north_of(TICKET, 100)
    sent = crs.from_wgs84(true_position, system)
    assert haversine_m(sent, true_position) > 100  # the datum shift is far larger than the tolerance

    reply = send(client, tech01, sent, crs=system)

    assert reply.status_code == 204, reply.text
    assert haversine_m(geopos(redis, db, technician_id(db, "tech01")), true_position) < 1


def test_ping_while_off_duty_is_409_and_not_stored(client: TestClient, as_user: Headers, db: Session,
                                                   redis: Redis) -> None:
    body = assert_problem(send(client, as_user("tech01"), TICKET), 409, "off_duty")

    assert "not stored" in body["detail"]
    assert_nothing_stored(redis, db)


@pytest.mark.parametrize(("payload", "field"), [
    ('{"lat": 91, "lng": 116.08}', "lat"),
    ('{"lat": -90.5, "lng": 116.08}', "lat"),
    ('{"lat": 43.935, "lng": 180.01}', "lng"),
    ('{"lat": NaN, "lng": 116.08}', "lat"),
    ('{"lat": 43.935, "lng": Infinity}', "lng"),
    ('{"lat": 43.935, "lng": 116.08, "crs": "utm"}', "crs"),
    ('{"lat": 43.935, "lng": 116.08, "accuracy_m": -1}', "accuracy_m"),
    ('{"lat": 43.935, "lng": 116.08, "accuracy_m": NaN}', "accuracy_m"),
    ('{"lng": 116.08}', "lat"),
    ('{"lat": "north", "lng": 116.08}', "lat"),
], ids=["lat-91", "lat-minus-90.5", "lng-180.01", "lat-nan", "lng-infinity", "crs-utm", "accuracy-negative",
        "accuracy-nan", "lat-missing", "lat-text"])
def test_bad_location_is_422_naming_the_field_and_nothing_is_stored(
        client: TestClient, as_user: Headers, db: Session, redis: Redis, payload: str, field: str) -> None:
    tech01 = as_user("tech01")
    go_on_duty(client, tech01)

    reply = client.put(LOCATION, content=payload, headers={**tech01, "Content-Type": "application/json"})

    body = assert_problem(reply, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == [field]
    assert_nothing_stored(redis, db)


def test_latitude_beyond_the_live_index_range_is_422_not_500(client: TestClient, as_user: Headers, db: Session,
                                                              redis: Redis) -> None:
    # Redis GEO holds latitudes within +-85.05112878 only; lat 86 passes the schema (+-90)
    # and then fails inside the ping script.
    tech01 = as_user("tech01")
    go_on_duty(client, tech01)

    reply = send(client, tech01, LatLng(86.0, 116.08))

    body = assert_problem(reply, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["lat"]
    assert_nothing_stored(redis, db)


def test_flood_of_pings_is_429_with_retry_after(client: TestClient, as_user: Headers, db: Session, redis: Redis,
                                                settings: Settings) -> None:
    tech01 = as_user("tech01")
    go_on_duty(client, tech01)
    limit, window = settings.presence.ping_limit, settings.presence.ping_window_s
    for _ in range(limit):
        assert send(client, tech01, TICKET).status_code == 204

    reply = send(client, tech01, north_of(TICKET, 2000))

    body = assert_problem(reply, 429, "rate_limited")
    assert 1 <= int(reply.headers["Retry-After"]) <= window
    assert body["retry_after"] == int(reply.headers["Retry-After"])
    assert haversine_m(geopos(redis, db, technician_id(db, "tech01")), TICKET) < 1  # the extra one was dropped


def test_flood_from_one_phone_does_not_limit_another(client: TestClient, as_user: Headers,
                                                     settings: Settings) -> None:
    tech01, tech02 = as_user("tech01"), as_user("tech02")
    go_on_duty(client, tech01)
    go_on_duty(client, tech02)
    for _ in range(settings.presence.ping_limit + 1):
        send(client, tech01, TICKET)

    assert send(client, tech02, TICKET).status_code == 204


def test_dispatcher_sending_a_location_is_403(client: TestClient, as_user: Headers, db: Session,
                                              redis: Redis) -> None:
    assert_problem(send(client, as_user("dispatcher.xl"), TICKET), 403, "not_a_technician")
    assert_nothing_stored(redis, db)


def test_location_without_a_token_is_401(client: TestClient) -> None:
    assert_problem(client.put(LOCATION, json={"lat": TICKET.lat, "lng": TICKET.lng}), 401, "unauthorized")


# --- rosters -----------------------------------------------------------------------------

def local_now(settings: Settings) -> datetime:
    return datetime.now(ZoneInfo(settings.timezone))


def shift_excluding_now(settings: Settings) -> dict:
    return {"weekday": (local_now(settings) + timedelta(days=3)).weekday(), "starts": "10:00", "ends": "11:00"}


def shift_covering_now(settings: Settings) -> dict:
    # From an hour ago to an hour ahead: runs past midnight when now is within an hour of it.
    starts, ends = local_now(settings) - timedelta(hours=1), local_now(settings) + timedelta(hours=1)
    return {"weekday": starts.weekday(), "starts": starts.strftime("%H:%M"), "ends": ends.strftime("%H:%M")}


def roster_url(tid: int) -> str:
    return f"/api/v1/technicians/{tid}/roster"


def test_off_shift_technician_is_refused_and_not_offered(client: TestClient, as_user: Headers, db: Session,
                                                         redis: Redis, settings: Settings) -> None:
    tech01, tid = as_user("tech01"), technician_id(db, "tech01")
    go_on_duty(client, tech01)
    assert send(client, tech01, north_of(TICKET, 100)).status_code == 204  # no roster yet: any time
    assert nearest_ids(db, redis, settings) == [tid]

    shift = shift_excluding_now(settings)
    reply = client.put(roster_url(tid), json=[shift], headers=as_user("dispatcher.xl"))
    assert reply.status_code == 200, reply.text

    body = assert_problem(send(client, tech01, north_of(TICKET, 2000)), 409, "off_shift")
    assert "not stored" in body["detail"]
    assert haversine_m(geopos(redis, db, tid), north_of(TICKET, 100)) < 1
    assert redis.llen(xl_keys(db).track) == 1  # only the ping from before the roster
    assert nearest_ids(db, redis, settings) == []


def test_on_shift_technician_is_stored_and_offered(client: TestClient, as_user: Headers, db: Session,
                                                   redis: Redis, settings: Settings) -> None:
    tech01, tid = as_user("tech01"), technician_id(db, "tech01")
    reply = client.put(roster_url(tid), json=[shift_covering_now(settings), shift_excluding_now(settings)],
                       headers=as_user("dispatcher.xl"))
    assert reply.status_code == 200, reply.text
    go_on_duty(client, tech01)

    assert send(client, tech01, north_of(TICKET, 100)).status_code == 204

    assert haversine_m(geopos(redis, db, tid), north_of(TICKET, 100)) < 1
    assert nearest_ids(db, redis, settings) == [tid]


def test_roster_is_read_back_in_week_order(client: TestClient, as_user: Headers, db: Session) -> None:
    tid = technician_id(db, "tech01")
    shifts = [{"weekday": 4, "starts": "13:00", "ends": "17:30"}, {"weekday": 0, "starts": "22:00", "ends": "06:00"}]

    put = client.put(roster_url(tid), json=shifts, headers=as_user("dispatcher.xl"))
    got = client.get(roster_url(tid), headers=as_user("clerk.xl"))

    expected = {"technician_id": tid, "shifts": [{"weekday": 0, "starts": "22:00:00", "ends": "06:00:00"},
                                                 {"weekday": 4, "starts": "13:00:00", "ends": "17:30:00"}]}
    assert put.status_code == 200, put.text
    assert put.json() == expected
    assert got.status_code == 200, got.text
    assert got.json() == expected


def test_empty_roster_means_any_time(client: TestClient, as_user: Headers, db: Session) -> None:
    tid = technician_id(db, "tech01")
    client.put(roster_url(tid), json=[{"weekday": 1, "starts": "08:00", "ends": "12:00"}],
               headers=as_user("dispatcher.xl"))

    reply = client.put(roster_url(tid), json=[], headers=as_user("dispatcher.xl"))

    assert reply.status_code == 200, reply.text
    assert reply.json() == {"technician_id": tid, "shifts": []}
    assert client.get(roster_url(tid), headers=as_user("dispatcher.xl")).json()["shifts"] == []


def test_zero_length_shift_is_422_and_the_roster_is_unchanged(client: TestClient, as_user: Headers,
                                                              db: Session) -> None:
    tid, dispatcher = technician_id(db, "tech01"), as_user("dispatcher.xl")
    kept = [{"weekday": 1, "starts": "08:00:00", "ends": "12:00:00"}]
    assert client.put(roster_url(tid), json=kept, headers=dispatcher).status_code == 200

    reply = client.put(roster_url(tid), json=[{"weekday": 2, "starts": "09:00", "ends": "09:00"}],
                       headers=dispatcher)

    body = assert_problem(reply, 422, "validation_error")
    [error] = body["errors"]
    # Named the way the schema names a bad `ends` of the same shift in the same body.
    schema_error = client.put(roster_url(tid), json=[{"weekday": 2, "starts": "09:00"}], headers=dispatcher)
    assert error["field"] == assert_problem(schema_error, 422, "validation_error")["errors"][0]["field"]
    assert client.get(roster_url(tid), headers=dispatcher).json()["shifts"] == kept


@pytest.mark.parametrize(("shift", "field"), [
    ({"weekday": 7, "starts": "08:00", "ends": "12:00"}, "0.weekday"),
    ({"weekday": 1, "starts": "25:00", "ends": "12:00"}, "0.starts"),
    ({"weekday": 1, "starts": "08:00"}, "0.ends"),
    # A shift is local time: an offset would be dropped (or, past ±15:59, refused by PostgreSQL as a 500).
    ({"weekday": 1, "starts": "08:00", "ends": "13:03:55-21:54"}, "0.ends"),
    ({"weekday": 1, "starts": "08:00+08:00", "ends": "12:00"}, "0.starts"),
])
def test_malformed_shift_is_422_naming_the_field(client: TestClient, as_user: Headers, db: Session,
                                                 shift: dict, field: str) -> None:
    reply = client.put(roster_url(technician_id(db, "tech01")), json=[shift], headers=as_user("dispatcher.xl"))

    body = assert_problem(reply, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == [field]


def test_dispatcher_of_another_branch_cannot_see_or_set_the_roster(client: TestClient, as_user: Headers,
                                                                   db: Session) -> None:
    tid = technician_id(db, "tech01")
    shift = {"weekday": 1, "starts": "08:00", "ends": "12:00"}

    assert_problem(client.put(roster_url(tid), json=[shift], headers=as_user("dispatcher.eh")), 404, "not_found")
    assert_problem(client.get(roster_url(tid), headers=as_user("dispatcher.eh")), 404, "not_found")
    assert client.get(roster_url(tid), headers=as_user("dispatcher.xl")).json()["shifts"] == []


def test_clerk_may_read_but_not_set_a_roster(client: TestClient, as_user: Headers, db: Session) -> None:
    tid = technician_id(db, "tech01")

    reply = client.put(roster_url(tid), json=[{"weekday": 1, "starts": "08:00", "ends": "12:00"}],
                       headers=as_user("clerk.xl"))

    assert reply.status_code == 403, reply.text
    assert client.get(roster_url(tid), headers=as_user("clerk.xl")).status_code == 200


def test_technician_cannot_set_their_own_roster(client: TestClient, as_user: Headers, db: Session) -> None:
    tid = technician_id(db, "tech01")

    reply = client.put(roster_url(tid), json=[], headers=as_user("tech01"))

    assert reply.status_code == 403, reply.text


# --- what the registry lets in must fit the live index -----------------------------------

def test_technician_with_a_separator_in_a_skill_is_refused_or_still_tracked(
        client: TestClient, as_user: Headers, db: Session, redis: Redis, settings: Settings) -> None:
    # The live index packs "skills|scope|max_active|roster" into one hash field, and the
    # registry accepts any skill text. Either such a skill is refused at registration, or the
    # technician can still go on duty, be tracked and be found for the skills they have.
    created = client.post("/api/v1/technicians", headers=as_user("dispatcher.xl"), json={
        "name": "测试", "phone": "13900000999", "username": "tech.pipe", "password": "pipe-pw-1234",
        "skills": ["broadband", "fibre|hd"], "region_id": region(db, "XL").id, "max_active": 3})
    if created.status_code == 422:
        assert "skills" in created.json()["errors"][0]["field"]
        return
    assert created.status_code == 201, created.text
    token = client.post("/api/v1/auth/token", data={"username": "tech.pipe", "password": "pipe-pw-1234"})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    go_on_duty(client, headers)

    reply = send(client, headers, north_of(TICKET, 100))

    assert reply.status_code == 204, reply.text
    assert nearest_ids(db, redis, settings) == [created.json()["id"]]
