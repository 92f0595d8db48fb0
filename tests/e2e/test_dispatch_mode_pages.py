"""System dispatch on the pages: the console's header shows and changes a branch's dispatch mode; the phone shows
a system-assigned ticket with 拒单, and declining it with a reason takes it off the phone."""

from collections.abc import Callable

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import on_duty
from tests.e2e.conftest import sign_in, token_of
from tests.e2e.test_tech_page import HOME_TECH01, report_near


def bearer(api: httpx.Client, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(api, username)}"}


def xl_branch(api: httpx.Client) -> int:
    [xl] = api.get("/api/v1/dispatch-modes", headers=bearer(api, "dispatcher.xl")).json()
    return int(xl["region_id"])


def test_a_dispatcher_switches_the_branch_to_system_dispatch_from_the_header(
        open_page: Callable[..., Page], api: httpx.Client, shot: Callable) -> None:
    console = open_page("/console")
    sign_in(console, "dispatcher.xl")
    mode = console.get_by_label("锡林浩特分公司派单模式")
    expect(mode).to_have_value("grab")
    mode.select_option("hybrid")
    wait = console.get_by_label("无人接单多少秒后系统派单")
    expect(wait).to_be_visible()
    wait.fill("120")
    wait.dispatch_event("change")
    expect(console.locator("#toast")).to_contain_text("120 秒无人接单即派")
    shot(console, "hybrid")
    saved = api.get(f"/api/v1/regions/{xl_branch(api)}/dispatch-mode", headers=bearer(api, "dispatcher.xl")).json()
    assert saved["mode"] == "hybrid" and saved["hybrid_after_s"] == 120 and saved["changed_by"] == "dispatcher.xl"


def test_a_technician_declines_a_system_assignment_with_a_reason(
        open_page: Callable[..., Page], api: httpx.Client, shot: Callable) -> None:
    chosen = api.put(f"/api/v1/regions/{xl_branch(api)}/dispatch-mode", json={"mode": "assign"},
                     headers=bearer(api, "dispatcher.xl"))
    assert chosen.status_code == 200, chosen.text
    on_duty(api, bearer(api, "tech01"), at={"lat": HOME_TECH01["latitude"], "lng": HOME_TECH01["longitude"]})
    ticket = report_near(api, token_of(api, "dispatcher.xl"), description="机顶盒无法开机")
    assert ticket["state"] == "accepted" and ticket["system_assigned"], ticket

    # The phone opened after the assignment (as from the WeChat push's link): the ticket is in 我的工单.
    phone = open_page(f"/m/tech?ticket={ticket['id']}", phone=True, geolocation=HOME_TECH01)
    sign_in(phone, "tech01")
    mine = phone.locator(f'article[data-ticket="{ticket["id"]}"]')
    expect(mine).to_contain_text("系统派单")
    mine.get_by_role("button", name="拒单").click()
    mine.get_by_label("拒单原因").select_option("too_far")
    shot(phone, "decline-form")
    mine.get_by_role("button", name="确认拒单").click()
    expect(phone.locator(f'article[data-ticket="{ticket["id"]}"]')).to_have_count(0)

    detail = api.get(f"/api/v1/tickets/{ticket['id']}", headers=bearer(api, "dispatcher.xl")).json()
    [declined] = [e for e in detail["events"] if e["action"] == "decline"]
    assert declined["actor"] == "tech01" and detail["technician_id"] != declined["technician_id"]


def test_the_console_statistics_count_declines_by_reason(open_page: Callable[..., Page], api: httpx.Client,
                                                         shot: Callable) -> None:
    api.put(f"/api/v1/regions/{xl_branch(api)}/dispatch-mode", json={"mode": "assign"},
            headers=bearer(api, "dispatcher.xl"))
    on_duty(api, bearer(api, "tech01"), at={"lat": HOME_TECH01["latitude"], "lng": HOME_TECH01["longitude"]})
    ticket = report_near(api, token_of(api, "dispatcher.xl"), description="电视没信号")
    declined = api.post(f"/api/v1/tickets/{ticket['id']}/decline", json={"reason_code": "no_skill"},
                        headers=bearer(api, "tech01"))
    assert declined.status_code == 200, declined.text

    console = open_page("/console")
    sign_in(console, "dispatcher.xl")
    console.get_by_role("tab", name="统计").click()
    expect(console.locator(".stats")).to_contain_text("拒单 1 次（按原因）")
    drawn = console.evaluate("() => echarts.getInstanceByDom(document.querySelector("
                             "\"[data-chart='declines'] .chart-canvas\")).getOption()")
    assert drawn["yAxis"][0]["data"] == ["不会处理此类故障"] and drawn["series"][0]["data"] == [1]
    shot(console, "declines")
