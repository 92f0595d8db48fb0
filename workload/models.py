"""Piece-rate pay: rates in force by date, work records (a snapshot per completed ticket),
adjustments, closed pay periods and the holiday calendar."""

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.kernel.db import Base, str_enum

# Money and hours as fixed-scale decimals, never floats: a sheet's totals must equal the sum of its lines.
MONEY = Numeric(12, 2)
HOURS = Numeric(8, 2)
FACTOR = Numeric(5, 2)


class WorkRate(Base):
    """The piece rate and standard hours (工时定额) of a ticket type from a date on, optionally for one region."""

    __tablename__ = "work_rate"
    __table_args__ = (UniqueConstraint("type_code", "region_id", "valid_from"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    type_code: Mapped[str] = mapped_column(ForeignKey("ticket_type.code"), index=True)
    # None: every region; a branch or grid rate wins over it there.
    region_id: Mapped[int | None] = mapped_column(ForeignKey("region.id"))
    valid_from: Mapped[date] = mapped_column(Date)
    piece_rate: Mapped[Decimal] = mapped_column(MONEY)
    standard_hours: Mapped[Decimal] = mapped_column(HOURS)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Holiday(Base):
    """A public holiday (local date): work completed on it earns the holiday factor."""

    __tablename__ = "holiday"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class WorkRecord(Base):
    """One completed ticket's labor, credited to whoever completed it.

    Everything a sheet shows is snapshotted here at completion (names, rate,
    factors), so that a closed period's report never changes.
    """

    __tablename__ = "work_record"
    __table_args__ = (
        Index("ix_work_record_branch_day", "branch_id", "work_date"),
        Index("ix_work_record_technician_day", "technician_id", "work_date"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), unique=True)
    ticket_number: Mapped[str] = mapped_column(String(32))
    technician_id: Mapped[int] = mapped_column(ForeignKey("technician.id"))
    technician_name: Mapped[str] = mapped_column(String(100))
    type_code: Mapped[str] = mapped_column(ForeignKey("ticket_type.code"))
    type_name: Mapped[str] = mapped_column(String(100))
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"))
    branch_id: Mapped[int] = mapped_column(ForeignKey("region.id"))
    # The local calendar date of completion: what periods, holidays and date ranges go by.
    work_date: Mapped[date] = mapped_column(Date)
    accepted_at: Mapped[datetime]
    arrived_at: Mapped[datetime | None]
    completed_at: Mapped[datetime]
    standard_hours: Mapped[Decimal] = mapped_column(HOURS)
    onsite_hours: Mapped[Decimal] = mapped_column(HOURS)  # arrive → complete; 0 without a check-in
    total_hours: Mapped[Decimal] = mapped_column(HOURS)  # accept → complete
    distance_m: Mapped[int | None] = mapped_column(Integer)  # straight line, position at accept → ticket
    rate_id: Mapped[int | None] = mapped_column(ForeignKey("work_rate.id"))
    piece_rate: Mapped[Decimal] = mapped_column(MONEY)
    night: Mapped[bool] = mapped_column(Boolean)
    holiday: Mapped[bool] = mapped_column(Boolean)
    night_factor: Mapped[Decimal] = mapped_column(FACTOR)
    distance_factor: Mapped[Decimal] = mapped_column(FACTOR)
    holiday_factor: Mapped[Decimal] = mapped_column(FACTOR)
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    satisfaction_factor: Mapped[Decimal] = mapped_column(FACTOR)
    points: Mapped[Decimal] = mapped_column(HOURS)
    pay: Mapped[Decimal] = mapped_column(MONEY)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AdjustmentKind(StrEnum):
    MANUAL = "manual"  # payroll or an admin, with a reason
    SATISFACTION = "satisfaction"  # a follow-up that arrived after its record's period closed


class Adjustment(Base):
    """An amount added to (or taken from) a technician's pay in one branch's month; audited by who and why."""

    __tablename__ = "work_adjustment"
    __table_args__ = (Index("ix_work_adjustment_branch_period", "branch_id", "period"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[AdjustmentKind] = mapped_column(str_enum(AdjustmentKind, 16))
    branch_id: Mapped[int] = mapped_column(ForeignKey("region.id"))
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"))
    period: Mapped[date] = mapped_column(Date)  # the first day of the local month it is paid in
    technician_id: Mapped[int] = mapped_column(ForeignKey("technician.id"), index=True)
    technician_name: Mapped[str] = mapped_column(String(100))
    work_record_id: Mapped[int | None] = mapped_column(ForeignKey("work_record.id"))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class PayPeriod(Base):
    """A branch's closed month: its records and adjustments are frozen from `closed_at` on."""

    __tablename__ = "pay_period"
    __table_args__ = (UniqueConstraint("branch_id", "month"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("region.id"))
    month: Mapped[date] = mapped_column(Date)  # its first day
    closed_at: Mapped[datetime]
    closed_by: Mapped[str] = mapped_column(String(100))
