"""The pages live under their Content-Security-Policy: what it refuses fails the test that caused it."""

from collections.abc import Callable

from playwright.sync_api import Page

from tests.e2e.conftest import csp_violation


def test_an_injected_inline_script_or_style_is_refused_and_reported(
        open_page: Callable[..., Page], csp_violations: list[str]) -> None:
    page = open_page("/console")
    with page.expect_console_message(csp_violation):
        page.evaluate("""() => { const s = document.createElement('script');
                                 s.textContent = 'window.stolen = localStorage.length';
                                 document.body.append(s); }""")
    assert page.evaluate("() => window.stolen") is None  # it never ran
    with page.expect_console_message(csp_violation):
        page.evaluate("() => document.body.setAttribute('style', 'background: red')")
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") != "rgb(255, 0, 0)"
    assert len(csp_violations) >= 2
    csp_violations.clear()  # caught, as it should be: the fixture fails any other test that leaves one
