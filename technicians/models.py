"""The field workforce: who can be offered, assigned and paid."""

from datetime import datetime, time

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import ARRAY, BigInteger, Boolean, Float, ForeignKey, Index, Integer, SmallInteger, String, Time, func
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.kernel.db import Base


class Technician(Base):
    __tablename__ = "technician"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(32))
    skills: Mapped[list[str]] = mapped_column(ARRAY(String(32)), default=list)
    # The home region is also the grab scope: every grid below it.
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    max_active: Mapped[int] = mapped_column(Integer, default=5)
    wechat_openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    home: Mapped[WKBElement | None] = mapped_column(Geometry("POINT", srid=4326, spatial_index=False))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    on_duty: Mapped[bool] = mapped_column(Boolean, default=False)
    # Written through from the live index at a bounded rate; Redis has the freshest.
    last_location: Mapped[WKBElement | None] = mapped_column(Geometry("POINT", srid=4326, spatial_index=False))
    last_seen_at: Mapped[datetime | None]
    last_accuracy_m: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class TrackPoint(Base):
    """A sampled position of a technician at work, for the ticket record."""

    __tablename__ = "track_point"
    __table_args__ = (Index("ix_track_point_technician_at", "technician_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    technician_id: Mapped[int] = mapped_column(ForeignKey("technician.id"))
    at: Mapped[datetime]
    location: Mapped[WKBElement] = mapped_column(Geometry("POINT", srid=4326, spatial_index=False))
    accuracy_m: Mapped[float | None] = mapped_column(Float)


class RosterShift(Base):
    """A weekly on-duty window in local time; a technician with shifts is offered only inside them."""

    __tablename__ = "roster_shift"

    id: Mapped[int] = mapped_column(primary_key=True)
    technician_id: Mapped[int] = mapped_column(ForeignKey("technician.id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int] = mapped_column(SmallInteger)  # 0 = Monday, as datetime.weekday()
    starts: Mapped[time] = mapped_column(Time)
    ends: Mapped[time] = mapped_column(Time)  # before `starts`: the shift runs past midnight
