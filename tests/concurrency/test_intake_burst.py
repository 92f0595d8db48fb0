"""An area outage: a burst of reports at once against API processes whose pools are smaller than the burst."""

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.concurrency.storms import XL_POINT, ApiServer, Crowd, open_client, release_together

BURST = 64


async def _burst(base_url: str, dispatcher: dict[str, str]) -> list[httpx.Response]:
    client = await open_client(base_url, BURST)
    try:
        def call(n: int) -> Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]:
            body = {"type_code": "broadband_fault", "description": f"光猫红灯 {n}", "location": XL_POINT,
                    "contact": {"name": "张三", "phone": f"1370000{n:04d}"}}
            return lambda c: c.post("/api/v1/tickets", json=body, headers=dispatcher)

        return await release_together(client, [call(n) for n in range(BURST)])
    finally:
        await client.aclose()


def test_a_burst_of_distinct_reports_is_taken_in_whole_with_unique_numbers(api_server: ApiServer, crowd: Crowd,
                                                                          committed_db: Engine) -> None:
    # Three processes with four pooled connections each take 64 reports at once.
    replies = asyncio.run(_burst(api_server.base_url, crowd.staff("dispatcher.xl")))

    assert Counter(r.status_code for r in replies) == {201: BURST}, [r.text for r in replies if r.status_code != 201]
    numbers = [r.json()["number"] for r in replies]
    assert len(set(numbers)) == BURST
    assert all(re.fullmatch(r"XL-\d{8}-\d{4}", n) for n in numbers)
    with committed_db.connect() as conn:
        stored = set(conn.execute(text("SELECT number FROM ticket")).scalars())
    assert stored == set(numbers)
