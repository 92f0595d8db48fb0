"""The Tencent Location Service adapter against a loopback peer, and the API's fallback to the gazetteer."""

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy.orm import Session

from dispatch.app import create_app
from dispatch.kernel.settings import GeocoderSettings, Settings
from geo import tencent
from geo.crs import gcj02_to_wgs84, wgs84_to_gcj02
from geo.latlng import LatLng
from tests.conftest import in_test_transaction, log_in
from tests.geo.tencent_peer import (
    ERROR_REPLY,
    REVERSE_PATH,
    SUGGESTION_PATH,
    TencentPeer,
    closed_port_url,
    reverse_reply,
    suggestion_reply,
)

KEY = "test-key"
NORTH_OF_TEMPLE = LatLng(43.9593, 116.0625)  # about 111 m north of 贝子庙 (fixtures/places.csv)
GAZETTEER_ADDRESS = "锡林浩特分公司 · 宝力根街道 · 贝子庙附近(约110米)"
RECOMMEND = "锡林浩特市贝子庙北(额尔敦路)"
# Two compounds Tencent knows and the gazetteer does not, as WGS-84 truth.
ONLINE_PLACES = {"幸福家园小区": LatLng(43.9421, 116.0734), "幸福里小区": LatLng(43.9267, 116.0952)}


@pytest.fixture
def peer() -> Iterator[TencentPeer]:
    with TencentPeer() as peer:
        yield peer


def geocoder(base_url: str, *, key: str | None = KEY, timeout_s: float = 2.0) -> GeocoderSettings:
    return GeocoderSettings(key=key, base_url=base_url, timeout_s=timeout_s)


def answer_reverse(peer: TencentPeer, recommend: str | None = RECOMMEND) -> None:
    gcj = wgs84_to_gcj02(NORTH_OF_TEMPLE)
    peer.answer(REVERSE_PATH, reverse_reply("内蒙古自治区锡林郭勒盟锡林浩特市额尔敦路", recommend,
                                            lat=gcj.lat, lng=gcj.lng))


def answer_suggestions(peer: TencentPeer) -> None:
    gcj = {title: wgs84_to_gcj02(point) for title, point in ONLINE_PLACES.items()}
    peer.answer(SUGGESTION_PATH, suggestion_reply(
        *((title, f"内蒙古自治区锡林郭勒盟锡林浩特市{title}", p.lat, p.lng) for title, p in gcj.items())))


# --- the adapter ---------------------------------------------------------------------

def test_reverse_sends_gcj02_and_the_key_and_returns_the_recommended_wording(peer: TencentPeer) -> None:
    answer_reverse(peer)
    assert tencent.reverse(geocoder(peer.url), NORTH_OF_TEMPLE) == RECOMMEND
    (seen,) = peer.requests
    assert seen.path == REVERSE_PATH and seen.params["key"] == KEY
    lat, lng = (float(v) for v in seen.params["location"].split(","))
    gcj = wgs84_to_gcj02(NORTH_OF_TEMPLE)
    assert (lat, lng) == pytest.approx((gcj.lat, gcj.lng), abs=1e-6)
    assert gcj02_to_wgs84(LatLng(lat, lng)) != LatLng(lat, lng)  # really shifted, not WGS-84 passed through


def test_reverse_without_a_recommendation_gives_the_full_address(peer: TencentPeer) -> None:
    answer_reverse(peer, recommend=None)
    assert tencent.reverse(geocoder(peer.url), NORTH_OF_TEMPLE) == "内蒙古自治区锡林郭勒盟锡林浩特市额尔敦路"


def test_suggest_sends_keyword_region_and_key_and_returns_wgs84(peer: TencentPeer) -> None:
    answer_suggestions(peer)
    found = tencent.suggest(geocoder(peer.url), "幸福", region="锡林郭勒盟", limit=5)
    assert [s.title for s in found] == list(ONLINE_PLACES)
    for s in found:
        truth = ONLINE_PLACES[s.title]
        assert (s.point.lat, s.point.lng) == pytest.approx((truth.lat, truth.lng), abs=1e-7)
    (seen,) = peer.requests
    assert seen.path == SUGGESTION_PATH
    assert (seen.params["keyword"], seen.params["region"], seen.params["key"]) == ("幸福", "锡林郭勒盟", KEY)
    assert seen.params["page_size"] == "5"


def test_suggest_keeps_to_the_limit(peer: TencentPeer) -> None:
    answer_suggestions(peer)
    assert len(tencent.suggest(geocoder(peer.url), "幸福", region="锡林郭勒盟", limit=1)) == 1


def test_bad_key_status_is_geocoder_unavailable_without_leaking_the_key(peer: TencentPeer) -> None:
    peer.answer(REVERSE_PATH, ERROR_REPLY)
    with pytest.raises(tencent.GeocoderUnavailable) as caught:
        tencent.reverse(geocoder(peer.url), NORTH_OF_TEMPLE)
    assert caught.value.status == 503 and caught.value.extra["upstream_status"] == 311
    assert "311" in caught.value.detail and KEY not in caught.value.detail


@pytest.mark.parametrize(("body", "status"), [
    ({"status": 0, "message": "query ok"}, 200),  # no result at all
    ({"status": 0, "result": {"location": {"lat": 1, "lng": 2}}}, 200),  # result without an address
    ("<html>busy</html>", 200),
    ('{"status": 0}', 502),
])
def test_malformed_or_failed_reply_is_geocoder_unavailable(peer: TencentPeer, body: dict | str, status: int) -> None:
    peer.answer(REVERSE_PATH, body, status=status)
    with pytest.raises(tencent.GeocoderUnavailable) as caught:
        tencent.reverse(geocoder(peer.url), NORTH_OF_TEMPLE)
    assert KEY not in caught.value.detail


def test_peer_down_is_geocoder_unavailable() -> None:
    with pytest.raises(tencent.GeocoderUnavailable):
        tencent.suggest(geocoder(closed_port_url()), "幸福", region="锡林郭勒盟")


def test_peer_too_slow_is_geocoder_unavailable(peer: TencentPeer) -> None:
    peer.stall()
    with pytest.raises(tencent.GeocoderUnavailable):
        tencent.reverse(geocoder(peer.url, timeout_s=0.2), NORTH_OF_TEMPLE)


def test_without_a_key_nothing_is_sent(peer: TencentPeer) -> None:
    with pytest.raises(tencent.GeocoderUnavailable):
        tencent.reverse(geocoder(peer.url, key=None), NORTH_OF_TEMPLE)
    assert peer.requests == []


# --- over HTTP, with the online geocoder configured ----------------------------------

AppClient = Callable[[str], TestClient]


@pytest.fixture
def online_client(settings: Settings, db: Session, redis: Redis) -> Iterator[AppClient]:
    """`online_client(base_url)` → a client of an app whose geocoder is Tencent at base_url (key set)."""
    clients: list[TestClient] = []

    def make(base_url: str) -> TestClient:
        cfg = settings.model_copy(update={"geocoder": settings.geocoder.model_copy(
            update={"key": KEY, "base_url": base_url, "timeout_s": 2.0})})
        app = create_app(cfg)

        in_test_transaction(app, db)
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def get_reverse(client: TestClient, point: LatLng = NORTH_OF_TEMPLE):
    return client.get("/api/v1/geo/reverse", params={"lat": point.lat, "lng": point.lng},
                      headers=log_in(client, "dispatcher.xl"))


def test_reverse_uses_tencent_when_it_answers(online_client: AppClient, peer: TencentPeer) -> None:
    answer_reverse(peer)
    reply = get_reverse(online_client(peer.url))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["source"] == "tencent" and body["address"] == RECOMMEND
    assert body["outside_area"] is False and body["place"]["name"] == "贝子庙"  # grid and place stay ours
    assert peer.requests[0].params["key"] == KEY


def test_reverse_falls_back_to_the_gazetteer_on_a_bad_key(online_client: AppClient, peer: TencentPeer) -> None:
    peer.answer(REVERSE_PATH, ERROR_REPLY)
    body = get_reverse(online_client(peer.url)).json()
    assert body["source"] == "gazetteer" and body["address"] == GAZETTEER_ADDRESS
    assert len(peer.requests) == 1


def test_reverse_falls_back_to_the_gazetteer_when_tencent_is_down(online_client: AppClient) -> None:
    reply = get_reverse(online_client(closed_port_url()))
    assert reply.status_code == 200, reply.text
    assert reply.json()["source"] == "gazetteer" and reply.json()["address"] == GAZETTEER_ADDRESS


def test_gcj02_input_reaches_tencent_as_the_same_gcj02_point(online_client: AppClient, peer: TencentPeer) -> None:
    answer_reverse(peer)
    client = online_client(peer.url)
    gcj = wgs84_to_gcj02(NORTH_OF_TEMPLE)
    reply = client.get("/api/v1/geo/reverse", params={"lat": gcj.lat, "lng": gcj.lng, "crs": "gcj02"},
                       headers=log_in(client, "dispatcher.xl"))
    assert reply.json()["source"] == "tencent"
    lat, lng = (float(v) for v in peer.requests[0].params["location"].split(","))
    assert (lat, lng) == pytest.approx((gcj.lat, gcj.lng), abs=2e-6)


def search(client: TestClient, q: str, limit: int = 10):
    return client.get("/api/v1/geo/search", params={"q": q, "limit": limit}, headers=log_in(client, "clerk.xl"))


def test_search_lists_gazetteer_hits_first_then_tencent_ones_in_wgs84(online_client: AppClient,
                                                                      peer: TencentPeer) -> None:
    answer_suggestions(peer)
    items = search(online_client(peer.url), "家园").json()["items"]
    assert [(i["name"], i["source"]) for i in items] == [
        ("和谐家园小区", "gazetteer"), ("幸福家园小区", "tencent"), ("幸福里小区", "tencent")]
    for item in items[1:]:
        truth = ONLINE_PLACES[item["name"]]
        assert (item["lat"], item["lng"]) == pytest.approx((truth.lat, truth.lng), abs=1e-7)
        assert item["score"] is None and item["region_id"] is None
    assert peer.requests[0].params["keyword"] == "家园"


def test_search_asks_tencent_only_when_the_gazetteer_leaves_room(online_client: AppClient,
                                                                 peer: TencentPeer) -> None:
    answer_suggestions(peer)
    items = search(online_client(peer.url), "小区", limit=5).json()["items"]
    assert len(items) == 5 and {i["source"] for i in items} == {"gazetteer"}
    assert peer.requests == []


def test_search_merges_without_duplicating_a_known_place(online_client: AppClient, peer: TencentPeer) -> None:
    temple = wgs84_to_gcj02(LatLng(43.9583, 116.0625))
    peer.answer(SUGGESTION_PATH, suggestion_reply(("贝子庙", "锡林浩特市额尔敦路", temple.lat, temple.lng),
                                                  ("贝子庙广场", "锡林浩特市额尔敦路", temple.lat, temple.lng)))
    items = search(online_client(peer.url), "贝子").json()["items"]
    assert [(i["name"], i["source"]) for i in items] == [("贝子庙", "gazetteer"), ("贝子庙广场", "tencent")]


def test_search_with_tencent_failing_still_gives_gazetteer_hits(online_client: AppClient,
                                                                peer: TencentPeer) -> None:
    peer.answer(SUGGESTION_PATH, ERROR_REPLY)
    reply = search(online_client(peer.url), "贝子")
    assert reply.status_code == 200, reply.text
    assert [i["name"] for i in reply.json()["items"]] == ["贝子庙"]
    assert len(peer.requests) == 1
