"""The phone in a basement: taps kept and sent once the signal returns, a grab that is never queued, photos on
the cards, and every error in Chinese words."""

import re
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.conftest import DEMO_PASSWORD
from tests.e2e.conftest import sign_in, token_of
from tests.e2e.test_report_page import open_report, tiny_png
from tests.e2e.test_tech_page import HOME_TECH01, offered_on_the_phone

pytestmark = pytest.mark.usefixtures("fail_on_console_errors")
# A shared 2-core machine under load: the live feed may take longer than Playwright's default 5 s.
expect.set_options(timeout=30_000)

LATIN = re.compile(r"[A-Za-z]{3,}")  # an English word left on a Chinese page


def as_dispatcher(api: httpx.Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(api, 'dispatcher.xl')}"}


def grab_on_the_phone(card: Locator) -> None:
    card.get_by_role("button", name="抢单").click()
    expect(card.get_by_role("status")).to_contain_text("抢到了")
    # Won: the card no longer says 待接单.
    expect(card.locator(".badge")).to_have_text("已接单")


def test_a_completion_made_offline_waits_on_the_phone_and_is_sent_once_back_online(
        open_page: Callable[..., Page], api: httpx.Client, shot: Callable) -> None:
    phone, ticket, card = offered_on_the_phone(open_page, api, "地下室机房断网")
    expect(phone.locator("header.bar .who")).to_have_text("王建军")  # the name, not the log-in
    grab_on_the_phone(card)

    phone.get_by_role("tab", name="我的工单").click()
    mine = phone.locator(f'article[data-ticket="{ticket["id"]}"]')
    expect(mine.locator(".deadline")).to_contain_text("完成时限")
    mine.get_by_role("button", name="到达").click()
    expect(mine.get_by_role("button", name="完工")).to_be_visible()

    phone.context.set_offline(True)
    mine.get_by_role("button", name="完工").click()
    mine.get_by_label("完工说明").fill("更换机房光猫")
    mine.locator('input[type="file"]').set_input_files([{"name": "onu.png", "mimeType": "image/png",
                                                         "buffer": tiny_png()}])
    mine.get_by_role("button", name="提交完工").click()
    waiting = phone.get_by_role("region", name="等待发送")
    expect(waiting).to_contain_text("完工")
    expect(waiting).to_contain_text(ticket["number"])
    expect(mine.get_by_role("status")).to_contain_text("完工已保存，等待网络发送")
    shot(phone, "waiting-offline")
    assert api.get(f"/api/v1/tickets/{ticket['id']}", headers=as_dispatcher(api)).json()["state"] == "accepted"

    phone.context.set_offline(False)
    expect(waiting).to_be_hidden()
    expect(mine).to_contain_text("等待回访")
    photo = mine.locator(".photos img")
    expect(photo).to_have_count(1)
    mine.get_by_role("button", name="放大现场照片 1").click()
    expect(phone.locator("dialog.photo-view img")).to_be_visible()
    shot(phone, "sent-with-photo")

    detail = api.get(f"/api/v1/tickets/{ticket['id']}", headers=as_dispatcher(api)).json()
    assert detail["state"] == "awaiting_followup" and detail["completion_note"] == "更换机房光猫"
    assert [e["action"] for e in detail["events"]].count("complete") == 1
    assert len(detail["attachments"]) == 1


def test_a_grab_offline_is_not_queued_and_can_be_retried_online(
        open_page: Callable[..., Page], api: httpx.Client, shot: Callable) -> None:
    phone, ticket, card = offered_on_the_phone(open_page, api, "电视没有信号")
    expect(card).to_contain_text("电视没有信号")

    phone.context.set_offline(True)
    card.get_by_role("button", name="抢单").click()
    expect(card.get_by_role("status")).to_contain_text("抢单不会排队")
    expect(phone.get_by_role("region", name="等待发送")).to_be_hidden()
    shot(phone, "grab-offline")
    assert api.get(f"/api/v1/tickets/{ticket['id']}", headers=as_dispatcher(api)).json()["state"] == "pending"

    phone.context.set_offline(False)
    card.get_by_role("button", name="重新抢单").click()
    expect(card.get_by_role("status")).to_contain_text("抢到了")
    detail = api.get(f"/api/v1/tickets/{ticket['id']}", headers=as_dispatcher(api)).json()
    assert detail["state"] == "accepted"


def test_a_wrong_password_reads_in_chinese(open_page: Callable[..., Page], shot: Callable) -> None:
    phone = open_page("/m/tech", phone=True)
    phone.get_by_placeholder("用户名").fill("tech01")
    phone.get_by_placeholder("密码").fill(DEMO_PASSWORD + "-wrong")
    phone.get_by_role("button", name="登录").click()
    error = phone.get_by_role("alert")
    expect(error).to_have_text("用户名或密码不对")
    shot(phone, "wrong-password")


def test_with_location_refused_the_duty_switch_stays_off_and_says_why(
        open_page: Callable[..., Page], shot: Callable) -> None:
    phone = open_page("/m/tech", phone=True)
    phone.context.clear_permissions()
    sign_in(phone, "tech02")
    switch = phone.get_by_role("switch", name="上班")
    switch.click()  # not check(): the refusal may turn it back off before check() looks
    expect(phone.locator("#status")).to_contain_text("定位被拒绝")
    expect(switch).not_to_be_checked()

    # The pool needs a position the phone never sent: location_unknown, in words.
    phone.get_by_role("tab", name="抢单池").click()
    pool_error = phone.locator("section.list p.error")
    expect(pool_error).to_contain_text("还不知道你的位置")
    shot(phone, "location-refused")
    for text in (phone.locator("#status").inner_text(), pool_error.inner_text()):
        assert not LATIN.search(text), text


def test_the_report_form_refuses_12345_as_a_phone(open_page: Callable[..., Page], subscriber_token: str,
                                                  api: httpx.Client, shot: Callable) -> None:
    report = open_report(open_page, subscriber_token)
    report.get_by_role("button", name="宽带故障").click()
    report.get_by_role("button", name="没解决，继续报修").click()
    report.get_by_label("问题描述").fill("光猫红灯")
    expect(report.locator("p.muted").filter(has_text="锡林浩特")).to_be_visible()
    report.get_by_label("联系人").fill("刘女士")
    report.get_by_label("手机号").fill("12345")
    report.get_by_role("button", name="提交报修").click()
    expect(report.get_by_role("alert").filter(has_text="手机号")).to_contain_text("请填写正确的手机号")
    shot(report, "bad-phone")
    mine = api.get("/api/v1/tickets", headers={"Authorization": f"Bearer {subscriber_token}"}).json()
    assert mine["items"] == []


def test_the_progress_page_names_the_technician_and_shows_the_photos(
        open_page: Callable[..., Page], subscriber_token: str, api: httpx.Client, shot: Callable) -> None:
    subscriber = {"Authorization": f"Bearer {subscriber_token}"}
    ticket = api.post("/api/v1/tickets", headers=subscriber, json={
        "type_code": "broadband_fault", "description": "光猫 LOS 红灯", "source": "wechat",
        "location": {"lat": HOME_TECH01["latitude"], "lng": HOME_TECH01["longitude"]},
        "contact": {"name": "刘女士", "phone": "13812345678"}}).json()
    stored = api.post(f"/api/v1/tickets/{ticket['id']}/attachments", headers=subscriber,
                      files={"file": ("onu.png", tiny_png(), "image/png")})
    assert stored.status_code == 201, stored.text
    tech = {"Authorization": f"Bearer {token_of(api, 'tech01')}"}
    assert api.put("/api/v1/me/duty", headers=tech, json={"on_duty": True}).status_code == 200
    located = api.put("/api/v1/me/location", headers=tech, json={"lat": 43.95, "lng": 116.05, "accuracy_m": 10})
    assert located.status_code < 300, located.text
    assert api.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=tech).status_code == 200

    page = open_page(f"/m/report?ticket={ticket['id']}#access_token={subscriber_token}", phone=True,
                     geolocation=HOME_TECH01)
    visit = page.get_by_role("group", name="上门人员")
    expect(visit).to_contain_text("王建军")
    expect(visit.get_by_role("link", name="15025550349")).to_have_attribute("href", "tel:15025550349")
    expect(visit).to_contain_text("左右到达")
    expect(page.locator(".photos img")).to_have_count(1)
    shot(page, "progress")
