"""The HTTP contract of surge mode, escalation chains and the console's SLA lists."""

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.tickets import sla
from dispatch.tickets.models import SurgeSwitch, Ticket
from geo.models import Region
from tests.conftest import on_duty
from tests.dispatch.test_sla import point_in, report

BROADBAND = "broadband_fault"  # response 30 min, resolution 240 min


def region_id(db: Session, code: str) -> int:
    return int(db.scalar(select(Region.id).where(Region.code == code)))


def due_minutes(ticket: dict[str, Any], field: str) -> float:
    delta = datetime.fromisoformat(ticket[field]) - datetime.fromisoformat(ticket["created_at"])
    return delta / timedelta(minutes=1)


def surge(client: TestClient, headers: dict[str, str], region: int, **body: Any) -> Any:
    return client.post(f"/api/v1/regions/{region}/surge", json=body, headers=headers)


@pytest.fixture
def xl_point(db: Session) -> dict[str, float]:
    return point_in(db, "XL-G01")


def test_surge_on_stretches_new_and_open_tickets_and_is_audited(client, as_user, db, xl_point) -> None:
    dispatcher = as_user("dispatcher.xl")
    before = report(client, dispatcher, xl_point, phone="13900003001", type_code=BROADBAND)
    assert due_minutes(before, "response_due_at") == 30 and before["sla"]["surge"] is False

    reply = surge(client, dispatcher, region_id(db, "XL"), on=True, reason="暴雪")
    assert reply.status_code == 200, reply.text
    assert reply.json() | {"switched_at": None} == {
        "region_id": region_id(db, "XL"), "on": True, "response_factor": 2.0, "resolution_factor": 1.5,
        "reason": "暴雪", "switched_by": "dispatcher.xl", "switched_at": None, "retimed": 1}

    during = report(client, dispatcher, xl_point, phone="13900003002", type_code=BROADBAND)
    assert (due_minutes(during, "response_due_at"), due_minutes(during, "resolution_due_at")) == (60, 360)
    assert during["sla"]["surge"] is True
    retimed = client.get(f"/api/v1/tickets/{before['id']}", headers=dispatcher).json()
    assert due_minutes(retimed, "response_due_at") == 60, "the open backlog is judged by the surge profile"
    assert client.get(f"/api/v1/regions/{region_id(db, 'XL')}/surge", headers=dispatcher).json()["on"] is True

    assert surge(client, dispatcher, region_id(db, "XL"), on=False).status_code == 200
    after = report(client, dispatcher, xl_point, phone="13900003003", type_code=BROADBAND)
    assert due_minutes(after, "response_due_at") == 30
    kept = client.get(f"/api/v1/tickets/{during['id']}", headers=dispatcher).json()
    assert due_minutes(kept, "response_due_at") == 60, "switching off leaves the surge's tickets their times"
    audit = db.scalars(select(SurgeSwitch).where(SurgeSwitch.region_id == region_id(db, "XL"))
                       .order_by(SurgeSwitch.id)).all()
    assert [(s.on, s.actor, s.actor_role) for s in audit] == [(True, "dispatcher.xl", "dispatcher"),
                                                             (False, "dispatcher.xl", "dispatcher")]


def test_surge_on_a_branch_applies_to_its_grids_with_the_factors_given(client, as_user, db, xl_point) -> None:
    reply = surge(client, as_user("admin"), region_id(db, "XL"), on=True, response_factor=3, resolution_factor=1)
    assert reply.status_code == 200, reply.text
    ticket = report(client, as_user("dispatcher.xl"), xl_point, phone="13900003004", type_code=BROADBAND)
    assert (due_minutes(ticket, "response_due_at"), due_minutes(ticket, "resolution_due_at")) == (90, 240)
    eh = report(client, as_user("dispatcher.eh"), point_in(db, "EH-G01"), phone="13900003005", type_code=BROADBAND)
    assert due_minutes(eh, "response_due_at") == 30, "another branch is not in surge"


def test_surge_moves_only_the_resolution_time_of_an_accepted_ticket(client, as_user, db, xl_point) -> None:
    dispatcher = as_user("dispatcher.xl")
    ticket = report(client, dispatcher, xl_point, phone="13900003008", type_code=BROADBAND)
    tech01 = on_duty(client, as_user("tech01"))
    assert client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=tech01).status_code == 200
    assert surge(client, dispatcher, region_id(db, "XL"), on=True).json()["retimed"] == 1
    seen = client.get(f"/api/v1/tickets/{ticket['id']}", headers=dispatcher).json()
    assert (due_minutes(seen, "response_due_at"), due_minutes(seen, "resolution_due_at")) == (30, 360)


def test_surge_leaves_a_breached_ticket_as_it_is(client, as_user, db, redis, settings, xl_point) -> None:
    dispatcher = as_user("dispatcher.xl")
    ticket = report(client, dispatcher, xl_point, phone="13900003006", type_code=BROADBAND)
    sla.sweep(db, redis, cfg=settings.sla, now=datetime.fromisoformat(ticket["created_at"]) + timedelta(minutes=31),
              limit=10)
    assert surge(client, dispatcher, region_id(db, "XL"), on=True).json()["retimed"] == 0
    assert db.get(Ticket, ticket["id"]).sla_surge_id is None


def test_retyping_a_surge_ticket_keeps_its_surge_profile(client, as_user, db, xl_point) -> None:
    dispatcher = as_user("dispatcher.xl")
    surge(client, dispatcher, region_id(db, "XL"), on=True)
    ticket = report(client, dispatcher, xl_point, phone="13900003007", type_code=BROADBAND)
    reply = client.patch(f"/api/v1/tickets/{ticket['id']}", json={"type_code": "stb_fault"}, headers=dispatcher)
    assert due_minutes(reply.json(), "response_due_at") == 120  # stb_fault's 60 minutes, doubled


def test_surge_of_an_unknown_region_is_404(client, as_user) -> None:
    reply = surge(client, as_user("dispatcher.xl"), 999999, on=True)
    assert reply.status_code == 404
    assert reply.json()["code"] == "region_not_found"


def test_surge_of_another_branch_is_404_for_a_branch_dispatcher(client, as_user, db) -> None:
    reply = surge(client, as_user("dispatcher.xl"), region_id(db, "EH"), on=True)
    assert reply.status_code == 404
    assert db.scalar(select(SurgeSwitch.id).where(SurgeSwitch.region_id == region_id(db, "EH"))) is None


@pytest.mark.parametrize("username", ["clerk.xl", "tech01", "payroll"])
def test_only_dispatchers_and_admins_switch_surge(client, as_user, db, username) -> None:
    reply = surge(client, as_user(username), region_id(db, "XL"), on=True)
    assert reply.status_code == 403
    assert reply.json()["code"] == "forbidden"


@pytest.mark.parametrize(("body", "field"), [
    ({}, "on"),
    ({"on": "sometimes"}, "on"),
    ({"on": True, "response_factor": 0.5}, "response_factor"),
    ({"on": True, "resolution_factor": 11}, "resolution_factor"),
    ({"on": True, "reason": ""}, "reason"),
])
def test_a_bad_surge_body_is_422_naming_the_field(client, as_user, db, body, field) -> None:
    reply = surge(client, as_user("dispatcher.xl"), region_id(db, "XL"), **body)
    assert reply.status_code == 422
    assert any(e["field"].endswith(field) for e in reply.json()["errors"]), reply.json()
    assert db.scalar(select(SurgeSwitch.id)) is None


def test_the_chain_in_force_for_a_grid_is_its_branchs(client, as_user, db) -> None:
    reply = client.get(f"/api/v1/regions/{region_id(db, 'XL-G01')}/escalation", headers=as_user("dispatcher.xl"))
    assert reply.status_code == 200, reply.text
    chain = reply.json()
    assert chain["defined_at_region_id"] == region_id(db, "XL")
    assert [(s["level"], s["delay_min"]) for s in chain["steps"]] == [(1, 0), (2, 15), (3, 30), (4, 60)]


def test_an_admin_replaces_a_regions_chain(client, as_user, db) -> None:
    steps = [{"title": "分公司值机员", "role": "dispatcher", "reach": "branch", "delay_min": 0},
             {"title": "总部", "role": "admin", "delay_min": 5}]
    grid = region_id(db, "XL-G02")
    reply = client.put(f"/api/v1/regions/{grid}/escalation", json={"steps": steps}, headers=as_user("admin"))
    assert reply.status_code == 200, reply.text
    seen = client.get(f"/api/v1/regions/{grid}/escalation", headers=as_user("dispatcher.xl")).json()
    assert seen["defined_at_region_id"] == grid
    assert [(s["level"], s["title"]) for s in seen["steps"]] == [(1, "分公司值机员"), (2, "总部")]


@pytest.mark.parametrize(("step", "field"), [
    ({"title": "谁", "delay_min": 0}, "steps.0"),
    ({"title": "谁", "role": "dispatcher", "user_id": 1, "delay_min": 0}, "steps.0"),
    ({"title": "值机员", "role": "dispatcher", "delay_min": 0}, "steps.0.reach"),
    ({"title": "某人", "user_id": 999999, "delay_min": 0}, "steps.0.user_id"),
    ({"title": "值机员", "role": "dispatcher", "reach": "grid", "delay_min": -1}, "delay_min"),
])
def test_a_bad_chain_is_422_naming_the_step(client, as_user, db, step, field) -> None:
    reply = client.put(f"/api/v1/regions/{region_id(db, 'XL')}/escalation", json={"steps": [step]},
                       headers=as_user("admin"))
    assert reply.status_code == 422
    assert any(e["field"].endswith(field) for e in reply.json()["errors"]), reply.json()


def test_a_dispatcher_may_not_change_a_chain(client, as_user, db) -> None:
    steps = [{"title": "我", "role": "dispatcher", "reach": "branch", "delay_min": 0}]
    reply = client.put(f"/api/v1/regions/{region_id(db, 'XL')}/escalation", json={"steps": steps},
                       headers=as_user("dispatcher.xl"))
    assert reply.status_code == 403


def test_the_console_lists_warned_and_breached_tickets(client, as_user, db, redis, settings, xl_point) -> None:
    dispatcher = as_user("dispatcher.xl")
    late = report(client, dispatcher, xl_point, phone="13900003010", type_code=BROADBAND)
    soon = report(client, dispatcher, xl_point, phone="13900003011", type_code="stb_fault")  # 60-minute response
    created = datetime.fromisoformat(soon["created_at"])
    sla.sweep(db, redis, cfg=settings.sla, now=created + timedelta(minutes=49), limit=10)

    def listed(status: str) -> list[int]:
        reply = client.get("/api/v1/tickets", params={"sla": status}, headers=dispatcher)
        assert reply.status_code == 200, reply.text
        return [t["id"] for t in reply.json()["items"]]

    assert listed("breached") == [late["id"]]
    assert listed("warned") == [soon["id"]]
    assert client.get("/api/v1/tickets", params={"sla": "late"}, headers=dispatcher).status_code == 422
