"""Browser tests: Debian's Chromium driven by Playwright against a live server and a real worker.

Playwright's own browser download does not work offline, so the browser is
/usr/bin/chromium (installed by scripts/ensure-browser.sh with a CJK font:
without one every Chinese character in a screenshot is an empty box).
Screenshots go to test-output/ at the top of the work tree.
"""

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sized
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, sync_playwright
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dispatch.accounts.service import subscriber_by_phone, token_for
from dispatch.kernel.settings import Settings
from tests.conftest import DEMO_PASSWORD, ROOT, TEST_APP_DATABASE_URL, TEST_REDIS_URL

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-output"
PHONE = {"viewport": {"width": 360, "height": 740}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1366, "height": 820}}
XL_CENTRE = {"latitude": 43.935, "longitude": 116.08}
TIMEOUT_MS = 10_000  # "within seconds": every expectation waits at most this long


def _ensure_browser() -> None:
    if CHROMIUM.exists():
        return
    done = subprocess.run(["bash", str(ROOT / "scripts/ensure-browser.sh")], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.exit(f"Chromium for the browser tests is not available:\n{done.stderr}", returncode=3)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    _ensure_browser()
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=["--no-sandbox", "--disable-dev-shm-usage"])
    yield browser
    browser.close()


@pytest.fixture
def worker(live_server: str, committed_db: Engine) -> Iterator[None]:
    """The real background worker (outbox drain, ring sweeps) on the test database and Redis."""
    env = {**os.environ, "DATABASE_URL": TEST_APP_DATABASE_URL, "REDIS_URL": TEST_REDIS_URL,
           "REDIS_QUEUE_URL": TEST_REDIS_URL, "LOG_LEVEL": "WARNING",
           # Time limits are checked every second: a test moves a due time into the past and watches.
           "SLA__SWEEP_INTERVAL_S": "1"}
    process = subprocess.Popen([sys.executable, "-m", "dispatch.cli", "worker", "--drain-every", "0.5"],
                               env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    yield
    process.terminate()  # warm: rq lets the job in hand finish, which on a loaded machine may take a while
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.terminate()  # cold, as a second Ctrl-C: the job's process is killed
        process.wait(timeout=15)
    # The demo technicians outlive the test (only transient tables are truncated), and the
    # pages put them on duty: send them home, or the next tests would find them at work.
    with committed_db.begin() as conn:
        conn.execute(text("UPDATE technician SET on_duty = false, last_location = NULL, last_seen_at = NULL, "
                          "last_accuracy_m = NULL WHERE on_duty OR last_seen_at IS NOT NULL"))


@pytest.fixture
def server(live_server: str, worker: None) -> str:
    return live_server


@pytest.fixture
def api(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=10) as client:
        yield client


def token_of(api: httpx.Client, username: str) -> str:
    reply = api.post("/api/v1/auth/token", data={"username": username, "password": DEMO_PASSWORD})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


# Chromium reports a refused script, style or image on the console; the event is there for what it does not.
REPORT_CSP_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', (e) =>
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`));
"""


def csp_violation(message: ConsoleMessage) -> bool:
    return "CSP violation" in message.text or "Content Security Policy" in message.text


@pytest.fixture
def csp_violations() -> Iterator[list[str]]:
    """What the pages' Content-Security-Policy refused; a test fails if anything was."""
    violations: list[str] = []
    yield violations
    assert violations == [], "a page broke its Content-Security-Policy"


# The browser's own line for a request answered 4xx/5xx or cut off (a wrong password, a phone offline):
# the page says so in words; only a script's error is the page's fault.
NETWORK_NOISE = ("Failed to load resource", "net::ERR_INTERNET_DISCONNECTED")


@pytest.fixture
def console_errors() -> list[str]:
    """Uncaught script errors and console.error lines of every page the test opened."""
    return []


@pytest.fixture
def fail_on_console_errors(console_errors: list[str]) -> Iterator[None]:
    """Use it and the test fails if any page threw or logged an error."""
    yield
    assert console_errors == [], "a page logged an error"


def _watch_errors(context: BrowserContext, errors: list[str]) -> None:
    context.on("weberror", lambda web: errors.append(f"uncaught: {web.error}"))
    context.on("console", lambda message: message.type == "error" and not message.text.startswith(NETWORK_NOISE)
               and errors.append(message.text))


@pytest.fixture
def open_page(browser: Browser, server: str, request: pytest.FixtureRequest,
              csp_violations: list[str], console_errors: list[str]) -> Iterator[Callable[..., Page]]:
    """`open_page("/m/tech", phone=True)` → a page in a fresh browser context (its own storage)."""
    contexts: list[BrowserContext] = []

    def open_page(path: str, *, phone: bool = False, geolocation: dict[str, float] | None = None) -> Page:
        context = browser.new_context(**(PHONE if phone else DESKTOP), locale="zh-CN", timezone_id="Asia/Shanghai",
                                      base_url=server, geolocation=geolocation or XL_CENTRE, reduced_motion="reduce",
                                      permissions=["geolocation"], accept_downloads=True)
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        context.on("console", lambda message: csp_violation(message) and csp_violations.append(message.text))
        _watch_errors(context, console_errors)
        contexts.append(context)
        page = context.new_page()
        page.goto(path)
        return page

    yield open_page
    # Every page as the test left it, also when it failed: the first thing to look at.
    SHOTS.mkdir(exist_ok=True)
    for number, context in enumerate(contexts, 1):
        for page in context.pages:
            page.screenshot(path=str(SHOTS / f"{_safe(request.node.name)}-end-{number}.png"), full_page=True)
        context.close()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """Save a full-page screenshot under test-output/, named after the test."""
    SHOTS.mkdir(exist_ok=True)

    def shot(page: Page, label: str) -> Path:
        path = SHOTS / f"{_safe(request.node.name)}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return shot


def held(page: Page, routes: Sized, timeout_s: float = 30) -> None:
    """Wait until a request the page sent has been held in `routes` (a route, or a route and its answer): route
    handlers run only while the page is waited on."""
    deadline = time.monotonic() + timeout_s
    while not routes:
        assert time.monotonic() < deadline, "the page never sent the request held"
        page.wait_for_timeout(20)


def let_in(page: Page, url: str | re.Pattern[str], release: Callable[[], None]) -> None:
    """Release a held answer (`release`) and wait until the page has taken it: the answer to `url` has finished,
    and a round trip to the page's main thread has come after the tasks it queued."""
    with page.expect_response(url) as answered:
        release()
    answered.value.finished()
    page.evaluate("() => new Promise((done) => queueMicrotask(done))")


def sign_in(page: Page, username: str) -> None:
    page.get_by_placeholder("用户名").fill(username)
    page.get_by_placeholder("密码").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="登录").click()


@pytest.fixture
def subscriber_token(settings: Settings, committed_db: Engine) -> str:
    """What WeChat OAuth will hand the report page: a bearer token for a subscriber (the
    sign-in itself is the WeChat issue's; the page only keeps the token it is given)."""
    with Session(committed_db) as session, session.begin():
        subscriber_id = subscriber_by_phone(session, phone="13812345678", name="刘女士")
    return token_for(f"subscriber:{subscriber_id}", secret=settings.secret_key, ttl_min=30)
