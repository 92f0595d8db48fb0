"""Regions: company → branch → grid; grids carry the polygon a ticket is placed by."""

from datetime import datetime
from enum import StrEnum

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.kernel.db import Base, str_enum


class RegionKind(StrEnum):
    COMPANY = "company"
    BRANCH = "branch"
    GRID = "grid"


class Region(Base):
    __tablename__ = "region"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[RegionKind] = mapped_column(str_enum(RegionKind, 16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("region.id"), index=True)
    # Materialised ancestry ("/1/4/9/"): a scope check is one indexed prefix
    # match instead of a recursive walk on every read.
    path: Mapped[str] = mapped_column(String(255), index=True, default="")
    boundary: Mapped[WKBElement | None] = mapped_column(
        Geometry("MULTIPOLYGON", srid=4326, spatial_index=True)
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Place(Base):
    """A named place of the service area (compound, street, landmark): the offline gazetteer."""

    __tablename__ = "place"
    __table_args__ = (
        Index("ix_place_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(300))
    region_id: Mapped[int | None] = mapped_column(ForeignKey("region.id"))
    location: Mapped[WKBElement] = mapped_column(Geometry("POINT", srid=4326, spatial_index=True))
