"""The phone's pool past its first page: at most `limit` cards, and how many lie within the radius in all."""

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.conftest import on_duty

Headers = Callable[[str], dict[str, str]]
XL_POINT = {"lat": 43.935, "lng": 116.08}


def test_the_pool_says_how_many_more_lie_beyond_its_page(client: TestClient, as_user: Headers) -> None:
    for n in range(3):
        reply = client.post("/api/v1/tickets", headers=as_user("dispatcher.xl"), json={
            "type_code": "broadband_fault", "description": f"断网 {n}", "location": XL_POINT,
            "contact": {"name": "张三", "phone": f"1390000500{n}"}})
        assert reply.status_code == 201, reply.text
    tech = on_duty(client, as_user("tech04"))

    page = client.get("/api/v1/me/pool", params={"limit": 2}, headers=tech)
    assert page.status_code == 200, page.text
    assert len(page.json()) == 2 and page.headers["X-Total-Count"] == "3"

    everything = client.get("/api/v1/me/pool", headers=tech)
    assert len(everything.json()) == 3 and everything.headers["X-Total-Count"] == "3"
