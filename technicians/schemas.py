from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from dispatch.accounts.schemas import Username
from dispatch.kernel.inputs import ClockTime, Flag, Integer, JsonId, Number, Phone, Text
from geo.crs import Crs

# Skills travel packed in the live index (comma- and bar-separated): plain words only.
Skill = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9_\-]+$")]


class TechnicianCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=100)
    phone: Phone
    username: str = Username
    password: Text = Field(min_length=4, max_length=128)
    skills: list[Skill] = Field(default_factory=list, max_length=20)
    region_id: JsonId
    max_active: Integer = Field(default=5, ge=1, le=50)


class TechnicianPatch(BaseModel):
    """Only the fields sent change."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"max_active": 3, "skills": ["broadband"]}]})

    name: Text | None = Field(default=None, min_length=1, max_length=100)
    phone: Phone | None = None
    skills: list[Skill] | None = Field(default=None, max_length=20)
    max_active: Integer | None = Field(default=None, ge=1, le=50)
    region_id: JsonId | None = Field(default=None, description="Also the grab scope and the log-in's region.")


class TechnicianRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    name: str
    phone: str
    skills: list[str]
    region_id: int
    max_active: int
    bound: bool = Field(description="Has a WeChat openid bound, so can be pushed and force-assigned.")
    active: bool
    created_at: datetime


class DutyUpdate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"on_duty": True}]})

    on_duty: Flag


class DutyRead(BaseModel):
    on_duty: bool
    located: bool = Field(description="False until the phone sends a position after going on duty.")


# Redis GEO (the live index) stores latitudes only up to ±85.05112878 (Web Mercator's limit).
GEO_LAT_LIMIT = 85.05112878


class LocationPing(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"lat": 43.935, "lng": 116.08, "crs": "gcj02",
                                                               "accuracy_m": 15}]})

    lat: Number = Field(ge=-GEO_LAT_LIMIT, le=GEO_LAT_LIMIT, allow_inf_nan=False)
    lng: Number = Field(ge=-180, le=180, allow_inf_nan=False)
    crs: Crs = Crs.WGS84
    accuracy_m: Number | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)


class ShiftIn(BaseModel):
    weekday: Integer = Field(ge=0, le=6, description="0 = Monday")
    starts: ClockTime
    ends: ClockTime = Field(description="Earlier than `starts` for a shift running past midnight.")


class RosterRead(BaseModel):
    technician_id: int
    shifts: list[ShiftIn]


class OnDutyRead(BaseModel):
    technician_id: int
    name: str
    lat: float
    lng: float
    active_count: int
