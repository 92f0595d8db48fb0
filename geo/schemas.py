from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from geo.models import RegionKind


class RegionCreate(BaseModel):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_\-]+$")
    name: str = Field(min_length=1, max_length=100)
    kind: RegionKind
    parent_id: int | None = None
    boundary: dict[str, Any] | None = Field(default=None, description="GeoJSON Polygon or MultiPolygon, WGS-84")


class RegionRead(BaseModel):
    id: int
    code: str
    name: str
    kind: RegionKind
    parent_id: int | None
    boundary: dict[str, Any] | None
    created_at: datetime
