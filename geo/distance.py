"""Great-circle distance on a spherical earth."""

import math

from geo.latlng import LatLng

# IUGG mean earth radius (2a + b) / 3 for WGS-84; keeps the spherical
# approximation's error within about 0.5 % anywhere on earth.
EARTH_MEAN_RADIUS_M = 6371008.8


def haversine_m(a: LatLng, b: LatLng) -> float:
    """Distance in metres between two WGS-84 points.

    Haversine rather than the spherical law of cosines because it stays
    accurate for the metre-scale distances dispatch compares.
    """
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat = lat2 - lat1
    dlng = math.radians(b.lng - a.lng)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlng / 2) ** 2
    # min() guards against h creeping above 1 through rounding for
    # near-antipodal points, which would make asin raise.
    return 2 * EARTH_MEAN_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
