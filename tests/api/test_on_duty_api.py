"""GET /technicians/on-duty: the console's map of who is at work and where, region-scoped."""

from fastapi.testclient import TestClient

from tests.conftest import on_duty


def test_a_branch_dispatcher_sees_their_located_technicians_only(client: TestClient, as_user) -> None:
    on_duty(client, as_user("tech01"), at={"lat": 43.9636, "lng": 116.0541})
    on_duty(client, as_user("tech02"), at=None)  # on duty, no position yet: nowhere to draw
    on_duty(client, as_user("tech33"), at={"lat": 43.6535, "lng": 111.9770})  # Erenhot

    seen = client.get("/api/v1/technicians/on-duty", headers=as_user("dispatcher.xl")).json()
    assert [(t["name"], round(t["lat"], 3), round(t["lng"], 3), t["active_count"]) for t in seen] == [
        ("王建军", 43.964, 116.054, 0)]
    everyone = client.get("/api/v1/technicians/on-duty", headers=as_user("admin")).json()
    assert len(everyone) == 2


def test_off_duty_technicians_leave_the_map(client: TestClient, as_user) -> None:
    on_duty(client, as_user("tech01"), at={"lat": 43.9636, "lng": 116.0541})
    client.put("/api/v1/me/duty", json={"on_duty": False}, headers=as_user("tech01"))
    assert client.get("/api/v1/technicians/on-duty", headers=as_user("dispatcher.xl")).json() == []


def test_technicians_do_not_see_the_others(client: TestClient, as_user) -> None:
    reply = client.get("/api/v1/technicians/on-duty", headers=as_user("tech01"))
    assert reply.status_code == 403
    assert reply.json()["code"] == "forbidden"
