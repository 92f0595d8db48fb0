"""Behaviour of WGS-84 / GCJ-02 / BD-09 conversions that map users would notice."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.crs import (
    Crs,
    bd09_to_gcj02,
    bd09_to_wgs84,
    from_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    out_of_china,
    to_wgs84,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from geo.distance import haversine_m
from geo.latlng import LatLng

XILINHOT = LatLng(43.93, 116.08)
ERENHOT = LatLng(43.65, 111.98)

# (WGS-84, GCJ-02) pairs.
GCJ02_REFERENCE = [
    # googollee/eviltransform python/test.py (same table in its go/ and php/ tests)
    pytest.param(LatLng(31.1774276, 121.5272106), LatLng(31.17530398364597, 121.531541859215), id="shanghai"),
    pytest.param(LatLng(22.543847, 113.912316), LatLng(22.540796131694766, 113.9171764808363), id="shenzhen"),
    pytest.param(LatLng(39.911954, 116.377817), LatLng(39.91334545536069, 116.38404722455657), id="beijing"),
    # wandergis/coordtransform test/app.js: wgs84togcj02(116.404, 39.915), near Tiananmen
    pytest.param(LatLng(39.915, 116.404), LatLng(39.91640428150164, 116.41024449916938), id="tiananmen"),
]

# (GCJ-02, BD-09) pairs.
BD09_FROM_GCJ02_REFERENCE = [
    # wandergis/coordtransform test/app.js: gcj02tobd09(116.404, 39.915)
    pytest.param(
        LatLng(39.915, 116.404), LatLng(39.92133699351021, 116.41036949371029), id="coordtransform-beijing"
    ),
    # Alibaba Cloud address-purification TransferCoord API doc example (6 decimals, ~0.1 m):
    # https://help.aliyun.com/zh/address-purification/addrpapi/developer-reference/coordinate-system-conversion
    pytest.param(LatLng(30.279164, 120.026268), LatLng(30.285238, 120.032768), id="aliyun-hangzhou"),
]

# (WGS-84, BD-09) pairs.
BD09_FROM_WGS84_REFERENCE = [
    # dromara/hutool CoordinateUtilTest.wgs84toBd09Test2, values from https://tool.lu/coordinate/
    pytest.param(
        LatLng(44.99804071, 122.99395597), LatLng(45.0063690918959, 123.00636516028885), id="tool.lu"
    ),
    # dromara/hutool CoordinateUtilTest.wgs84toBd09Test (after its lng-formula fix)
    pytest.param(
        LatLng(39.915, 116.404), LatLng(39.922699552216216, 116.41662724378733), id="hutool-beijing"
    ),
]

# Published values carry many more digits than this, so this only absorbs
# float noise and Aliyun's 6-decimal rounding; the one-step GCJ-02 inverse
# misses these points by 0.3-1.9 m and would fail.
REFERENCE_TOLERANCE_M = 0.2

OUTSIDE_CHINA = [
    pytest.param(LatLng(35.6762, 139.6503), id="tokyo"),
    pytest.param(LatLng(48.8566, 2.3522), id="paris"),
    pytest.param(LatLng(51.5074, -0.1278), id="london"),
]

# Mainland China's extent (Hainan to Mohe, Pamirs to the Ussuri), kept well
# inside the GCJ-02 box so a shifted point never crosses the box edge.
mainland = st.builds(
    LatLng,
    lat=st.floats(min_value=18.0, max_value=53.5),
    lng=st.floats(min_value=73.7, max_value=135.0),
)


@pytest.mark.parametrize(("wgs", "gcj"), GCJ02_REFERENCE)
def test_wgs84_to_gcj02_matches_published_points(wgs: LatLng, gcj: LatLng) -> None:
    assert haversine_m(wgs84_to_gcj02(wgs), gcj) < REFERENCE_TOLERANCE_M


@pytest.mark.parametrize(("wgs", "gcj"), GCJ02_REFERENCE)
def test_gcj02_to_wgs84_is_exact_inverse_on_published_points(wgs: LatLng, gcj: LatLng) -> None:
    assert haversine_m(gcj02_to_wgs84(gcj), wgs) < REFERENCE_TOLERANCE_M


@pytest.mark.parametrize(("gcj", "bd"), BD09_FROM_GCJ02_REFERENCE)
def test_gcj02_to_bd09_matches_published_points(gcj: LatLng, bd: LatLng) -> None:
    assert haversine_m(gcj02_to_bd09(gcj), bd) < REFERENCE_TOLERANCE_M


def test_bd09_to_gcj02_matches_published_point() -> None:
    # wandergis/coordtransform test/app.js: bd09togcj02(116.404, 39.915)
    got = bd09_to_gcj02(LatLng(39.915, 116.404))
    assert haversine_m(got, LatLng(39.90865673957631, 116.39762729119315)) < REFERENCE_TOLERANCE_M


@pytest.mark.parametrize(("wgs", "bd"), BD09_FROM_WGS84_REFERENCE)
def test_wgs84_to_bd09_matches_published_points(wgs: LatLng, bd: LatLng) -> None:
    assert haversine_m(wgs84_to_bd09(wgs), bd) < REFERENCE_TOLERANCE_M


@pytest.mark.parametrize(("wgs", "bd"), BD09_FROM_WGS84_REFERENCE)
def test_bd09_to_wgs84_recovers_published_points(wgs: LatLng, bd: LatLng) -> None:
    # Baidu's published BD-09 inverse is itself approximate (up to ~0.2 m).
    assert haversine_m(bd09_to_wgs84(bd), wgs) < 0.5


@settings(database=None, max_examples=300, deadline=None)
@given(mainland)
def test_gcj02_round_trip_within_a_metre(p: LatLng) -> None:
    assert haversine_m(gcj02_to_wgs84(wgs84_to_gcj02(p)), p) < 1.0


@settings(database=None, max_examples=300, deadline=None)
@given(mainland)
def test_bd09_round_trip_within_a_metre(p: LatLng) -> None:
    assert haversine_m(bd09_to_wgs84(wgs84_to_bd09(p)), p) < 1.0


@pytest.mark.parametrize("p", [pytest.param(XILINHOT, id="xilinhot"), pytest.param(ERENHOT, id="erenhot")])
@pytest.mark.parametrize("crs", list(Crs))
def test_round_trip_in_inner_mongolia(p: LatLng, crs: Crs) -> None:
    assert haversine_m(to_wgs84(from_wgs84(p, crs), crs), p) < 1.0


def test_gcj02_shift_in_xilinhot_is_a_few_hundred_metres() -> None:
    shift = haversine_m(XILINHOT, wgs84_to_gcj02(XILINHOT))
    assert 100.0 < shift < 1000.0


@pytest.mark.parametrize("p", OUTSIDE_CHINA)
def test_gcj02_is_identity_outside_china(p: LatLng) -> None:
    assert out_of_china(p)
    assert wgs84_to_gcj02(p) == p
    assert gcj02_to_wgs84(p) == p
    assert to_wgs84(p, "gcj02") == p


@pytest.mark.parametrize("p", OUTSIDE_CHINA)
def test_bd09_still_offsets_outside_china_and_round_trips(p: LatLng) -> None:
    # Baidu applies its BD-09 rotation worldwide, on top of unshifted GCJ-02.
    bd = wgs84_to_bd09(p)
    assert haversine_m(bd, p) > 100.0
    assert haversine_m(bd09_to_wgs84(bd), p) < 1.0


def test_xilinhot_and_erenhot_are_inside_china() -> None:
    assert not out_of_china(XILINHOT)
    assert not out_of_china(ERENHOT)


def test_wgs84_is_passthrough() -> None:
    assert to_wgs84(XILINHOT, Crs.WGS84) == XILINHOT
    assert from_wgs84(XILINHOT, "wgs84") == XILINHOT


def test_entry_points_accept_strings_and_enum_alike() -> None:
    assert from_wgs84(XILINHOT, "bd09") == from_wgs84(XILINHOT, Crs.BD09) == wgs84_to_bd09(XILINHOT)
    assert to_wgs84(XILINHOT, "gcj02") == gcj02_to_wgs84(XILINHOT)


def test_unknown_crs_is_rejected() -> None:
    with pytest.raises(ValueError):
        to_wgs84(XILINHOT, "epsg3857")
    with pytest.raises(ValueError):
        from_wgs84(XILINHOT, "GCJ02 ")
