from fastapi.testclient import TestClient

from tests.conftest import on_duty

XL_POINT = {"lat": 43.935, "lng": 116.08}


def report(client: TestClient, headers: dict[str, str], **overrides: object) -> dict:
    body = {"type_code": "broadband_fault", "description": "断网了", "location": XL_POINT,
            "contact": {"name": "张三", "phone": "13900000001"}, **overrides}
    reply = client.post("/api/v1/tickets", json=body, headers=headers)
    assert reply.status_code in (200, 201), reply.text
    return reply.json()


def test_whole_lifecycle_reads_back_every_step(client: TestClient, as_user) -> None:
    dispatcher = as_user("dispatcher.xl")
    ticket = report(client, dispatcher)
    assert ticket["state"] == "pending" and ticket["number"].startswith("XL-")
    grab = client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=on_duty(client, as_user("tech01")))
    assert grab.status_code == 200, grab.text
    assert client.post(f"/api/v1/tickets/{ticket['id']}/arrive", json={"location": XL_POINT},
                       headers=on_duty(client, as_user("tech01"))).status_code == 200
    done = client.post(f"/api/v1/tickets/{ticket['id']}/complete", json={"note": "换了光猫"},
                       headers=on_duty(client, as_user("tech01")))
    assert done.json()["state"] == "awaiting_followup"
    closed = client.post(f"/api/v1/tickets/{ticket['id']}/followup", json={"satisfaction": 5},
                         headers=as_user("clerk.xl"))
    assert closed.json()["state"] == "completed"
    detail = client.get(f"/api/v1/tickets/{ticket['id']}", headers=dispatcher).json()
    assert [e["action"] for e in detail["events"]] == ["create", "grab", "arrive", "complete", "followup"]
