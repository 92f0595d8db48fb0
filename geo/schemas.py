from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from dispatch.kernel.inputs import JsonId, Text
from geo.gazetteer import Source
from geo.models import RegionKind


class RegionCreate(BaseModel):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_\-]+$")
    name: Text = Field(min_length=1, max_length=100)
    kind: RegionKind
    parent_id: JsonId | None = None
    boundary: dict[str, Any] | None = Field(default=None, description="GeoJSON Polygon or MultiPolygon, WGS-84")


class RegionRead(BaseModel):
    id: int
    code: str
    name: str
    kind: RegionKind
    parent_id: int | None
    boundary: dict[str, Any] | None
    created_at: datetime


class PlaceRef(BaseModel):
    """The named place an address refers to."""

    id: int
    name: str
    distance_m: float = Field(description="metres on the sphere from the point to the place")


class ReverseRead(BaseModel):
    address: str = Field(description="readable Chinese address, e.g. 锡林浩特分公司 · 宝力根街道 · 贝子庙附近(约120米)")
    grid_id: int
    outside_area: bool
    source: Source = Field(description="which geocoder worded the address")
    place: PlaceRef | None = Field(default=None, description="the nearest gazetteer place within 500 m, if any")


class PlaceHitRead(BaseModel):
    name: str
    kind: str
    address: str | None
    lat: float = Field(description="WGS-84")
    lng: float = Field(description="WGS-84")
    region_id: int | None = Field(description="the grid the place lies in (gazetteer places only)")
    score: float | None = Field(description="1 exact, (0.5, 0.9] contains the query, below 0.5 only similar")
    source: Source


class PlaceSearchRead(BaseModel):
    items: list[PlaceHitRead]
