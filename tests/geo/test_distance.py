"""Great-circle distances."""

import math

import pytest

from geo.distance import EARTH_MEAN_RADIUS_M, haversine_m
from geo.latlng import LatLng

XILINHOT = LatLng(43.93, 116.08)
ERENHOT = LatLng(43.65, 111.98)


def test_one_degree_of_latitude_is_about_111_km() -> None:
    assert haversine_m(LatLng(45.0, 10.0), LatLng(46.0, 10.0)) == pytest.approx(111_195, rel=1e-3)


def test_xilinhot_to_erenhot() -> None:
    # ~330.5 km great-circle (computed independently); a lat/lng mix-up or a
    # degrees/radians slip would be off by far more than 1 %.
    assert haversine_m(XILINHOT, ERENHOT) == pytest.approx(330_540, rel=0.01)


def test_symmetric_and_zero_for_same_point() -> None:
    assert haversine_m(XILINHOT, XILINHOT) == 0.0
    assert haversine_m(XILINHOT, ERENHOT) == haversine_m(ERENHOT, XILINHOT)


def test_longitude_degree_shrinks_with_latitude() -> None:
    at_equator = haversine_m(LatLng(0.0, 0.0), LatLng(0.0, 1.0))
    at_60n = haversine_m(LatLng(60.0, 0.0), LatLng(60.0, 1.0))
    assert at_60n == pytest.approx(at_equator / 2, rel=1e-3)


def test_antipodes_are_half_a_circumference() -> None:
    assert haversine_m(LatLng(0.0, 0.0), LatLng(0.0, 180.0)) == pytest.approx(math.pi * EARTH_MEAN_RADIUS_M)
