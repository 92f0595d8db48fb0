"""The console's map (Leaflet): a busy morning's clusters, GCJ-02 street tiles, the technicians layer, the
selected ticket's offer ring and demand against supply per H3 cell over the day."""

import math
import random
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import APIResponse, Locator, Page, Route, expect
from sqlalchemy import text
from sqlalchemy.engine import Engine

from dispatch.app import create_app
from dispatch.kernel.settings import Settings
from geo.crs import gcj02_to_wgs84, wgs84_to_gcj02
from geo.hexgrid import cell_of
from geo.latlng import LatLng
from tests.bench.grabs import copy_tickets
from tests.conftest import on_duty, serving
from tests.e2e.conftest import held, let_in, sign_in, token_of

TZ = ZoneInfo("Asia/Shanghai")
SPOT = {"lat": 43.9455, "lng": 116.0702}
MORNING = {"width": 1440, "height": 900}
# Where a morning's reports gather in Xilinhot (its grids span 116.03-116.13 E, 43.90-43.97 N): the old
# town, the station, the development zone, and a scatter over the whole city.
HOTSPOTS = ((43.935, 116.08, 0.006), (43.91, 116.115, 0.004), (43.955, 116.045, 0.005))
STATES = ("pending", "pending", "pending", "accepted", "accepted", "timed_out", "awaiting_followup")


def bearer(api: httpx.Client, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(api, username)}"}


def report(api: httpx.Client, where: dict[str, float], description: str = "光猫红灯",
           phone: str = "13900000003") -> dict:
    reply = api.post("/api/v1/tickets", headers=bearer(api, "dispatcher.xl"), json={
        "type_code": "broadband_fault", "description": description, "location": where,
        "contact": {"name": "王五", "phone": phone}})
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def morning(api: httpx.Client, engine: Engine, count: int) -> None:
    """`count` open tickets over the city in the states of a busy morning (copied in SQL: through the API
    they would take minutes on this machine); seeded, so every run draws the same morning."""
    ids = copy_tickets(engine, report(api, SPOT)["id"], count - 1)
    chance = random.Random(17)
    with engine.begin() as conn:
        for n, ticket_id in enumerate(ids):
            if n % 3:
                lat, lng, spread = HOTSPOTS[n % len(HOTSPOTS)]
                lat, lng = chance.gauss(lat, spread), chance.gauss(lng, spread * 1.4)
            else:
                lat, lng = chance.uniform(43.902, 43.968), chance.uniform(116.032, 116.128)
            conn.execute(text("UPDATE ticket SET location = ST_SetSRID(ST_MakePoint(:lng, :lat), 4326), "
                              "state = :state WHERE id = :id"),
                         {"lng": lng, "lat": lat, "state": chance.choice(STATES), "id": ticket_id})


def console_of(open_page: Callable[..., Page], username: str = "dispatcher.xl", path: str = "/console") -> Page:
    console = open_page(path)
    console.set_viewport_size(MORNING)
    sign_in(console, username)
    expect(console.locator(".gridmap path.grid")).to_have_count(8)
    return console


def centre(locator: Locator) -> tuple[float, float]:
    box = locator.bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def shown_tickets(console: Page) -> int:
    """Tickets on screen: each cluster's count and each lone ticket."""
    counts = console.locator(".dot.cluster").evaluate_all("els => els.map((e) => Number(e.dataset.count))")
    return int(sum(counts)) + console.locator(".dot.ticket").count()


def test_a_refresh_answered_late_never_takes_a_newer_ticket_off_the_map(
        open_page: Callable[..., Page], api: httpx.Client) -> None:
    # Live refreshes overlap when reports come quickly; the older one's answer, landing last, drew the map as it was
    # before the newer report.
    report(api, SPOT)
    console = console_of(open_page)
    expect(console.locator(".dot.ticket, .dot.cluster")).to_have_count(1)
    first_reads: list[tuple[Route, APIResponse]] = []
    map_read = re.compile(r"/api/v1/tickets\?(?!.*with_total).*state=pending")  # the map's, not the list's
    # Answered by the server now, with two tickets; the answer is held back from the page.
    console.route(map_read, lambda route: first_reads.append((route, route.fetch())), times=1)
    report(api, {"lat": SPOT["lat"] + 0.01, "lng": SPOT["lng"]}, phone="13900000004")
    held(console, first_reads)
    report(api, {"lat": SPOT["lat"] - 0.01, "lng": SPOT["lng"]}, phone="13900000005")
    expect(console.locator("#pool tr.row")).to_have_count(3)  # the newer refresh is in
    route, answer = first_reads[0]
    let_in(console, "**/api/v1/incidents", lambda: route.fulfill(response=answer))  # the map's read goes on to it
    assert shown_tickets(console) == 3


def test_a_technicians_read_answered_late_never_puts_back_who_was_not_on_duty_yet(
        open_page: Callable[..., Page], api: httpx.Client) -> None:
    # The clock's, a refresh's and a branch switch's reads of who is on duty overlap; the older answer, landing
    # last, drew the map as it was before.
    on_duty(api, bearer(api, "tech01"), at=SPOT)
    console = console_of(open_page)
    technicians = console.locator(".dot.technician")
    expect(technicians).to_have_count(1)
    first_reads: list[tuple[Route, APIResponse]] = []
    # Answered by the server now, with tech01 alone; the answer is held back from the page.
    console.route("**/api/v1/technicians/on-duty", lambda route: first_reads.append((route, route.fetch())), times=1)
    report(api, SPOT)  # a refresh reads the loads again
    held(console, first_reads)
    on_duty(api, bearer(api, "tech02"), at={"lat": SPOT["lat"] + 0.01, "lng": SPOT["lng"]})
    report(api, SPOT, phone="13900000004")
    expect(technicians).to_have_count(2)  # the newer read is in
    route, answer = first_reads[0]
    let_in(console, "**/api/v1/technicians/on-duty", lambda: route.fulfill(response=answer))
    assert technicians.count() == 2


def test_a_dispatchers_morning_with_300_tickets_clusters_by_state_and_a_cluster_expands_when_clicked(
        open_page: Callable[..., Page], api: httpx.Client, committed_db: Engine, shot: Callable) -> None:
    for n, username in enumerate(("tech01", "tech02", "tech03", "tech05", "tech06")):
        on_duty(api, bearer(api, username), at={"lat": 43.91 + 0.012 * n, "lng": 116.045 + 0.017 * n})
    morning(api, committed_db, 300)
    console = console_of(open_page)

    clusters = console.locator(".dot.cluster")
    expect(clusters.first).to_be_visible()
    assert shown_tickets(console) == 300  # nothing hidden, nothing counted twice
    expect(console.locator(".dot.technician")).to_have_count(5)  # read after the tickets, and drawn when it answers
    biggest = max(clusters.all(), key=lambda c: int(c.get_attribute("data-count") or 0))
    assert re.search(r"待接单 \d+ · .*已接单 \d+", biggest.get_attribute("title") or "")  # its colours, in words
    shot(console, "a-dispatchers-morning-300-tickets")  # test-output/...-a-dispatchers-morning-300-tickets.png
    scale = console.locator(".leaflet-control-scale-line").inner_text()

    biggest.click()

    expect(console.locator(".leaflet-control-scale-line")).not_to_have_text(scale)  # zoomed in
    expect(console.locator(".dot.ticket").first).to_be_visible()  # the cluster fell apart into tickets
    assert shown_tickets(console) < 300  # the view now holds one part of the city
    shot(console, "cluster-expanded")
    console.get_by_title("缩小").click()
    expect(console.locator(".leaflet-control-scale-line")).not_to_have_text(
        console.locator(".leaflet-control-scale-line").inner_text())


@pytest.fixture
def gcj02_server(settings: Settings, live_server: str) -> Iterator[str]:
    """The app with GCJ-02 street tiles (any image will do as a tile: the test reads where tiles are placed)."""
    tiles = f"{live_server}/static/vendor/leaflet/images/layers.png?z={{z}}&x={{x}}&y={{y}}"
    with serving(create_app(settings.model_copy(update={"map_tile_url": tiles, "map_tile_crs": "gcj02"}))) as url:
        yield url


def pixel_on_tiles(console: Page, point: LatLng) -> tuple[float, float]:
    """Where `point` (in the tiles' datum) is on screen, from a street tile's place and its z/x/y:
    Web Mercator, as every XYZ tile provider draws."""
    tile = console.locator(".street-tiles img.leaflet-tile-loaded").first
    z, x, y = (int(n) for n in re.findall(r"[zxy]=(\d+)", tile.get_attribute("src") or ""))
    box = tile.bounding_box()
    assert box is not None
    world_x = (point.lng + 180) / 360 * 2**z
    sin = math.sin(math.radians(point.lat))
    world_y = (0.5 - math.log((1 + sin) / (1 - sin)) / (4 * math.pi)) * 2**z
    return box["x"] + (world_x - x) * box["width"], box["y"] + (world_y - y) * box["height"]


def test_on_gcj02_tiles_a_ticket_sits_on_its_gcj02_pixel_and_a_click_gives_wgs84(
        open_page: Callable[..., Page], api: httpx.Client, gcj02_server: str, shot: Callable) -> None:
    ticket = report(api, SPOT)
    console = console_of(open_page, "clerk.xl", f"{gcj02_server}/console")
    marker = console.locator(f'.dot.ticket[data-id="{ticket["id"]}"]')
    expect(console.locator(".street-tiles img.leaflet-tile-loaded").first).to_be_attached()

    at = centre(marker)
    wgs84 = LatLng(SPOT["lat"], SPOT["lng"])
    on_street = pixel_on_tiles(console, wgs84_to_gcj02(wgs84))
    unshifted = pixel_on_tiles(console, wgs84)
    assert math.dist(at, on_street) < 1.5, (at, on_street)
    assert math.dist(at, unshifted) > 10  # the shift is visible at this zoom: a few hundred metres
    shot(console, "gcj02")

    # The phone-in form's place: a click on a street corner of the tiles is that corner in WGS-84.
    console.get_by_role("tab", name="录入").click()
    corner = LatLng(43.93, 116.1)  # a GCJ-02 position, as the tiles show it
    console.mouse.click(*pixel_on_tiles(console, corner))
    chosen = console.get_by_text(re.compile(r"^位置："))
    expect(chosen).to_be_visible()
    lat, lng = (float(n) for n in re.findall(r"\d+\.\d+", chosen.inner_text()))
    expected = gcj02_to_wgs84(corner)
    metres_per_degree = 111_000
    assert abs(lat - expected.lat) * metres_per_degree < 20 and abs(lng - expected.lng) * metres_per_degree < 20
    assert abs(lat - corner.lat) * metres_per_degree > 100  # not the unshifted point


def lat_lng(point: LatLng) -> tuple[float, float]:
    return point.lat, point.lng


def test_the_pages_conversion_is_the_servers(open_page: Callable[..., Page]) -> None:
    page = open_page("/console")
    points = [LatLng(43.9455, 116.0702), LatLng(22.54, 114.06), LatLng(39.9, 116.4), LatLng(48.85, 2.35)]

    found: list[Any] = page.evaluate("""async (points) => {
        const crs = await import('/static/common/crs.js');
        return points.map(([lat, lng]) => [crs.wgs84ToGcj02({ lat, lng }), crs.gcj02ToWgs84({ lat, lng })]);
    }""", [[p.lat, p.lng] for p in points])

    for point, (shifted, back) in zip(points, found, strict=True):
        assert (shifted["lat"], shifted["lng"]) == pytest.approx(lat_lng(wgs84_to_gcj02(point)), abs=1e-12)
        assert (back["lat"], back["lng"]) == pytest.approx(lat_lng(gcj02_to_wgs84(point)), abs=1e-12)


def test_with_no_tile_url_the_grids_alone_are_the_map_and_it_still_zooms(
        open_page: Callable[..., Page], api: httpx.Client, shot: Callable) -> None:
    ticket = report(api, SPOT)
    console = console_of(open_page)

    expect(console.locator(".grid-label", has_text="希日塔拉街道")).to_be_visible()
    expect(console.locator(".street-tiles")).to_have_count(0)
    expect(console.locator(f'.dot.ticket.pending[data-id="{ticket["id"]}"]')).to_be_visible()
    scale = console.locator(".leaflet-control-scale-line").inner_text()
    console.get_by_title("放大").click()
    expect(console.locator(".leaflet-control-scale-line")).not_to_have_text(scale)
    shot(console, "grids-only")


def test_the_technicians_layer_shows_their_load_and_can_be_hidden(
        open_page: Callable[..., Page], api: httpx.Client, shot: Callable) -> None:
    on_duty(api, bearer(api, "tech01"), at=SPOT)
    on_duty(api, bearer(api, "tech02"), at={"lat": 43.92, "lng": 116.06})
    console = console_of(open_page)
    technicians = console.locator(".dot.technician")
    expect(technicians).to_have_count(2)
    expect(technicians.first).to_have_text("0")  # holding nothing yet
    expect(technicians.first).to_have_attribute("title", re.compile(r"在班，在手 0 单"))

    console.get_by_label("在班维护人员").uncheck()
    expect(technicians).to_have_count(0)
    shot(console, "technicians-hidden")
    console.get_by_label("在班维护人员").check()
    expect(technicians).to_have_count(2)


def test_the_selected_tickets_offer_ring_shows_the_technicians_it_was_offered_to(
        open_page: Callable[..., Page], api: httpx.Client, shot: Callable) -> None:
    near = {"lat": SPOT["lat"] + 0.005, "lng": SPOT["lng"]}
    on_duty(api, bearer(api, "tech01"), at=near)
    on_duty(api, bearer(api, "tech02"), at={"lat": 44.2, "lng": 116.5})  # 40 km away: beyond the first ring
    ticket = report(api, SPOT, "宽带断了")
    [offered] = ticket["offers"]
    console = console_of(open_page)
    expect(console.locator(".offer-ring")).to_have_count(0)

    console.locator(f'#pool tr[data-ticket="{ticket["id"]}"]').click()

    ring = console.locator("path.offer-ring")
    expect(ring).to_have_count(1)
    marker = console.locator(f'.dot.offered[data-technician="{offered["technician_id"]}"]')
    expect(marker).to_have_count(1)
    expect(marker).to_have_attribute("title", re.compile(r"第 1 圈推送 · \d+ 米"))
    box = ring.bounding_box()
    x, y = centre(marker)
    assert box is not None and box["x"] < x < box["x"] + box["width"] and box["y"] < y < box["y"] + box["height"]
    expect(console.locator(".dot.offered")).to_have_count(1)  # not the one 40 km away
    shot(console, "offer-ring")

    console.get_by_role("dialog", name="工单详情").get_by_role("button", name="关闭").click()
    expect(ring).to_have_count(0)


def test_a_burst_of_reports_in_one_cell_shows_hot_in_its_hour_and_not_in_another(
        open_page: Callable[..., Page], api: httpx.Client, shot: Callable) -> None:
    for n in range(6):
        # Six neighbours, six phones: one subscriber's second report would merge into the first.
        report(api, {"lat": SPOT["lat"] + 0.0003 * n, "lng": SPOT["lng"]}, f"停电后断网 {n}", f"1390000010{n}")
    quiet = {"lat": 43.915, "lng": 116.11}
    on_duty(api, bearer(api, "tech01"), at=SPOT)
    on_duty(api, bearer(api, "tech02"), at=quiet)
    burst = cell_of(LatLng(SPOT["lat"], SPOT["lng"]), 8)
    console = console_of(open_page)

    console.get_by_label("供需热力").check()

    hot = console.locator(f'path.cell.hot[data-cell="{burst}"]')
    expect(hot).to_have_count(1)  # six reports against one technician
    expect(console.locator(f'path.cell.cool[data-cell="{cell_of(LatLng(quiet["lat"], quiet["lng"]), 8)}"]')) \
        .to_have_count(1)  # a technician and no reports
    shot(console, "heat-all-day")

    hour = console.get_by_label("时段")
    this_hour = datetime.now(TZ).hour
    hour.fill(str((this_hour + 6) % 24))
    expect(console.locator("output")).to_have_text(f"{(this_hour + 6) % 24}:00–{(this_hour + 6) % 24 + 1}:00")
    expect(hot).to_have_count(0)
    hour.fill(str(this_hour))
    expect(hot).to_have_count(1)
    shot(console, "heat-this-hour")
