"""The technician's phone page: duty, live offers, the grab that answers at once, arrive, complete."""

import re
from collections.abc import Callable

import httpx
from playwright.sync_api import APIResponse, Locator, Page, Route, expect

from dispatch.kernel.settings import Settings
from tests.conftest import on_duty
from tests.e2e.conftest import held, let_in, sign_in, token_of

HOME_TECH01 = {"latitude": 43.963615, "longitude": 116.054121}


def go_on_duty(page: Page, username: str) -> None:
    sign_in(page, username)
    page.get_by_role("switch", name="上班").check()
    expect(page.locator("#status")).to_contain_text("位置已上报")


def report_near(api: httpx.Client, token: str, *, description: str, phone: str = "13900000001") -> dict:
    reply = api.post("/api/v1/tickets", headers={"Authorization": f"Bearer {token}"}, json={
        "type_code": "broadband_fault", "description": description, "source": "phone",
        "location": {"lat": HOME_TECH01["latitude"], "lng": HOME_TECH01["longitude"]},
        "contact": {"name": "张三", "phone": phone}})
    assert reply.status_code == 201, reply.text
    return reply.json()


def offered_on_the_phone(open_page: Callable[..., Page], api: httpx.Client,
                         description: str) -> tuple[Page, dict, Locator]:
    """tech01's phone on duty at home, a report next door, and where its card will show."""
    phone = open_page("/m/tech", phone=True, geolocation=HOME_TECH01)
    go_on_duty(phone, "tech01")
    ticket = report_near(api, token_of(api, "dispatcher.xl"), description=description)
    return phone, ticket, phone.locator(f'article[data-ticket="{ticket["id"]}"]')


def test_offer_arrives_live_and_the_second_grab_reads_already_taken(
        whole_first_ring: Settings, open_page: Callable[..., Page], api: httpx.Client, shot: Callable) -> None:
    # Both phones offered at once (no lead ring): the race between two offered phones is what this shows.
    first = open_page("/m/tech", phone=True, geolocation=HOME_TECH01)
    second = open_page("/m/tech", phone=True, geolocation=HOME_TECH01)
    go_on_duty(first, "tech01")
    go_on_duty(second, "tech02")

    ticket = report_near(api, token_of(api, "dispatcher.xl"), description="光猫红灯，上不了网")

    # No reload: the offer comes over the live feed to both phones.
    first_card = first.locator(f'article[data-ticket="{ticket["id"]}"]')
    second_card = second.locator(f'article[data-ticket="{ticket["id"]}"]')
    expect(first_card).to_contain_text("光猫红灯")
    expect(second_card).to_contain_text("光猫红灯")
    shot(first, "offer")

    # The pool lists it too, nearest first with its distance.
    second.get_by_role("tab", name="抢单池").click()
    expect(second_card).to_contain_text("0 米")

    first_card.get_by_role("button", name="抢单").click()
    expect(first_card).to_contain_text("抢到了")
    second_card.get_by_role("button", name="抢单").click()
    expect(second_card.get_by_role("status")).to_have_text("已被抢")
    shot(second, "already-taken")

    first.get_by_role("tab", name="我的工单").click()
    mine = first.locator(f'article[data-ticket="{ticket["id"]}"]')
    expect(mine).to_contain_text("已接单")
    expect(mine.get_by_role("link", name="导航")).to_have_attribute("href", re.compile(r"^https://uri\.amap\.com/marker\?position=116\.05"))
    mine.get_by_role("button", name="到达").click()
    expect(mine.get_by_role("button", name="到达")).to_have_count(0)
    mine.get_by_role("button", name="完工").click()
    mine.get_by_label("完工说明").fill("更换光猫，恢复上网")
    mine.get_by_role("button", name="提交完工").click()
    expect(mine).to_contain_text("等待回访")
    # Taken: neither the offers nor the pool count it any more.
    expect(first.locator('nav.tabs [data-tab="offers"] .count')).to_have_text("")
    expect(first.locator('nav.tabs [data-tab="pool"] .count')).to_have_text("")
    shot(first, "completed")

    detail = api.get(f"/api/v1/tickets/{ticket['id']}",
                     headers={"Authorization": f"Bearer {token_of(api, 'dispatcher.xl')}"}).json()
    assert detail["state"] == "awaiting_followup"
    assert detail["completion_note"] == "更换光猫，恢复上网"


def test_a_pool_read_answered_late_never_puts_back_a_ticket_someone_took(
        open_page: Callable[..., Page], api: httpx.Client) -> None:
    # The pool is read again on every event, on a clock and on taps, and the reads overlap: an older answer landing
    # last showed a ticket taken in between as still there to grab.
    phone, ticket, card = offered_on_the_phone(open_page, api, "机顶盒一直重启")
    phone.get_by_role("tab", name="抢单池").click()
    expect(card).to_be_visible()
    older: list[tuple[Route, APIResponse]] = []
    # Answered by the server now, with the ticket still in the pool; the answer is held back from the phone.
    phone.route("**/api/v1/me/pool*", lambda route: older.append((route, route.fetch())), times=1)
    dispatcher = token_of(api, "dispatcher.xl")
    report_near(api, dispatcher, description="另一户报修", phone="13900000009")  # its event has the phone read the pool
    held(phone, older)
    tech02 = on_duty(api, {"Authorization": f"Bearer {token_of(api, 'tech02')}"},
                     at={"lat": HOME_TECH01["latitude"], "lng": HOME_TECH01["longitude"]})
    taken = api.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=tech02)
    assert taken.status_code == 200, taken.text
    report_near(api, dispatcher, description="第三户报修", phone="13900000010")  # the phone reads the pool again
    expect(card).to_have_count(0)  # the newer read is in
    route, answer = older[0]
    let_in(phone, "**/api/v1/me/pool*", lambda: route.fulfill(response=answer))
    expect(card).to_have_count(0)


def test_a_technician_hands_a_ticket_back_to_the_pool_with_a_reason(
        open_page: Callable[..., Page], api: httpx.Client, shot: Callable) -> None:
    phone, ticket, card = offered_on_the_phone(open_page, api, "路由器没有灯")
    card.get_by_role("button", name="抢单").click()
    expect(card).to_contain_text("抢到了")

    # A WeChat push about this ticket opens the page on the tab that holds it.
    phone.goto(f"/m/tech?ticket={ticket['id']}")
    expect(phone.get_by_role("tab", name="我的工单")).to_have_attribute("aria-selected", "true")
    mine = phone.locator(f'article[data-ticket="{ticket["id"]}"]')
    mine.get_by_role("button", name="退单").click()
    mine.get_by_label("退单原因").fill("缺少光猫备件")
    mine.get_by_role("button", name="确认退回抢单池").click()
    expect(mine).to_have_count(0)
    expect(phone.get_by_text("手上没有工单")).to_be_visible()
    shot(phone, "handed-back")

    phone.get_by_role("tab", name="抢单池").click()
    expect(phone.locator(f'article[data-ticket="{ticket["id"]}"]')).to_contain_text("待接单")
    detail = api.get(f"/api/v1/tickets/{ticket['id']}",
                     headers={"Authorization": f"Bearer {token_of(api, 'dispatcher.xl')}"}).json()
    assert detail["state"] == "pending" and detail["events"][-1]["note"] == "缺少光猫备件"
