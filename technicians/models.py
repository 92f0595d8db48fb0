"""The field workforce: who can be offered, assigned and paid."""

from datetime import datetime

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import ARRAY, Boolean, ForeignKey, Integer, String, func
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
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
