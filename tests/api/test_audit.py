"""The audit log: who did what, when and from where, written with the act itself and read by admins."""

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.api.test_scope import TICKETS, XL_POINT, region_id, technician_id
from tests.conftest import log_in

AUDIT = "/api/v1/audit"


def report(client: TestClient, headers: dict[str, str], phone: str) -> dict:
    body = {"type_code": "broadband_fault", "description": "断网了", "location": XL_POINT,
            "contact": {"name": "张三", "phone": phone}}
    reply = client.post(TICKETS, json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    return reply.json()


def events(client: TestClient, **params: object) -> list[dict]:
    reply = client.get(AUDIT, params={"limit": 500, **params}, headers=log_in(client, "admin"))
    assert reply.status_code == 200, reply.text
    return reply.json()["items"]


def test_force_assign_and_invalidation_are_audited_with_who_and_from_where(client: TestClient, as_user,
                                                                          db: Session) -> None:
    xl = as_user("dispatcher.xl")
    assigned, dropped = report(client, xl, "13900000701"), report(client, xl, "13900000702")
    tech01 = technician_id(db, "tech01")
    assert client.post(f"{TICKETS}/{assigned['id']}/assign", json={"technician_id": tech01},
                       headers=xl).status_code == 200
    assert client.post(f"{TICKETS}/{dropped['id']}/invalidate", json={"reason": "假报修"},
                       headers=xl).status_code == 200

    mine = events(client, actor="dispatcher.xl")
    assert [(e["action"], e["target_type"], e["target_id"]) for e in mine[:2]] == [
        ("ticket.invalidated", "ticket", dropped["id"]), ("ticket.assigned", "ticket", assigned["id"])]
    assert mine[0]["detail"] == {"number": dropped["number"], "reason": "假报修"}
    assert mine[1]["detail"]["technician_id"] == tech01
    assert all(e["address"] == "testclient" and e["actor_kind"] == "user" for e in mine[:2])


def test_a_refused_act_leaves_no_audit_event(client: TestClient, as_user, db: Session) -> None:
    xl = as_user("dispatcher.xl")
    ticket = report(client, xl, "13900000703")
    assert client.post(f"{TICKETS}/{ticket['id']}/invalidate", json={"reason": "重复"}, headers=xl).status_code == 200
    again = client.post(f"{TICKETS}/{ticket['id']}/invalidate", json={"reason": "重复"}, headers=xl)
    assert again.status_code == 409
    assert len([e for e in events(client, action="ticket.invalidated") if e["target_id"] == ticket["id"]]) == 1


def test_api_keys_user_changes_and_exports_are_audited(client: TestClient, as_user, db: Session) -> None:
    admin = as_user("admin")
    issued = client.post("/api/v1/api-keys", json={"name": "crm", "region_ids": [region_id(db, "XL")]},
                         headers=admin).json()
    assert client.delete(f"/api/v1/api-keys/{issued['id']}", headers=admin).status_code == 200
    created = client.post("/api/v1/users", json={"username": "clerk.audit", "password": "s3cret-pw", "role": "clerk",
                                                 "region_ids": [region_id(db, "XL")]}, headers=admin).json()
    promoted = client.patch(f"/api/v1/users/{created['id']}", json={"role": "dispatcher"}, headers=admin)
    assert promoted.status_code == 200 and promoted.json()["role"] == "dispatcher"
    exported = client.get("/api/v1/workload/export", params={"from": "2026-11-01", "to": "2026-11-30"},
                          headers=as_user("payroll"))
    assert exported.status_code == 200

    by_action = {e["action"]: e for e in reversed(events(client))}  # the newest of each
    assert by_action["api_key.created"]["target_id"] == issued["id"]
    assert by_action["api_key.created"]["detail"]["prefix"] == issued["prefix"]
    assert issued["key"] not in str(by_action["api_key.created"])  # the secret is never kept
    assert by_action["api_key.revoked"]["target_id"] == issued["id"]
    assert by_action["user.created"]["detail"]["role"] == "clerk"
    assert by_action["user.changed"]["detail"] == {"changes": {"role": ["clerk", "dispatcher"]}}
    assert by_action["user.changed"]["actor_label"] == "admin"
    assert by_action["workload.exported"]["actor_label"] == "payroll"
    assert by_action["workload.exported"]["detail"]["start"] == "2026-11-01"


def test_a_role_change_that_breaks_the_rules_is_422_and_not_audited(client: TestClient, as_user,
                                                                     db: Session) -> None:
    admin = as_user("admin")
    created = client.post("/api/v1/users", json={"username": "clerk.audit2", "password": "s3cret-pw",
                                                 "role": "clerk", "region_ids": [region_id(db, "XL")]},
                          headers=admin).json()
    reply = client.patch(f"/api/v1/users/{created['id']}", json={"role": "subscriber"}, headers=admin)
    assert reply.status_code == 422 and reply.json()["errors"][0]["field"] == "role"
    assert events(client, action="user.changed") == []


@pytest.mark.parametrize("username", ["dispatcher.xl", "payroll", "tech01"])
def test_only_admins_read_the_audit_log(client: TestClient, as_user, username: str) -> None:
    reply = client.get(AUDIT, headers=as_user(username))
    assert reply.status_code == 403 and reply.headers["content-type"].startswith("application/problem+json")


def test_the_log_pages_newest_first_and_filters_by_time(client: TestClient, as_user) -> None:
    for _ in range(3):
        client.post("/api/v1/auth/token", data={"username": "ghost.user", "password": "nope"})
    first = client.get(AUDIT, params={"actor": "ghost.user", "limit": 2}, headers=as_user("admin")).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = client.get(AUDIT, params={"actor": "ghost.user", "limit": 2, "cursor": first["next_cursor"]},
                      headers=as_user("admin")).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    ids = [e["id"] for e in first["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True)
    assert all(e["action"] == "login.failed" and e["actor_id"] is None for e in first["items"] + rest["items"])

    now = datetime.now(UTC)
    later = events(client, actor="ghost.user", **{"from": (now + timedelta(hours=1)).isoformat()})
    earlier = events(client, actor="ghost.user", to=(now - timedelta(hours=1)).isoformat())
    around = events(client, actor="ghost.user", **{"from": (now - timedelta(hours=1)).isoformat(),
                                                    "to": (now + timedelta(hours=1)).isoformat()})
    assert later == [] and earlier == [] and len(around) == 3
