"""Browser fixtures: one headless Chromium per session, a fresh context and page per test.

``page`` is 1280×900; parametrize ``viewport`` indirectly (``browser.MOBILE`` is 375 px wide) or
use ``mobile_page``. ``page_errors`` holds the page's console errors and uncaught exceptions, so
a test can end with ``page_errors.assert_none()``. When a test fails, a screenshot of its page
lands in test-artifacts/ (git-ignored) under the test's name.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.web.browser import (
    ARTIFACTS,
    DESKTOP,
    MOBILE,
    PageErrors,
    launch,
    screenshot,
    unavailable_reason,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    # Remember the call phase's outcome so the page fixture can screenshot a failure.
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def viewport(request: pytest.FixtureRequest) -> dict[str, int]:
    return dict(getattr(request, "param", DESKTOP))


@pytest.fixture
def context(browser: Browser, viewport: dict[str, int]) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    yield ctx
    ctx.close()


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def page(context: BrowserContext, page_errors: PageErrors,
         request: pytest.FixtureRequest) -> Iterator[Page]:
    tab = context.new_page()
    page_errors.attach(tab)
    yield tab
    if request.node.stash.get(_FAILED, False):
        screenshot(tab, f"FAILED-{request.node.name}")


@pytest.fixture
def mobile_page(browser: Browser, page_errors: PageErrors) -> Iterator[Page]:
    ctx = browser.new_context(viewport=MOBILE, is_mobile=True, has_touch=True)  # type: ignore[arg-type]
    tab = ctx.new_page()
    page_errors.attach(tab)
    yield tab
    ctx.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
