"""GET /api/v1/stats/series and the per-chart tables of /stats/export, over a hand-placed October 2026 (every
ticket 30 min to accept, 240 min to resolve, local times in Asia/Shanghai); the charts' per-grid and per-type
SLA attainment come from GET /api/v1/stats."""

import io
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select

from dispatch.tickets.models import Ticket, TicketState
from geo.models import Region
from tests.dispatch.test_stats import OCTOBER, Past, past  # noqa: F401  (past: the fixture of that module)

OLD_TOWN = (43.935, 116.08)  # grid XL-G05
BAOLIGEN = (43.955, 116.05)  # grid XL-G01
ERENHOT = (43.66, 111.96)  # grid EH-G01


@pytest.fixture
def month(past: Past) -> Past:  # noqa: F811
    """On top of `past` (10-10: 10 and 50 min to accept, 70 and 300 to complete; 10-11 08:00 taken after 60;
    10-12 invalid; 10-31 23:59 pending; 11-01 outside): four more in Xilinhot and one in Erenhot."""
    S = TicketState
    past.ticket("2026-10-03 09:15", state=S.COMPLETED, accepted="2026-10-03 09:25", completed="2026-10-03 10:15",
                by="tech04")  # 10 / 60 min: both limits kept
    past.ticket("2026-10-03 09:40", state=S.COMPLETED, accepted="2026-10-03 10:20", completed="2026-10-03 14:40",
                by="tech04", type_code="tv_no_signal", where=BAOLIGEN)  # 40 / 300 min: both missed
    past.ticket("2026-10-03 14:05", state=S.AWAITING_FOLLOWUP, accepted="2026-10-03 14:25",
                completed="2026-10-03 16:05", by="tech05", type_code="tv_no_signal")  # 20 / 120 min: both kept
    past.ticket("2026-10-06 00:30")  # still pending, long past both limits; 10-05 16:30 in UTC
    past.ticket("2026-10-03 09:00", reporter="dispatcher.eh", where=ERENHOT)
    return past


def series(desk: Past, username: str = "dispatcher.xl", **params: str) -> Any:
    return desk.client.get("/api/v1/stats/series", params={**OCTOBER, **params}, headers=desk.as_user(username))


def points(desk: Past, username: str = "dispatcher.xl", **params: str) -> dict[str, dict[str, Any]]:
    reply = series(desk, username, **params)
    assert reply.status_code == 200, reply.text
    return {point["bucket"]: point for point in reply.json()["points"]}


def test_each_local_day_counts_its_tickets_with_median_and_p90_by_hand(month: Past) -> None:
    days = points(month)
    assert list(days) == [f"2026-10-{d:02d}" for d in range(1, 32)]  # every day, oldest first
    assert {day: p["tickets"] for day, p in days.items() if p["tickets"]} == {
        "2026-10-03": 3, "2026-10-06": 1, "2026-10-10": 2, "2026-10-11": 1, "2026-10-12": 1, "2026-10-31": 1}
    third = days["2026-10-03"]
    # accept 10, 20, 40 → median 20, p90 20 + 0.8 × 20; complete 60, 120, 300 → 120, 120 + 0.8 × 180
    assert (third["accept_median_min"], third["accept_p90_min"]) == pytest.approx((20, 36))
    assert (third["complete_median_min"], third["complete_p90_min"]) == pytest.approx((120, 264))
    assert (third["response_sla_attainment"], third["resolution_sla_attainment"]) == pytest.approx((2 / 3, 2 / 3))
    # 00:30 in Shanghai is the 6th, though UTC still says the 5th; pending past both limits: both missed
    assert days["2026-10-05"]["tickets"] == 0
    assert (days["2026-10-06"]["accept_median_min"], days["2026-10-06"]["response_sla_attainment"]) == (None, 0.0)
    assert days["2026-10-02"] | {"bucket": None} == days["2026-10-04"] | {"bucket": None}
    assert (days["2026-10-02"]["accept_median_min"], days["2026-10-02"]["response_sla_attainment"]) == (None, None)


def test_each_hour_of_the_local_day_sums_the_whole_month(month: Past) -> None:
    hours = points(month, bucket="hour")
    assert list(hours) == [f"{h:02d}" for h in range(24)]
    assert {hour: p["tickets"] for hour, p in hours.items() if p["tickets"]} == {
        "00": 1, "08": 1, "09": 3, "10": 1, "12": 1, "14": 1, "23": 1}
    nine = hours["09"]
    # 09:15 (10 / 60 min), 09:40 (40 / 300 min); the invalid 10-12 09:00 was never taken
    assert (nine["accept_median_min"], nine["complete_p90_min"]) == pytest.approx((25, 276))


def test_a_branch_dispatcher_counts_only_their_branch(month: Past) -> None:
    assert points(month, "dispatcher.eh")["2026-10-03"]["tickets"] == 1
    assert sum(p["tickets"] for p in points(month, "dispatcher.eh").values()) == 1
    assert points(month, "admin")["2026-10-03"]["tickets"] == 4
    xl = month.db.scalars(select(Region.id).where(Region.code == "XL")).one()
    assert series(month, "dispatcher.eh", region_id=str(xl)).status_code == 404
    assert points(month, "admin", region_id=str(xl))["2026-10-03"]["tickets"] == 3


def test_sla_attainment_per_grid_and_per_type(month: Past) -> None:
    body = month.stats().json()
    by_type = {row["type_code"]: row for row in body["by_type"]}
    # broadband: kept by 09:15 and 10-10 10:00; missed by 10-10 12:00, 10-11, 10-06 and 10-31 (invalid left out)
    assert by_type["broadband_fault"]["response_sla_attainment"] == pytest.approx(2 / 6)
    assert by_type["tv_no_signal"]["response_sla_attainment"] == pytest.approx(1 / 2)
    assert by_type["tv_no_signal"]["resolution_sla_attainment"] == pytest.approx(1 / 2)
    grid_of = {t.id: t.region_id for t in month.db.scalars(select(Ticket))}
    baoligen = month.db.scalars(select(Region.id).where(Region.code == "XL-G01")).one()
    assert baoligen in grid_of.values()
    by_grid = {row["region_id"]: row for row in body["by_region"]}
    assert (by_grid[baoligen]["tickets"], by_grid[baoligen]["response_sla_attainment"]) == (1, 0.0)
    old_town = month.db.scalars(select(Region.id).where(Region.code == "XL-G05")).one()
    # kept: 09:15, 14:05, 10-10 10:00; missed: 10-10 12:00, 10-11, 10-06, 10-31
    assert by_grid[old_town]["response_sla_attainment"] == pytest.approx(3 / 7)


@pytest.mark.parametrize(("params", "field"), [({"bucket": "week"}, "bucket"),
                                               ({"from": "2026-12-01", "to": "2026-11-01"}, "from"),
                                               ({"from": "2025-01-01", "to": "2026-12-31"}, "to"),
                                               ({"region_id": "0"}, "region_id"),
                                               ({"from": "2026-02-30"}, "from")])
def test_bad_input_is_422_problem_json(month: Past, params: dict[str, str], field: str) -> None:
    reply = series(month, **params)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == "validation_error"
    assert field in [e["field"] for e in reply.json()["errors"]]


def test_technicians_and_clerks_get_403(month: Past) -> None:
    assert series(month, "tech04").status_code == 403
    assert series(month, "clerk.xl").status_code == 403


def workbook(desk: Past, **params: str) -> openpyxl.Workbook:
    reply = desk.client.get("/api/v1/stats/export", params={**OCTOBER, **params}, headers=desk.as_user("dispatcher.xl"))
    assert reply.status_code == 200, reply.text
    return openpyxl.load_workbook(io.BytesIO(reply.content), read_only=True)


def test_each_charts_table_exports_alone_and_the_default_is_the_whole_page(month: Past) -> None:
    assert workbook(month).sheetnames == ["总览", "按状态", "按类型", "按网格", "按维护人员"]
    days = workbook(month, table="day")
    assert days.sheetnames == ["按日"]
    rows = list(days["按日"].iter_rows(values_only=True))
    assert rows[0][:2] == ("日期", "工单数") and len(rows) == 1 + 31
    assert {row[0]: row[1] for row in rows[1:]}["2026-10-03"] == 3
    hours = list(workbook(month, table="hour")["按小时"].iter_rows(values_only=True))
    assert {row[0]: row[1] for row in hours[1:]}["09"] == 3
    grids = list(workbook(month, table="grid")["按网格"].iter_rows(values_only=True))
    assert {row[1] for row in grids[1:]} == {"希日塔拉街道", "宝力根街道"}


def test_an_unknown_table_is_422(month: Past) -> None:
    reply = month.client.get("/api/v1/stats/export", params={**OCTOBER, "table": "pay"},
                             headers=month.as_user("dispatcher.xl"))
    assert reply.status_code == 422 and "table" in [e["field"] for e in reply.json()["errors"]]
