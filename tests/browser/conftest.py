"""A real browser against the local stack: Debian's Chromium (/usr/bin/chromium), driven headless by Playwright.

``make e2e-browser`` installs both (tests/browser/install-chromium.sh, requirements-browser.txt) and runs this tier
alone; ``make test`` deselects it (marker ``browser``). Nothing here skips: without Chromium or Playwright every test
fails. Playwright is imported inside the fixtures, so that collecting ``tests`` without it installed still works.
Screenshots go to ``.local/artifacts/`` (git-ignored); their paths are printed at the end of the run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, TIMEOUT_MS, MerchantSite, screenshot
from tests.e2e.conftest import LocalStack, start_stack

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Playwright


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser_context(playwright_driver: Playwright) -> Iterator[BrowserContext]:
    """One Chromium for the session, on a fresh, empty profile (``--user-data-dir``) that is removed afterwards."""
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: run `make e2e-browser`, which installs Debian's chromium"
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        context = playwright_driver.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1024, "height": 768},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context: BrowserContext) -> Iterator[Page]:
    """A new tab; an uncaught JavaScript error on any page it shows fails the test."""
    tab = browser_context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(f"{tab.url}: {error}"))
    try:
        yield tab
    finally:
        tab.close()
    assert not errors, f"uncaught JavaScript errors: {errors}"


@pytest.fixture(scope="module", params=["openapi", "mapi"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A local stack of its own (subprocess, free ports), once per Alipay protocol."""
    yield from start_stack(tmp_path_factory.mktemp(f"browser-{request.param}-stack"), request.param)


@pytest.fixture(scope="session")
def merchant_site() -> Iterator[MerchantSite]:
    site = MerchantSite()
    try:
        yield site
    finally:
        site.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SCREENSHOTS:
        terminalreporter.section("browser screenshots")
        for path in SCREENSHOTS:
            terminalreporter.write_line(str(path))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, attach the end of the stack's output and the URL the browser was on."""
    report: Any = yield
    if report.failed and call.when == "call":
        funcargs = getattr(item, "funcargs", {})
        stack = funcargs.get("stack")
        if isinstance(stack, LocalStack):
            lines = stack.process.output().splitlines()[-80:]
            report.sections.append(("local stack output (last 80 lines)", "\n".join(lines)))
        tab = funcargs.get("page")
        if tab is not None and not tab.is_closed():
            try:
                name = item.name.replace("[", "-").replace("]", "")
                path = screenshot(tab, f"FAILED-{name}")
                report.sections.append(("browser", f"url: {tab.url}\nscreenshot: {path}"))
            except Exception as error:  # the screenshot is only a clue; the failure is the report
                report.sections.append(("browser", f"url: {tab.url}\nno screenshot: {error}"))
    return report
