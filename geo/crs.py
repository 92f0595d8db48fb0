"""Conversions between WGS-84, GCJ-02 and BD-09 coordinates.

Why this exists: Chinese law requires published maps of the mainland to use
GCJ-02 ("Mars coordinates"), a deliberately obfuscated datum that shifts
WGS-84 positions by a smooth, non-linear offset of typically 100-700 m.
WeChat / Tencent and AMap hand us GCJ-02; Baidu adds a second, private
rotation-and-offset on top of GCJ-02 called BD-09. GPS receivers, H3 and our
own storage speak WGS-84, so every coordinate crossing that border must be
converted here and nowhere else.

Where the numbers come from: the GCJ-02 algorithm was never published; the
formula below is the leaked / reverse-engineered one that every open
implementation shares (e.g. github.com/googollee/eviltransform and
github.com/wandergis/coordtransform). It scales its polynomial-plus-sine
offset by the radii of curvature of the Krasovsky 1940 ellipsoid
(a = 6378245.0 m, e^2 = 0.00669342162296594323), which is what the Chinese
mapping agency used rather than the WGS-84 ellipsoid. BD-09 perturbs GCJ-02
in polar form with period x_pi = pi * 3000 / 180 and then adds a fixed
(0.0065, 0.006) degree offset.

The forward GCJ-02 transform has no closed-form inverse, so gcj02_to_wgs84
solves it by fixed-point iteration instead of the common one-step guess,
which is off by up to a few metres.
"""

import math
from enum import StrEnum

from geo.latlng import LatLng

_KRASOVSKY_A = 6378245.0
_KRASOVSKY_EE = 0.00669342162296594323
_BD_X_PI = math.pi * 3000.0 / 180.0

# Chosen so the inverse error (< 1e-9 deg, about 0.1 mm) is far below any
# map's precision; the iteration converges in a handful of steps because the
# offset varies slowly (its derivative is ~1e-3).
_INVERSE_TOLERANCE_DEG = 1e-9
_INVERSE_MAX_ITERATIONS = 50


class Crs(StrEnum):
    """Coordinate reference systems a client may send us."""

    WGS84 = "wgs84"
    GCJ02 = "gcj02"
    BD09 = "bd09"


def out_of_china(p: LatLng) -> bool:
    """True where GCJ-02 leaves coordinates alone.

    This is the rough bounding box of the reference implementations, not the
    real border; using the same box keeps us consistent with other GCJ-02
    producers near its edges (e.g. Korea and Mongolia are inside it).
    """
    return not (72.004 <= p.lng <= 137.8347 and 0.8293 <= p.lat <= 55.8271)


def _shift_lat(x: float, y: float) -> float:
    # x, y are degrees east of 105 E and north of 35 N; the result is in
    # metre-like units that _gcj02_offset scales into degrees.
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def _shift_lng(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def _gcj02_offset(p: LatLng) -> tuple[float, float]:
    """(dlat, dlng) in degrees that GCJ-02 adds to the WGS-84 point p."""
    x, y = p.lng - 105.0, p.lat - 35.0
    rad_lat = math.radians(p.lat)
    sin_lat = math.sin(rad_lat)
    magic = 1.0 - _KRASOVSKY_EE * sin_lat * sin_lat
    sqrt_magic = math.sqrt(magic)
    # Meridional and prime-vertical radii of curvature turn the metre-ish
    # shift into degrees, so the offset has the same size on the ground at
    # every latitude.
    meridian_radius = _KRASOVSKY_A * (1.0 - _KRASOVSKY_EE) / (magic * sqrt_magic)
    parallel_radius = _KRASOVSKY_A / sqrt_magic * math.cos(rad_lat)
    dlat = _shift_lat(x, y) * 180.0 / (meridian_radius * math.pi)
    dlng = _shift_lng(x, y) * 180.0 / (parallel_radius * math.pi)
    return dlat, dlng


def wgs84_to_gcj02(p: LatLng) -> LatLng:
    """Obfuscate a WGS-84 point the way Chinese map providers expect."""
    if out_of_china(p):
        return p
    dlat, dlng = _gcj02_offset(p)
    return LatLng(p.lat + dlat, p.lng + dlng)


def gcj02_to_wgs84(p: LatLng) -> LatLng:
    """Recover the WGS-84 point whose GCJ-02 image is p.

    Solves wgs84_to_gcj02(w) == p by iterating w <- w - (gcj(w) - p). Each
    step shrinks the error by roughly the offset's slope (~1e-3), so it is
    both faster and far more accurate than bisection or the one-step guess.
    """
    if out_of_china(p):
        return p
    lat, lng = p.lat, p.lng
    for _ in range(_INVERSE_MAX_ITERATIONS):
        # Evaluate the offset at the current guess directly rather than via
        # wgs84_to_gcj02: a guess that drifts just outside the box must not
        # make the residual jump to zero and stop the search early.
        dlat, dlng = _gcj02_offset(LatLng(lat, lng))
        err_lat = lat + dlat - p.lat
        err_lng = lng + dlng - p.lng
        lat -= err_lat
        lng -= err_lng
        if max(abs(err_lat), abs(err_lng)) < _INVERSE_TOLERANCE_DEG:
            break
    return LatLng(lat, lng)


def gcj02_to_bd09(p: LatLng) -> LatLng:
    """Apply Baidu's extra obfuscation on top of GCJ-02.

    Unlike GCJ-02 this has no bounding-box exemption: Baidu applies it
    worldwide, and so does the coordtransform reference implementation.
    """
    z = math.hypot(p.lng, p.lat) + 0.00002 * math.sin(p.lat * _BD_X_PI)
    theta = math.atan2(p.lat, p.lng) + 0.000003 * math.cos(p.lng * _BD_X_PI)
    return LatLng(z * math.sin(theta) + 0.006, z * math.cos(theta) + 0.0065)


def bd09_to_gcj02(p: LatLng) -> LatLng:
    """Undo Baidu's obfuscation (the published inverse; error well below 1 m)."""
    x = p.lng - 0.0065
    y = p.lat - 0.006
    z = math.hypot(x, y) - 0.00002 * math.sin(y * _BD_X_PI)
    theta = math.atan2(y, x) - 0.000003 * math.cos(x * _BD_X_PI)
    return LatLng(z * math.sin(theta), z * math.cos(theta))


def wgs84_to_bd09(p: LatLng) -> LatLng:
    """WGS-84 to Baidu; BD-09 is defined only relative to GCJ-02."""
    return gcj02_to_bd09(wgs84_to_gcj02(p))


def bd09_to_wgs84(p: LatLng) -> LatLng:
    """Baidu to WGS-84 via GCJ-02, using the exact GCJ-02 inverse."""
    return gcj02_to_wgs84(bd09_to_gcj02(p))


def to_wgs84(p: LatLng, crs: Crs | str) -> LatLng:
    """Convert p, given in crs, to WGS-84 (the project's storage datum)."""
    match Crs(crs):
        case Crs.WGS84:
            return p
        case Crs.GCJ02:
            return gcj02_to_wgs84(p)
        case Crs.BD09:
            return bd09_to_wgs84(p)


def from_wgs84(p: LatLng, crs: Crs | str) -> LatLng:
    """Convert the WGS-84 point p into crs, e.g. before sending it to a map SDK."""
    match Crs(crs):
        case Crs.WGS84:
            return p
        case Crs.GCJ02:
            return wgs84_to_gcj02(p)
        case Crs.BD09:
            return wgs84_to_bd09(p)
