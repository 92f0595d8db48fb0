"""Work records on tickets of the demo city, with completion times chosen by the test."""

import itertools
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.kernel.settings import Settings
from dispatch.tickets.models import Ticket
from geo.latlng import LatLng
from geo.models import Region
from technicians.models import Technician
from workload import service
from workload.models import WorkRecord

TZ = ZoneInfo("Asia/Shanghai")
XL_POINT = {"lat": 43.935, "lng": 116.08}
EH_POINT = {"lat": 43.6577, "lng": 111.9584}
_phones = itertools.count(1)


def local(text: str) -> datetime:
    """A wall-clock time in Xilinhot (the test settings' time zone)."""
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


class Books:
    """Reports tickets through the API, then writes their work records at the times a test needs."""

    def __init__(self, client: TestClient, as_user: Callable[[str], dict[str, str]], db: Session,
                 settings: Settings) -> None:
        self.client, self.as_user, self.db, self.settings = client, as_user, db, settings

    def report(self, *, type_code: str = "broadband_fault", point: dict[str, float] = XL_POINT,
               reporter: str = "admin") -> Ticket:
        body = {"type_code": type_code, "description": "断网了", "location": point,
                "contact": {"name": "李四", "phone": f"1370000{next(_phones):04d}"}}
        reply = self.client.post("/api/v1/tickets", json=body, headers=self.as_user(reporter))
        assert reply.status_code == 201, reply.text
        return self.db.get_one(Ticket, reply.json()["id"])

    def technician(self, username: str) -> Technician:
        user_id = self.db.scalar(select(User.id).where(User.username == username))
        return self.db.scalars(select(Technician).where(Technician.user_id == user_id)).one()

    def region(self, code: str) -> int:
        return self.db.scalars(select(Region.id).where(Region.code == code)).one()

    def record(self, *, completed: str, accepted: str | None = None, arrived: str | None = None,
               type_code: str = "broadband_fault", point: dict[str, float] = XL_POINT, username: str = "tech04",
               accepted_from: LatLng | None = None) -> WorkRecord:
        """A ticket of this type, completed at `completed` (local) by `username`."""
        ticket = self.report(type_code=type_code, point=point)
        technician = self.technician(username)
        done = local(completed)
        completion = service.Completion(
            ticket_id=ticket.id, ticket_number=ticket.number, type_code=type_code, type_name=type_code,
            region_id=ticket.region_id, branch_id=ticket.branch_id, technician_id=technician.id,
            technician_name=technician.name, accepted_at=local(accepted) if accepted else done,
            arrived_at=local(arrived) if arrived else None, completed_at=done,
            site=LatLng(point["lat"], point["lng"]), accepted_from=accepted_from,
            type_piece_rate=Decimal("99.00"), type_standard_hours=Decimal("9.00"))
        return service.record_work(self.db, completion=completion, cfg=self.settings.workload, tz="Asia/Shanghai")

    def get(self, path: str, username: str = "payroll", **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.as_user(username))


@pytest.fixture
def books(client: TestClient, as_user: Callable[[str], dict[str, str]], db: Session, settings: Settings) -> Books:
    return Books(client, as_user, db, settings)
