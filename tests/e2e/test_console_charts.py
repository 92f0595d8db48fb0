"""The console's statistics as ECharts charts: drawn from a seeded month, each saved as a PNG and its table as
the statistics export, the payroll chart from the workload; no console error and no CSP violation meanwhile."""

import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openpyxl
import pytest
from playwright.sync_api import ConsoleMessage, Page, expect
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.e2e.conftest import sign_in
from tests.e2e.test_console import SPOT, bearer, worked_by_tech04

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Shanghai wall-clock times of October 2026, with minutes to the first grab where it was taken.
OCTOBER = (("2026-10-03 09:15", 10), ("2026-10-03 09:40", 40), ("2026-10-03 14:05", 20), ("2026-10-06 00:30", None))


@pytest.fixture
def page_errors() -> Iterator[list[str]]:
    """What the page reported as an error (console.error, an uncaught exception); a test fails on any."""
    errors: list[str] = []
    yield errors
    assert errors == [], "the page reported errors"


def watched(page: Page, errors: list[str]) -> Page:
    page.on("console", lambda m: _is_error(m) and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


def _is_error(message: ConsoleMessage) -> bool:
    # Chromium asks every origin for /favicon.ico on its own, and the app has none: not the page's doing.
    return message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico")


@pytest.fixture
def october(api: httpx.Client, committed_db: Engine) -> None:
    """Four reports in Xilinhot moved back to October 2026 as the lifecycle would have left them: 30 minutes to
    accept, 4 hours to resolve; three taken and completed, one still pending."""
    for n, (when, minutes) in enumerate(OCTOBER):
        reply = api.post("/api/v1/tickets", headers=bearer(api, "clerk.xl"), json={  # four callers: none merged
            "type_code": "tv_no_signal", "description": "十月的报修", "source": "phone", "location": SPOT,
            "contact": {"name": "王五", "phone": f"1390000100{n}"}})
        assert reply.status_code == 201, reply.text
        ticket = reply.json()
        with committed_db.begin() as conn:
            conn.execute(text(
                "UPDATE ticket SET created_at = r.at, response_due_at = r.at + interval '30 minutes', "
                "resolution_due_at = r.at + interval '4 hours' "
                "FROM (SELECT CAST(:at AS timestamp) AT TIME ZONE 'Asia/Shanghai' AS at) AS r WHERE id = :id"),
                {"at": when, "id": ticket["id"]})
            if minutes is not None:  # taken, and completed two hours after the report
                conn.execute(text("UPDATE ticket SET state = 'awaiting_followup', completed_at = created_at "
                                  "+ interval '2 hours' WHERE id = :id"), {"id": ticket["id"]})
                conn.execute(text(
                    "INSERT INTO ticket_event (ticket_id, at, actor, actor_role, action, from_state, to_state, data) "
                    "SELECT id, created_at + make_interval(mins => :minutes), 'test', 'system', 'grab', 'pending', "
                    "'accepted', '{}' FROM ticket WHERE id = :id"), {"minutes": minutes, "id": ticket["id"]})


def option(page: Page, chart: str) -> Any:
    """The option the chart's ECharts instance draws, as the page holds it."""
    return page.evaluate("(key) => echarts.getInstanceByDom(document.querySelector("
                         "`[data-chart='${key}'] .chart-canvas`)).getOption()", chart)


def statistics_of(page: Page, month: str) -> None:
    page.get_by_role("tab", name="统计").click()
    page.locator("input[name=month]").fill(month)
    expect(page.locator(".tiles div").filter(has_text="工单数").locator("b")).to_have_text("4")


def test_the_charts_draw_the_seeded_month(open_page: Callable[..., Page], october: None, page_errors: list[str],
                                          shot: Callable) -> None:
    console = watched(open_page("/console"), page_errors)
    sign_in(console, "dispatcher.xl")
    statistics_of(console, "2026-10")
    expect(console.locator("[data-chart]")).to_have_count(8)  # no payroll chart for a dispatcher, no tips this month
    for chart in console.locator("[data-chart]").all():
        expect(chart.locator("canvas").first).to_be_visible()
    daily = option(console, "daily")
    assert len(daily["xAxis"][0]["data"]) == 31
    counts = dict(zip(daily["xAxis"][0]["data"], daily["series"][0]["data"], strict=True))
    assert {day: n for day, n in counts.items() if n} == {"10-03": 3, "10-06": 1}
    hourly = option(console, "hourly")
    by_hour = dict(zip(hourly["xAxis"][0]["data"], hourly["series"][0]["data"], strict=True))
    assert {hour: n for hour, n in by_hour.items() if n} == {"00时": 1, "09时": 2, "14时": 1}
    accept = {s["name"]: s["data"] for s in option(console, "accept")["series"]}
    assert (accept["中位数"][2], accept["P90"][2]) == (20, 36)  # 10, 20, 40 minutes on the 3rd
    assert option(console, "complete")["series"][0]["data"][2] == 120
    sla_grid = {s["name"]: s["data"] for s in option(console, "sla-grid")["series"]}
    # response kept by the 10 and 20 minute grabs, missed by the 40 minute one and the pending one
    assert (sla_grid["响应"], sla_grid["解决"]) == ([50], [75])
    sla_type = option(console, "sla-type")
    assert sla_type["yAxis"][0]["data"] == ["电视无信号"]
    console.locator("[data-chart='daily']").scroll_into_view_if_needed()
    shot(console, "charts")
    console.locator("[data-chart='sla-grid']").scroll_into_view_if_needed()
    shot(console, "trends")


def test_a_chart_saves_as_png_and_its_table_as_the_statistics_export(
        open_page: Callable[..., Page], october: None, page_errors: list[str]) -> None:
    console = watched(open_page("/console"), page_errors)
    sign_in(console, "dispatcher.xl")
    statistics_of(console, "2026-10")
    daily = console.locator("[data-chart='daily']")
    expect(daily.locator("canvas").first).to_be_visible()
    with console.expect_download() as picture:
        daily.get_by_role("button", name="导出图片").click()
    assert picture.value.suggested_filename.endswith(".png")
    assert picture.value.path().read_bytes().startswith(PNG_MAGIC)
    with console.expect_download() as table:
        daily.get_by_role("button", name="导出表格").click()
    assert table.value.suggested_filename == "stats_2026-10-01_2026-10-31_day.xlsx"
    sheet = openpyxl.load_workbook(io.BytesIO(table.value.path().read_bytes()), read_only=True)["按日"]
    assert {row[0]: row[1] for row in sheet.iter_rows(min_row=2, values_only=True)}["2026-10-03"] == 3


def test_payroll_sees_pay_and_hours_per_technician(open_page: Callable[..., Page], api: httpx.Client,
                                                   page_errors: list[str], shot: Callable) -> None:
    worked_by_tech04(api)
    console = watched(open_page("/console"), page_errors)
    sign_in(console, "payroll")
    console.get_by_role("tab", name="统计").click()
    payroll = console.locator("[data-chart='payroll']")
    expect(payroll.locator("canvas").first).to_be_visible()
    drawn = option(console, "payroll")
    assert drawn["yAxis"][0]["data"] == ["张海涛"]
    series = {s["name"]: s["data"] for s in drawn["series"]}
    assert series["计件工资（元）"][0] > 0 and series["定额工时（小时）"][0] > 0
    with console.expect_download() as table:
        payroll.get_by_role("button", name="导出表格").click()
    sheet = openpyxl.load_workbook(io.BytesIO(table.value.path().read_bytes()), read_only=True).worksheets[0]
    assert any("张海涛" in (str(cell) for cell in row) for row in sheet.iter_rows(values_only=True))
    payroll.scroll_into_view_if_needed()
    shot(console, "payroll")
