"""Full exports through the API: every ticket of a period with its milestones (csv, xlsx, json), and the
statistics as a workbook; each opens as its format says, with the rows the period holds."""

import csv
import io
import json
from datetime import datetime, timedelta

import openpyxl
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.audit.models import AuditEvent
from tests.conftest import log_in
from tests.dispatch.test_offers import on_duty, report  # noqa: F401 (on_duty: a fixture)


def period(ticket: dict) -> dict[str, str]:
    """Local dates around the ticket's: its UTC date is the local one or the day before."""
    day = datetime.fromisoformat(ticket["created_at"]).date()
    return {"from": (day - timedelta(days=1)).isoformat(), "to": (day + timedelta(days=1)).isoformat()}


def test_every_ticket_of_the_period_exports_with_its_milestones(client: TestClient, as_user, db: Session,
                                                                 on_duty) -> None:  # noqa: F811
    dispatcher = as_user("dispatcher.xl")
    taken = report(client, dispatcher, phone="13900001001")
    waiting = report(client, dispatcher, phone="13900001002")
    tech = log_in(client, "tech01")
    client.post(f"/api/v1/tickets/{taken['id']}/grab", headers=tech)
    client.post(f"/api/v1/tickets/{taken['id']}/complete", headers=tech, json={"note": "换了光猫"})
    client.post(f"/api/v1/tickets/{waiting['id']}/urge", json={}, headers=dispatcher)

    reply = client.get("/api/v1/tickets/export", params={**period(taken), "format": "csv"}, headers=dispatcher)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(reply.content.decode("utf-8-sig"))))
    by_number = {row["工单号"]: row for row in rows}
    assert {taken["number"], waiting["number"]} <= set(by_number)
    done = by_number[taken["number"]]
    assert done["状态"] == "awaiting_followup" and done["维护人员"] == "王建军"
    assert done["接单时间"] and done["完工时间"] and done["解决达标"] == "是" and done["响应达标"] == "是"
    assert by_number[waiting["number"]]["催办次数"] == "1" and by_number[waiting["number"]]["响应达标"] == ""

    as_json = client.get("/api/v1/tickets/export", params={**period(taken), "format": "json"}, headers=dispatcher)
    records = {r["number"]: r for r in json.loads(as_json.content)}
    assert records[taken["number"]]["response_met"] is True and records[waiting["number"]]["urge_count"] == 1

    as_xlsx = client.get("/api/v1/tickets/export", params={**period(taken), "format": "xlsx", "state": "pending"},
                         headers=dispatcher)
    sheet = openpyxl.load_workbook(io.BytesIO(as_xlsx.content))["工单"]
    header, *lines = list(sheet.iter_rows(values_only=True))
    assert header[0] == "工单号" and [line[0] for line in lines] == [waiting["number"]]
    assert isinstance(lines[0][header.index("报修时间")], datetime)

    audited = db.scalars(select(AuditEvent.action).where(AuditEvent.action == "tickets.exported")).all()
    assert len(audited) == 3
    assert client.get("/api/v1/tickets/export", params=period(taken), headers=tech).status_code == 403
    bad = client.get("/api/v1/tickets/export", params={**period(taken), "format": "pdf"}, headers=dispatcher)
    assert bad.status_code == 422


def test_the_statistics_export_as_a_workbook_of_breakdowns(client: TestClient, as_user, on_duty) -> None:  # noqa: F811
    dispatcher = as_user("dispatcher.xl")
    ticket = report(client, dispatcher, phone="13900001003")
    client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=log_in(client, "tech02"))
    reply = client.get("/api/v1/stats/export", params=period(ticket), headers=dispatcher)
    assert reply.status_code == 200, reply.text
    book = openpyxl.load_workbook(io.BytesIO(reply.content))
    assert book.sheetnames == ["总览", "按状态", "按类型", "按网格", "按维护人员"]
    totals = dict(zip(*[list(r) for r in book["总览"].iter_rows(values_only=True)], strict=True))
    page = client.get("/api/v1/stats", params=period(ticket), headers=dispatcher).json()
    assert totals["工单数"] == page["tickets"]
    technicians = [r[1] for r in list(book["按维护人员"].iter_rows(values_only=True))[1:]]
    assert "李志强" in technicians
