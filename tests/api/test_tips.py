"""Self-help tips (知识库): per ticket type, edited by an admin, rendered safely, outcomes counted."""

from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from dispatch.kernel.settings import Settings
from tests.conftest import subscriber_headers


def this_month() -> dict[str, str]:
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    return {"from": today.replace(day=1).isoformat(), "to": today.isoformat()}


def test_anyone_reads_the_demo_tips_as_markdown_and_html(client: TestClient) -> None:
    tips = client.get("/api/v1/ticket-types/broadband_fault/tips").json()
    assert tips["name"] == "宽带故障"
    assert "**报修前请先自查：**" in tips["markdown"]
    assert "<strong>报修前请先自查：</strong>" in tips["html"] and "<ol>" in tips["html"]


def test_admin_edits_tips_and_raw_html_is_shown_as_text(client: TestClient, as_user) -> None:
    body = {"markdown": "1. 重启光猫\n\n<script>alert(1)</script> [点我](javascript:alert(1))"}
    saved = client.put("/api/v1/ticket-types/broadband_fault/tips", json=body, headers=as_user("admin"))
    assert saved.status_code == 200, saved.text
    html = client.get("/api/v1/ticket-types/broadband_fault/tips").json()["html"]
    assert "<li>重启光猫</li>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript:' not in html


def test_only_an_admin_edits_tips(client: TestClient, as_user) -> None:
    reply = client.put("/api/v1/ticket-types/broadband_fault/tips", json={"markdown": "x"},
                       headers=as_user("dispatcher.xl"))
    assert reply.status_code == 403
    assert reply.json()["code"] == "forbidden"


def test_tips_of_an_unknown_type_are_404_problem_json(client: TestClient, as_user) -> None:
    reply = client.get("/api/v1/ticket-types/no_such_type/tips")
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert client.put("/api/v1/ticket-types/no_such_type/tips", json={"markdown": "x"},
                      headers=as_user("admin")).status_code == 404


def test_too_long_tips_are_422_naming_the_field(client: TestClient, as_user) -> None:
    reply = client.put("/api/v1/ticket-types/broadband_fault/tips", json={"markdown": "很" * 20001},
                       headers=as_user("admin"))
    assert reply.status_code == 422
    assert any(e["field"].endswith("markdown") for e in reply.json()["errors"])


def test_solved_outcomes_count_as_visits_saved_in_the_period(client: TestClient, db: Session, settings: Settings,
                                                             as_user) -> None:
    subscriber = subscriber_headers(db, settings)
    for solved in (True, True, False):
        reply = client.post("/api/v1/ticket-types/broadband_fault/tips/outcome", json={"solved": solved},
                            headers=subscriber)
        assert reply.status_code == 201, reply.text
        assert reply.json()["type_code"] == "broadband_fault"
    client.post("/api/v1/ticket-types/tv_no_signal/tips/outcome", json={"solved": True}, headers=as_user("clerk.xl"))

    summary = client.get("/api/v1/tips/outcomes", params=this_month(), headers=as_user("payroll")).json()
    assert summary["solved"] == 3 and summary["not_solved"] == 1
    by_type = {row["type_code"]: row for row in summary["items"]}
    assert by_type["broadband_fault"] == {"type_code": "broadband_fault", "name": "宽带故障", "solved": 2,
                                          "not_solved": 1}
    assert by_type["tv_no_signal"]["solved"] == 1


def test_outcomes_outside_the_period_are_not_counted(client: TestClient, as_user) -> None:
    client.post("/api/v1/ticket-types/broadband_fault/tips/outcome", json={"solved": True},
                headers=as_user("clerk.xl"))
    summary = client.get("/api/v1/tips/outcomes", params={"from": "2020-01-01", "to": "2020-01-31"},
                         headers=as_user("admin")).json()
    assert summary == {"solved": 0, "not_solved": 0, "items": []}


def test_a_period_ending_before_it_starts_is_422_naming_to(client: TestClient, as_user) -> None:
    reply = client.get("/api/v1/tips/outcomes", params={"from": "2026-02-01", "to": "2026-01-01"},
                       headers=as_user("admin"))
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "to"


def test_technicians_do_not_record_outcomes_and_need_to_sign_in(client: TestClient, as_user) -> None:
    reply = client.post("/api/v1/ticket-types/broadband_fault/tips/outcome", json={"solved": True},
                        headers=as_user("tech01"))
    assert reply.status_code == 403
    anonymous = client.post("/api/v1/ticket-types/broadband_fault/tips/outcome", json={"solved": True})
    assert anonymous.status_code == 401
