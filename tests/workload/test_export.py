"""The workload sheet over HTTP: rows, files in three formats, closed periods, who may read what."""

import csv
import io
import json
from datetime import date
from decimal import Decimal

import openpyxl
import pytest

from dispatch.accounts.service import create_user
from dispatch.kernel.auth import Actor, PrincipalKind, Role
from geo.latlng import LatLng
from tests.conftest import DEMO_PASSWORD
from tests.workload.conftest import EH_POINT, Books, local
from workload import service
from workload.models import WorkRecord

ADMIN = Actor(kind=PrincipalKind.USER, id=0, role=Role.ADMIN, label="admin")
NOVEMBER = {"from": "2026-11-01", "to": "2026-11-30"}


def _november(books: Books) -> list[WorkRecord]:
    """Hand-priced lines: two technicians of XL, one of EH, and a manual adjustment."""
    records = [
        books.record(completed="2026-11-10 11:00", arrived="2026-11-10 10:00", accepted="2026-11-10 09:30"),
        books.record(completed="2026-11-10 22:30", accepted_from=LatLng(43.935 + 0.072, 116.08)),  # 32 x 1.5 x 1.1
        books.record(type_code="tv_no_signal", completed="2026-11-30 23:59", username="tech05"),  # 25 x 1.5
        books.record(completed="2026-11-20 12:00", point=EH_POINT, username="tech33"),  # 36
    ]
    reply = books.client.post("/api/v1/workload/adjustments", headers=books.as_user("payroll"), json={
        "technician_id": records[0].technician_id, "amount": "-5.50", "reason": "工具遗失", "month": "2026-11"})
    assert reply.status_code == 201, reply.text
    return records


def _export(books: Books, fmt: str, **params: str) -> bytes:
    reply = books.get("/api/v1/workload/export", format=fmt, **{**NOVEMBER, **params})
    assert reply.status_code == 200, reply.text
    assert "attachment" in reply.headers["content-disposition"]
    return reply.content


def test_workload_rows_add_records_and_adjustments_per_technician(books: Books) -> None:
    records = _november(books)
    reply = books.get("/api/v1/workload", **NOVEMBER)
    assert reply.status_code == 200, reply.text
    rows = {row["technician_id"]: row for row in reply.json()["items"]}
    first = rows[records[0].technician_id]
    assert (first["tickets"], first["record_pay"], first["adjustments"], first["pay"]) == (2, "84.80", "-5.50", "79.30")
    # points: 1.50 + 1.5 x 1.5 x 1.1 = 2.475, rounded half up to 2.48
    assert (first["standard_hours"], first["actual_hours"], first["points"]) == ("3.00", "1.00", "3.98")
    assert rows[records[2].technician_id]["pay"] == "37.50"
    assert rows[records[3].technician_id]["pay"] == "36.00"


def test_a_region_filter_keeps_that_branch_only(books: Books) -> None:
    records = _november(books)
    reply = books.get("/api/v1/workload", **NOVEMBER, region_id=str(records[3].branch_id))
    assert [row["technician_id"] for row in reply.json()["items"]] == [records[3].technician_id]


def test_the_xlsx_has_a_summary_and_a_detail_sheet_whose_totals_add_up(books: Books) -> None:
    _november(books)
    book = openpyxl.load_workbook(io.BytesIO(_export(books, "xlsx")), data_only=True)
    assert book.sheetnames == ["汇总", "明细"]
    summary, detail = book["汇总"], book["明细"]
    header = [c.value for c in summary[1]]
    assert header[:3] == ["技术员编号", "技术员", "工单数"] and header[-1] == "应发金额(元)"
    assert summary.freeze_panes == "A2" and detail.freeze_panes == "A2"
    lines = list(summary.iter_rows(min_row=2, values_only=True))
    *people, totals = lines
    assert totals[0] == "合计" and len(people) == 3
    assert totals[-1] == pytest.approx(sum(row[-1] for row in people)) == pytest.approx(79.30 + 37.50 + 36.00)
    detail_rows = list(detail.iter_rows(min_row=2, values_only=True))
    pay_at = [c.value for c in detail[1]].index("金额(元)")
    assert len(detail_rows) == 5  # four visits and the adjustment
    assert sum(Decimal(str(row[pay_at])) for row in detail_rows) == Decimal("152.80")
    completed_at = [c.value for c in detail[1]].index("完成时间")
    assert detail.cell(row=2, column=completed_at + 1).number_format == "yyyy-mm-dd hh:mm:ss"
    assert summary.column_dimensions["B"].width >= 10


def test_the_csv_has_a_bom_chinese_headers_and_a_total_line(books: Books) -> None:
    _november(books)
    content = _export(books, "csv")
    assert content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    header, *lines, total = rows
    assert header[:4] == ["技术员编号", "技术员", "类别", "日期"]
    pay_at = header.index("金额(元)")
    assert total[0] == "合计" and Decimal(total[pay_at]) == sum(Decimal(line[pay_at]) for line in lines)
    assert Decimal(total[pay_at]) == Decimal("152.80")
    assert [line[2] for line in lines].count("调整") == 1


def test_the_summary_csv_has_one_line_per_technician_and_totals(books: Books) -> None:
    _november(books)
    header, *lines, total = csv.reader(io.StringIO(_export(books, "csv", detail="false").decode("utf-8-sig")))
    assert header[0] == "技术员编号" and len(lines) == 3 and total[0] == "合计"
    assert Decimal(total[-1]) == sum(Decimal(line[-1]) for line in lines)


def test_json_rows_are_flat_with_exact_money(books: Books) -> None:
    records = _november(books)
    rows = json.loads(_export(books, "json"))
    assert {row["ticket_number"] for row in rows if row["kind"] == "工单"} == {r.ticket_number for r in records}
    night = next(row for row in rows if row["night"] is True)
    assert (night["pay"], night["completed_at"]) == ("52.80", "2026-11-10T22:30:00")


def test_a_closed_period_exports_the_same_bytes_after_later_activity(books: Books) -> None:
    records = _november(books)
    for branch_id in {r.branch_id for r in records}:
        service.close_period(books.db, actor=ADMIN, branch_id=branch_id, month=date(2026, 11, 1),
                             now=local("2026-12-01 09:00"), tz="Asia/Shanghai")
    before = {fmt: _export(books, fmt) for fmt in ("csv", "xlsx", "json")}
    books.record(completed="2026-12-01 00:00:01")
    service.rate_visit(books.db, ticket_id=records[0].ticket_id, satisfaction=1, actor_label="clerk.xl",
                       cfg=books.settings.workload, now=local("2026-12-02 09:00"), tz="Asia/Shanghai")
    late = books.client.post("/api/v1/workload/adjustments", headers=books.as_user("payroll"), json={
        "technician_id": records[0].technician_id, "amount": "3.00", "reason": "补发", "month": "2026-11"})
    assert late.status_code == 409 and late.json()["code"] == "period_closed"
    assert {fmt: _export(books, fmt) for fmt in ("csv", "xlsx", "json")} == before
    december = books.get("/api/v1/workload", **{"from": "2026-12-01", "to": "2026-12-31"}).json()["items"]
    assert {row["technician_id"]: row["adjustments"] for row in december}[records[0].technician_id] == "-6.40"


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-11-30", "to": "2026-11-01"}, "from"),
    ({"from": "2026-01-01", "to": "2026-12-31"}, "to"),
    ({**NOVEMBER, "format": "pdf"}, "format"),
    ({**NOVEMBER, "region_id": "999999"}, "region_id"),
    ({"from": "2026-11-31", "to": "2026-12-01"}, "from"),
])
def test_bad_report_input_is_422_naming_the_field(books: Books, params: dict[str, str], field: str) -> None:
    reply = books.get("/api/v1/workload/export", **params)
    assert reply.status_code == 422, reply.text
    assert field in [e["field"] for e in reply.json()["errors"]]


def test_payroll_of_one_branch_does_not_see_another_branch(books: Books) -> None:
    xl, eh = books.region("XL"), books.region("EH")
    create_user(books.db, username="payroll.xl", password=DEMO_PASSWORD, role=Role.PAYROLL, region_ids=[xl])
    token = books.client.post("/api/v1/auth/token", data={"username": "payroll.xl", "password": DEMO_PASSWORD})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    records = _november(books)
    reply = books.client.get("/api/v1/workload", params={**NOVEMBER, "region_id": eh}, headers=headers)
    assert reply.status_code == 404 and reply.json()["code"] == "not_found"
    mine = books.client.get("/api/v1/workload", params=NOVEMBER, headers=headers).json()["items"]
    assert records[3].technician_id not in {row["technician_id"] for row in mine}
    assert len(mine) == 2
    other = books.client.post("/api/v1/workload/adjustments", headers=headers, json={
        "technician_id": records[3].technician_id, "amount": "1.00", "reason": "越权"})
    assert other.status_code == 404


@pytest.mark.parametrize("username", ["dispatcher.xl", "tech04", "clerk.xl"])
def test_only_payroll_and_admin_read_workload(books: Books, username: str) -> None:
    reply = books.get("/api/v1/workload/export", username=username, **NOVEMBER)
    assert reply.status_code == 403


def test_closing_a_month_twice_or_before_it_ends_is_a_conflict(books: Books) -> None:
    body = {"branch_id": books.region("XL"), "month": "2026-10"}
    first = books.client.post("/api/v1/workload/periods", json=body, headers=books.as_user("payroll"))
    assert first.status_code == 201, first.text
    again = books.client.post("/api/v1/workload/periods", json=body, headers=books.as_user("payroll"))
    assert again.status_code == 409 and again.json()["code"] == "period_closed"
    future = books.client.post("/api/v1/workload/periods", json={**body, "month": "2099-01"},
                               headers=books.as_user("payroll"))
    assert future.status_code == 409 and future.json()["code"] == "period_not_over"
    grid = books.client.post("/api/v1/workload/periods", json={**body, "branch_id": books.region("NMG")},
                             headers=books.as_user("payroll"))
    assert grid.status_code == 422


def test_an_adjustment_needs_a_reason_and_an_amount(books: Books) -> None:
    technician = books.technician("tech04")
    for body, field in (({"amount": "0", "reason": "无故调整"}, "amount"), ({"amount": "1.00", "reason": ""}, "reason"),
                        ({"amount": "1.001", "reason": "多了"}, "amount")):
        reply = books.client.post("/api/v1/workload/adjustments", headers=books.as_user("payroll"),
                                  json={"technician_id": technician.id, **body})
        assert reply.status_code == 422, reply.text
        assert field in [e["field"] for e in reply.json()["errors"]]


def test_an_admin_adds_a_rate_that_later_records_are_paid_at(books: Books) -> None:
    body = {"type_code": "removal", "region_id": books.region("XL"), "valid_from": "2026-12-01",
            "piece_rate": "22.50", "standard_hours": "1.20"}
    added = books.client.post("/api/v1/workload/rates", json=body, headers=books.as_user("admin"))
    assert added.status_code == 201, added.text
    again = books.client.post("/api/v1/workload/rates", json=body, headers=books.as_user("admin"))
    assert again.status_code == 422 and again.json()["errors"][0]["field"] == "valid_from"
    unknown = books.client.post("/api/v1/workload/rates", json={**body, "type_code": "teleport"},
                                headers=books.as_user("admin"))
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "type_code"
    assert books.client.post("/api/v1/workload/rates", json=body, headers=books.as_user("payroll")).status_code == 403
    listed = books.get("/api/v1/workload/rates").json()
    assert {"type_code": "removal", "valid_from": "2026-12-01", "piece_rate": "22.50"}.items() <= next(
        r for r in listed if r["type_code"] == "removal" and r["valid_from"] == "2026-12-01").items()
    assert books.record(type_code="removal", completed="2026-12-02 10:00").pay == Decimal("22.50")
    assert books.record(type_code="removal", completed="2026-11-30 10:00").pay == Decimal("20.00")
