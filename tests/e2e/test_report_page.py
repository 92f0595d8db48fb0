"""The subscriber's report page, end to end: tips, report, live on the console and the phone, rating."""

import re
import struct
import zlib
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from tests.conftest import on_duty
from tests.e2e.conftest import held, let_in, sign_in, token_of
from tests.e2e.test_tech_page import HOME_TECH01, go_on_duty


def tiny_png() -> bytes:
    """A real 1x1 PNG: attachments are typed from their bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
            + chunk(b"IEND", b""))


def open_report(open_page: Callable[..., Page], token: str) -> Page:
    # The way WeChat OAuth's callback will bring the subscriber back: the token in the fragment.
    return open_page(f"/m/report#access_token={token}", phone=True, geolocation=HOME_TECH01)


def test_tips_that_solve_the_problem_save_a_visit(open_page: Callable[..., Page], subscriber_token: str,
                                                   api: httpx.Client, shot: Callable) -> None:
    page = open_report(open_page, subscriber_token)
    page.get_by_role("button", name="宽带故障").click()
    tips = page.get_by_role("note", name="自助排障")
    expect(tips).to_contain_text("将光猫（光调制解调器）断电")
    shot(page, "tips")
    tips.get_by_role("button", name="问题已解决").click()
    expect(page.get_by_text("已为您省去一次上门")).to_be_visible()
    shot(page, "visit-saved")

    period = api.get("/api/v1/tips/outcomes", params={"from": "2000-01-01", "to": "2100-01-01"},
                     headers={"Authorization": f"Bearer {token_of(api, 'admin')}"}).json()
    assert period["solved"] == 1 and period["items"][0]["type_code"] == "broadband_fault"


def test_a_report_reaches_the_console_and_the_phone_live_and_the_subscriber_rates_the_visit(
        open_page: Callable[..., Page], subscriber_token: str, api: httpx.Client, shot: Callable) -> None:
    console = open_page("/console")
    sign_in(console, "dispatcher.xl")
    expect(console.locator(".gridmap path.grid")).to_have_count(8)
    tech = open_page("/m/tech", phone=True, geolocation=HOME_TECH01)
    go_on_duty(tech, "tech01")

    report = open_report(open_page, subscriber_token)
    report.get_by_role("button", name="宽带故障").click()
    report.get_by_role("button", name="没解决，继续报修").click()
    report.get_by_label("问题描述").fill("光猫 LOS 灯红色闪烁，全家断网")
    report.get_by_label("照片（最多 9 张）").set_input_files(
        [{"name": "onu.png", "mimeType": "image/png", "buffer": tiny_png()}])
    expect(report.locator("p.muted").filter(has_text="锡林浩特")).to_be_visible()  # the pin's address
    report.get_by_label("详细地址").fill("3 号楼 2 单元 501")
    report.get_by_label("联系人").fill("刘女士")
    report.get_by_label("手机号").fill("13812345678")
    shot(report, "form")
    report.get_by_role("button", name="提交报修").click()
    expect(report.get_by_role("heading", name="报修进度")).to_contain_text("待接单")
    ticket_id = report.url.split("ticket=")[1]
    shot(report, "submitted")

    # On the console within seconds and without a reload: map and pool.
    expect(console.locator(f'.gridmap .ticket.pending[data-id="{ticket_id}"]')).to_have_count(1)
    expect(console.locator(f'#pool tr[data-ticket="{ticket_id}"]')).to_contain_text("宽带故障")
    shot(console, "console")

    # The nearest technician gets it live, grabs, arrives and completes with a note.
    card = tech.locator(f'article[data-ticket="{ticket_id}"]')
    expect(card).to_contain_text("全家断网")
    card.get_by_role("button", name="抢单").click()
    expect(card).to_contain_text("抢到了")
    expect(console.locator(f'.gridmap .ticket.accepted[data-id="{ticket_id}"]')).to_have_count(1)
    tech.get_by_role("tab", name="我的工单").click()
    mine = tech.locator(f'article[data-ticket="{ticket_id}"]')
    mine.get_by_role("button", name="到达").click()
    expect(mine.get_by_role("button", name="到达")).to_have_count(0)
    mine.get_by_role("button", name="完工").click()
    mine.get_by_label("完工说明").fill("光纤接头松动，重新熔接")
    mine.get_by_role("button", name="提交完工").click()
    expect(mine).to_contain_text("等待回访")
    shot(tech, "tech")

    # The subscriber sees the progress and rates the visit.
    report.get_by_role("button", name="刷新进度").click()
    rating = report.locator("form.rating")
    expect(rating).to_contain_text("光纤接头松动，重新熔接")
    rating.get_by_role("button", name="5 星").click()
    rating.get_by_label("评价").fill("师傅很专业")
    shot(report, "rating")
    rating.get_by_role("button", name="提交评价").click()
    expect(report.get_by_role("heading", name="报修进度")).to_contain_text("完结")
    expect(report.get_by_text("您的评价：★★★★★")).to_be_visible()
    shot(report, "rated")

    detail = api.get(f"/api/v1/tickets/{ticket_id}",
                     headers={"Authorization": f"Bearer {token_of(api, 'dispatcher.xl')}"}).json()
    assert detail["state"] == "completed" and detail["satisfaction"] == 5 and detail["source"] == "wechat"
    assert detail["address"].endswith("3 号楼 2 单元 501")
    assert [e["action"] for e in detail["events"]] == ["create", "grab", "arrive", "complete", "followup"]


@pytest.fixture
def tv_tips_restored(api: httpx.Client) -> Iterator[None]:
    """Ticket types are demo data kept across tests: put the tips back afterwards."""
    original = api.get("/api/v1/ticket-types/tv_no_signal/tips").json()["markdown"]
    yield
    api.put("/api/v1/ticket-types/tv_no_signal/tips", json={"markdown": original},
            headers={"Authorization": f"Bearer {token_of(api, 'admin')}"})


def test_tips_an_admin_edits_on_the_console_are_what_the_subscriber_reads(
        open_page: Callable[..., Page], subscriber_token: str, tv_tips_restored: None, shot: Callable) -> None:
    console = open_page("/console")
    sign_in(console, "admin")
    console.get_by_role("tab", name="知识库").click()
    console.get_by_label("类型").select_option(label="电视无信号")
    editor = console.get_by_label("自助排障提示（Markdown）")
    expect(editor).to_have_value(re.compile("射频线"))  # the TV tips, loaded
    editor.fill("1. 检查机顶盒**电源**是否打开\n2. 按遥控器“信号源”切到 HDMI\n\n<b>不会被执行</b>")
    console.get_by_role("button", name="保存").click()
    preview = console.locator(".tips")
    expect(preview.locator("strong")).to_have_text("电源")
    expect(preview).to_contain_text("<b>不会被执行</b>")  # raw HTML shown as text
    shot(console, "tips-editor")

    report = open_report(open_page, subscriber_token)
    report.get_by_role("button", name="电视无信号").click()
    tips = report.get_by_role("note", name="自助排障")
    expect(tips.locator("li").first).to_have_text("检查机顶盒电源是否打开")
    shot(report, "tips")


def test_the_subscriber_urges_their_report_once_and_the_button_says_when_again(
        open_page: Callable[..., Page], subscriber_token: str, api: httpx.Client, shot: Callable) -> None:
    mine = {"Authorization": f"Bearer {subscriber_token}"}
    reply = api.post("/api/v1/tickets", headers=mine, json={
        "type_code": "broadband_fault", "description": "一直没网",
        "location": {"lat": HOME_TECH01["latitude"], "lng": HOME_TECH01["longitude"]},
        "contact": {"name": "刘女士", "phone": "13812345678"}})
    assert reply.status_code == 201, reply.text
    ticket = reply.json()
    page = open_page(f"/m/report?ticket={ticket['id']}#access_token={subscriber_token}", phone=True)
    page.get_by_role("button", name="催办").click()
    expect(page.get_by_role("button", name=re.compile("已催办，10 分钟后可再催"))).to_be_disabled()
    shot(page, "urged")
    dispatcher = {"Authorization": f"Bearer {token_of(api, 'dispatcher.xl')}"}
    seen = api.get(f"/api/v1/tickets/{ticket['id']}", headers=dispatcher)
    assert seen.json()["urge_count"] == 1


def test_the_address_sent_is_the_pins_not_one_answered_late_for_where_it_was(
        open_page: Callable[..., Page], subscriber_token: str, api: httpx.Client) -> None:
    # The pin moved twice; the first move's address, answered after the second's, was shown and sent.
    report = open_report(open_page, subscriber_token)
    report.get_by_role("button", name="宽带故障").click()
    report.get_by_role("button", name="没解决，继续报修").click()
    where = report.locator("p.muted").filter(has_text="锡林浩特")
    expect(where).to_be_visible()
    earlier: list[Route] = []
    report.route("**/api/v1/geo/reverse*", lambda route: earlier.append(route), times=1)
    report.locator(".minimap").click(position={"x": 60, "y": 60})
    held(report, earlier)
    with report.expect_response("**/api/v1/geo/reverse*"):
        report.locator(".minimap").click(position={"x": 120, "y": 90})
    let_in(report, "**/api/v1/geo/reverse*",  # the first move's, with an address of its own
           lambda: earlier[0].fulfill(json={"address": "早先的位置", "outside_area": False}))
    expect(where).to_be_visible()
    report.get_by_label("问题描述").fill("光猫 LOS 灯红色闪烁")
    report.get_by_label("联系人").fill("刘女士")
    report.get_by_label("手机号").fill("13812345679")
    report.get_by_role("button", name="提交报修").click()
    expect(report.get_by_role("heading", name="报修进度")).to_be_visible()
    sent = api.get(f"/api/v1/tickets/{report.url.split('ticket=')[1]}",
                   headers={"Authorization": f"Bearer {token_of(api, 'dispatcher.xl')}"}).json()
    assert sent["address"].startswith("锡林浩特"), sent["address"]


def test_a_progress_read_answered_late_leaves_the_rating_being_written(
        open_page: Callable[..., Page], subscriber_token: str, api: httpx.Client) -> None:
    # The poll and 刷新进度 overlap; the older read, answered last, drew the page again over the comment typed.
    spot = {"lat": HOME_TECH01["latitude"], "lng": HOME_TECH01["longitude"]}
    reply = api.post("/api/v1/tickets", headers={"Authorization": f"Bearer {subscriber_token}"}, json={
        "type_code": "broadband_fault", "description": "一直没网", "location": spot,
        "contact": {"name": "刘女士", "phone": "13812345670"}})
    assert reply.status_code == 201, reply.text
    ticket = reply.json()
    tech = on_duty(api, {"Authorization": f"Bearer {token_of(api, 'tech01')}"}, at=spot)
    for step, body in (("grab", None), ("arrive", {"location": spot}), ("complete", {"note": "重新熔接"})):
        done = api.post(f"/api/v1/tickets/{ticket['id']}/{step}", headers=tech, json=body)
        assert done.status_code == 200, done.text
    page = open_page(f"/m/report?ticket={ticket['id']}#access_token={subscriber_token}", phone=True)
    expect(page.locator("form.rating")).to_be_visible()
    older: list[Route] = []
    page.route(f"**/api/v1/tickets/{ticket['id']}", lambda route: older.append(route), times=1)
    page.get_by_role("button", name="刷新进度").click()
    held(page, older)
    with page.expect_response(f"**/api/v1/tickets/{ticket['id']}"):
        page.get_by_role("button", name="刷新进度").click()
    page.locator("form.rating").get_by_label("评价").fill("师傅很专业")
    let_in(page, f"**/api/v1/tickets/{ticket['id']}", older[0].continue_)
    expect(page.locator("form.rating").get_by_label("评价")).to_have_value("师傅很专业")
