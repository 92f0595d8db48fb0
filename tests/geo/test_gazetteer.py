"""The offline gazetteer on the demo city's places: reverse geocoding, address search and their HTTP contract."""

import random

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.kernel.errors import InvalidInput
from dispatch.seed import seed_demo
from geo import gazetteer
from geo.crs import wgs84_to_bd09, wgs84_to_gcj02
from geo.distance import haversine_m
from geo.latlng import LatLng
from geo.models import Place, Region
from geo.points import sql_point

BEIZI_TEMPLE = LatLng(43.9583, 116.0625)  # fixtures/places.csv
NORTH_OF_TEMPLE = LatLng(43.9593, 116.0625)  # 0.001 deg of latitude: about 111 m
EMPTY_CORNER = LatLng(43.903, 116.035)  # in 开发区 (XL-G06), about 1.5 km from the nearest place
TEN_KM_NORTH = LatLng(44.06, 116.08)  # outside every grid; XL-G02 额尔敦街道 is the nearest


def grid_code(db: Session, region_id: int) -> str:
    return db.scalars(select(Region.code).where(Region.id == region_id)).one()


def assert_field_error(reply, field: str) -> None:
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in reply.json()["errors"]]


# --- reverse -------------------------------------------------------------------------
def test_nearest_place_in_the_process_agrees_with_postgis(db: Session) -> None:
    # Points around the demo places, many within 500 m of one: PostGIS on the sphere is the reference.
    places = db.execute(select(func.ST_Y(Place.location), func.ST_X(Place.location))).all()
    rng = random.Random(11)
    points = [LatLng(lat + rng.uniform(-0.006, 0.006), lng + rng.uniform(-0.008, 0.008))
              for lat, lng in places for _ in range(8)]
    named = 0
    for point in points:
        distance = func.ST_Distance(func.geography(Place.location), func.geography(sql_point(point)))
        expected = db.execute(select(Place.id, distance).where(distance <= gazetteer.NEARBY_M)
                              .order_by(distance, Place.id).limit(1)).first()
        found = gazetteer.reverse(db, point)
        if expected is None:
            assert found.place_id is None or found.distance_m > gazetteer.NEARBY_M - 2.0  # the edge, on a sphere
            continue
        if abs(expected[1] - gazetteer.NEARBY_M) < 2.0:
            continue
        named += 1
        assert (found.place_id, found.distance_m) == (expected[0], pytest.approx(expected[1], abs=2.0))
    assert named > len(points) // 3



def test_point_next_to_a_place_names_it_with_its_distance(db: Session) -> None:
    found = gazetteer.reverse(db, NORTH_OF_TEMPLE)
    assert found.place_name == "贝子庙" and found.place_id is not None
    assert found.distance_m == pytest.approx(haversine_m(NORTH_OF_TEMPLE, BEIZI_TEMPLE), abs=1.0)
    assert found.address == "锡林浩特分公司 · 宝力根街道 · 贝子庙附近(约110米)"
    assert grid_code(db, found.grid_id) == "XL-G01" and found.outside_area is False


def test_point_on_a_place_is_about_ten_metres_from_it(db: Session) -> None:
    found = gazetteer.reverse(db, BEIZI_TEMPLE)
    assert found.distance_m == pytest.approx(0.0, abs=0.1)
    assert found.address.endswith("贝子庙附近(约10米)")


def test_nearest_of_two_places_is_named(db: Session) -> None:
    closer = LatLng(43.9553, 116.0418)  # about 215 m from 宝力根路, over 850 m from anything else
    found = gazetteer.reverse(db, closer)
    assert found.place_name == "宝力根路"
    assert found.distance_m is not None and 100 < found.distance_m < 250


def test_point_with_no_place_nearby_gives_branch_and_grid(db: Session) -> None:
    found = gazetteer.reverse(db, EMPTY_CORNER)
    assert found.address == "锡林浩特分公司 · 开发区"
    assert found.place_id is None and found.distance_m is None
    assert grid_code(db, found.grid_id) == "XL-G06" and found.outside_area is False


def test_place_just_beyond_500_m_is_not_named(db: Session) -> None:
    beyond = LatLng(BEIZI_TEMPLE.lat + 0.0046, BEIZI_TEMPLE.lng)  # about 511 m north
    assert haversine_m(beyond, BEIZI_TEMPLE) > 500
    assert gazetteer.reverse(db, beyond).place_id is None


def test_point_outside_every_grid_says_so_with_the_nearest_grid(db: Session) -> None:
    found = gazetteer.reverse(db, TEN_KM_NORTH)
    assert found.address == "锡林浩特分公司 · 额尔敦街道以外"
    assert found.outside_area is True and grid_code(db, found.grid_id) == "XL-G02"


def test_erenhot_point_is_worded_with_the_erenhot_branch(db: Session) -> None:
    found = gazetteer.reverse(db, LatLng(43.6470, 111.9790))
    assert found.address.startswith("二连浩特分公司 · ")
    assert found.place_name == "二连浩特站"


# --- search --------------------------------------------------------------------------

def names(hits: list[gazetteer.PlaceHit]) -> list[str]:
    return [h.name for h in hits]


def test_two_characters_find_the_temple(db: Session) -> None:
    hits = gazetteer.search(db, "贝子")
    assert names(hits)[0] == "贝子庙"
    top = hits[0]
    assert (top.kind, top.lat, top.lng) == ("landmark", BEIZI_TEMPLE.lat, BEIZI_TEMPLE.lng)
    assert top.address == "锡林浩特分公司 · 宝力根街道" and grid_code(db, top.region_id or 0) == "XL-G01"


def test_two_character_substring_finds_the_compounds_containing_it(db: Session) -> None:
    assert set(names(gazetteer.search(db, "花园"))) == {"锡林花园小区", "民族花园小区", "口岸花园小区"}
    assert names(gazetteer.search(db, "明珠")) == ["草原明珠小区"]


def test_one_character_finds_names_containing_it(db: Session) -> None:
    assert names(gazetteer.search(db, "庙")) == ["贝子庙"]


def test_exact_name_ranks_first_with_score_one(db: Session) -> None:
    hits = gazetteer.search(db, "锡林浩特站")
    assert hits[0].name == "锡林浩特站" and hits[0].score == 1.0
    assert len(hits) > 1 and all(h.score is not None and h.score < 1.0 for h in hits[1:])


def test_substring_matches_rank_above_fuzzy_ones(db: Session) -> None:
    hits = gazetteer.search(db, "锡林浩特市", limit=20)
    containing = [h.name for h in hits if "锡林浩特市" in h.name]
    assert len(containing) == 6
    assert names(hits)[:6] == containing
    # 锡林浩特站 shares four of the query's six trigrams: found, but only after every name containing it.
    assert "锡林浩特站" in names(hits)[6:]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_misspelt_name_is_still_found(db: Session) -> None:
    assert names(gazetteer.search(db, "锡林浩特医院"))[0] == "锡林浩特市医院"


def test_search_respects_the_limit(db: Session) -> None:
    hits = gazetteer.search(db, "小区", limit=3)
    assert len(hits) == 3 and all("小区" in h.name for h in hits)


def test_like_wildcards_in_the_query_are_literal(db: Session) -> None:
    assert gazetteer.search(db, "%") == [] and gazetteer.search(db, "_") == []


@pytest.mark.parametrize("q", ["", "   ", "\u3000"])
def test_empty_query_is_invalid_input_on_q(db: Session, q: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        gazetteer.search(db, q)
    assert caught.value.extra["errors"][0]["field"] == "q"


# --- seed ----------------------------------------------------------------------------

def test_seed_loaded_every_place_once_with_its_grid(db: Session) -> None:
    assert db.scalar(select(func.count()).select_from(Place)) == 42
    assert db.scalar(select(func.count()).select_from(Place).where(Place.region_id.is_(None))) == 0
    assert seed_demo(db, password="another-password")["places_added"] == 0
    assert db.scalar(select(func.count()).select_from(Place)) == 42


# --- HTTP ----------------------------------------------------------------------------

def reverse(client: TestClient, headers: dict[str, str], **params: object):
    return client.get("/api/v1/geo/reverse", params=params, headers=headers)


def test_reverse_over_http_names_the_place(client: TestClient, as_user, db: Session) -> None:
    reply = reverse(client, as_user("clerk.xl"), lat=NORTH_OF_TEMPLE.lat, lng=NORTH_OF_TEMPLE.lng)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["address"] == "锡林浩特分公司 · 宝力根街道 · 贝子庙附近(约110米)"
    assert body["outside_area"] is False and body["source"] == "gazetteer"
    assert grid_code(db, body["grid_id"]) == "XL-G01"
    assert body["place"]["name"] == "贝子庙" and 100 < body["place"]["distance_m"] < 120


def test_reverse_without_a_place_has_no_place_key(client: TestClient, as_user) -> None:
    body = reverse(client, as_user("tech01"), lat=EMPTY_CORNER.lat, lng=EMPTY_CORNER.lng).json()
    assert body["address"] == "锡林浩特分公司 · 开发区" and "place" not in body


def test_reverse_outside_the_area_over_http(client: TestClient, as_user) -> None:
    body = reverse(client, as_user("dispatcher.eh"), lat=TEN_KM_NORTH.lat, lng=TEN_KM_NORTH.lng).json()
    assert body["outside_area"] is True and body["address"].endswith("额尔敦街道以外")


def test_gcj02_input_is_converted_before_lookup(client: TestClient, as_user) -> None:
    headers = as_user("dispatcher.xl")
    gcj = wgs84_to_gcj02(NORTH_OF_TEMPLE)
    assert haversine_m(gcj, NORTH_OF_TEMPLE) > 500  # the datum shift alone would lose the temple
    as_wgs = reverse(client, headers, lat=NORTH_OF_TEMPLE.lat, lng=NORTH_OF_TEMPLE.lng).json()
    as_gcj = reverse(client, headers, lat=gcj.lat, lng=gcj.lng, crs="gcj02").json()
    assert as_gcj["address"] == as_wgs["address"] and as_gcj["grid_id"] == as_wgs["grid_id"]
    assert as_gcj["place"]["distance_m"] == pytest.approx(as_wgs["place"]["distance_m"], abs=0.2)
    taken_as_wgs = reverse(client, headers, lat=gcj.lat, lng=gcj.lng).json()
    assert "place" not in taken_as_wgs


def test_bd09_input_is_converted_too(client: TestClient, as_user) -> None:
    bd = wgs84_to_bd09(NORTH_OF_TEMPLE)
    body = reverse(client, as_user("dispatcher.xl"), lat=bd.lat, lng=bd.lng, crs="bd09").json()
    assert body["place"]["name"] == "贝子庙"


def test_search_over_http_returns_wgs84_items(client: TestClient, as_user) -> None:
    reply = client.get("/api/v1/geo/search", params={"q": "贝子"}, headers=as_user("tech01"))
    assert reply.status_code == 200, reply.text
    first = reply.json()["items"][0]
    assert first["name"] == "贝子庙" and first["source"] == "gazetteer"
    assert (first["lat"], first["lng"]) == (BEIZI_TEMPLE.lat, BEIZI_TEMPLE.lng)


def test_search_over_http_respects_limit(client: TestClient, as_user) -> None:
    reply = client.get("/api/v1/geo/search", params={"q": "小区", "limit": 2}, headers=as_user("clerk.xl"))
    assert len(reply.json()["items"]) == 2


@pytest.mark.parametrize(("params", "field"), [
    ({"lat": 91, "lng": 116.0}, "lat"),
    ({"lat": "nan", "lng": 116.0}, "lat"),
    ({"lat": 43.9, "lng": "inf"}, "lng"),
    ({"lat": 43.9, "lng": -180.5}, "lng"),
    ({"lat": 43.9, "lng": "east"}, "lng"),
    ({"lng": 116.0}, "lat"),
    ({"lat": 43.9, "lng": 116.0, "crs": "utm"}, "crs"),
])
def test_bad_reverse_input_is_422_naming_the_field(client: TestClient, as_user, params: dict, field: str) -> None:
    assert_field_error(reverse(client, as_user("dispatcher.xl"), **params), field)


@pytest.mark.parametrize(("params", "field"), [
    ({}, "q"), ({"q": ""}, "q"), ({"q": "  "}, "q"), ({"q": "贝子", "limit": 0}, "limit"),
    ({"q": "贝子", "limit": 51}, "limit"), ({"q": "x" * 101}, "q"),
])
def test_bad_search_input_is_422_naming_the_field(client: TestClient, as_user, params: dict, field: str) -> None:
    assert_field_error(client.get("/api/v1/geo/search", params=params, headers=as_user("dispatcher.xl")), field)


@pytest.mark.parametrize("path", ["/api/v1/geo/reverse?lat=43.95&lng=116.06", "/api/v1/geo/search?q=贝子"])
def test_geo_endpoints_need_a_signed_in_caller(client: TestClient, path: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 401
    assert reply.json()["code"] == "unauthorized"
