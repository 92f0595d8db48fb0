"""The one coordinate value type that crosses layers."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LatLng:
    """A point as (latitude, longitude) in degrees; WGS-84 unless a name says otherwise."""

    lat: float
    lng: float
