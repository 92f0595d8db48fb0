"""LatLng ↔ PostGIS/shapely: GeoJSON and shapely order (lng, lat), LatLng does not."""

from geoalchemy2 import WKBElement
from geoalchemy2.shape import from_shape, to_shape
from shapely.geometry import Point
from sqlalchemy import func
from sqlalchemy.sql.elements import ColumnElement

from geo.latlng import LatLng

SRID = 4326


def to_wkb(p: LatLng) -> WKBElement:
    return from_shape(Point(p.lng, p.lat), srid=SRID)


def from_wkb(element: WKBElement) -> LatLng:
    point = to_shape(element)
    return LatLng(lat=point.y, lng=point.x)


def sql_point(p: LatLng) -> ColumnElement[object]:
    """A WGS-84 point literal for queries (bound parameters, no WKB round trip)."""
    return func.ST_SetSRID(func.ST_MakePoint(p.lng, p.lat), SRID)
