"""Reports of one outage arriving at the same moment, through several API processes: exactly one incident."""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.concurrency.storms import XL_POINT, ApiServer, Crowd, open_client, release_together
from tests.conftest import truncate_transient

REPORTS = 24
OUTAGE = "race_outage"


@pytest.fixture
def outage_type(owner_engine: Engine) -> Iterator[str]:
    with owner_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO ticket_type (code, name, kind, skills, standard_hours, piece_rate, response_sla_min, "
            "resolution_sla_min, tips, active, incident_reports, incident_radius_m, incident_window_min) "
            "VALUES (:code, '光缆中断', 'fault', '{}', 2, 80, 30, 240, '', true, 3, 300, 10)"), {"code": OUTAGE})
    yield OUTAGE
    truncate_transient(owner_engine)
    with owner_engine.begin() as conn:
        conn.execute(text("DELETE FROM ticket_type WHERE code = :code"), {"code": OUTAGE})


async def _together(base_url: str, dispatcher: dict[str, str]) -> list[httpx.Response]:
    client = await open_client(base_url, REPORTS)
    try:
        def call(n: int) -> Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]:
            # A few metres apart: one outage, every report within the others' radius.
            body = {"type_code": OUTAGE, "description": f"断网 {n}",
                    "contact": {"name": "张三", "phone": f"1371{n:07d}"},
                    "location": {"lat": XL_POINT["lat"] + n * 2e-5, "lng": XL_POINT["lng"]}}
            return lambda c: c.post("/api/v1/tickets", json=body, headers=dispatcher)

        return await release_together(client, [call(n) for n in range(REPORTS)])
    finally:
        await client.aclose()


def test_reports_racing_to_open_an_incident_open_exactly_one(api_server: ApiServer, crowd: Crowd,
                                                             committed_db: Engine, outage_type: str) -> None:
    replies = asyncio.run(_together(api_server.base_url, crowd.staff("dispatcher.xl")))

    assert Counter(r.status_code for r in replies) == {201: REPORTS}, [r.text for r in replies if r.status_code != 201]
    with committed_db.connect() as conn:
        incidents = conn.execute(text("SELECT id, ticket_id FROM incident")).all()
        states = Counter(conn.execute(text(
            "SELECT state, incident_id FROM ticket WHERE type_code = :code AND id NOT IN (SELECT ticket_id FROM "
            "incident)"), {"code": OUTAGE}).all())
        leads_offered = conn.execute(text("SELECT count(*) FROM ticket WHERE id IN (SELECT ticket_id FROM incident)"
                                          " AND state = 'pending'")).scalar_one()
    [(incident_id, _)] = incidents
    assert states == {("grouped", incident_id): REPORTS}, "every report under the one incident, none on its own"
    assert leads_offered == 1
