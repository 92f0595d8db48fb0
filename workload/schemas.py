from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from dispatch.kernel.inputs import Day, JsonId, Month, Prose, Text


class WorkloadRow(BaseModel):
    technician_id: int
    name: str
    tickets: int
    standard_hours: Decimal
    actual_hours: Decimal
    points: Decimal
    record_pay: Decimal
    adjustments: Decimal
    pay: Decimal


class WorkloadRead(BaseModel):
    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    region_id: int | None
    items: list[WorkloadRow]


class RateCreate(BaseModel):
    type_code: Text = Field(min_length=1, max_length=32)
    region_id: JsonId | None = None
    valid_from: Day
    piece_rate: Decimal = Field(ge=0, le=100000, max_digits=12, decimal_places=2)
    standard_hours: Decimal = Field(gt=0, le=1000, max_digits=8, decimal_places=2)


class RateRead(RateCreate):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_by: str
    created_at: datetime


class AdjustmentCreate(BaseModel):
    technician_id: JsonId
    amount: Decimal = Field(ge=-100000, le=100000, max_digits=12, decimal_places=2)
    reason: Prose = Field(min_length=2, max_length=500)
    # The month it is paid in ("2026-11"); the current local month when left out.
    month: Month | None = None
    work_record_id: JsonId | None = None


class AdjustmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    branch_id: int
    period: date
    technician_id: int
    work_record_id: int | None
    amount: Decimal
    reason: str
    created_by: str
    created_at: datetime


class PeriodClose(BaseModel):
    branch_id: JsonId
    month: Month


class PeriodRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    branch_id: int
    month: date
    closed_at: datetime
    closed_by: str
