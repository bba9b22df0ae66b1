"""Headless Chromium for browser tests: launching it, page error capture, screenshots, axe-core.

Playwright for Python drives Debian's ``/usr/bin/chromium``; Playwright's own browser download is
never used (the machines that run these tests have no open network). When Chromium or the
``playwright`` package is missing the tests skip with a reason naming Chromium, which
``tests/conftest.py`` turns into a failure in CI (``KIROKU_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("KIROKU_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "test-artifacts"
AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe.min.js"

# --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
# The networking flags stop Chromium's own background traffic (updates, sync, QUIC probes):
# the machine has no open network and the tests must not depend on one.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

DESKTOP = {"width": 1280, "height": 900}
MOBILE = {"width": 375, "height": 812}


def unavailable_reason(chromium: Path = CHROMIUM, package: str = "playwright") -> str | None:
    """Why browser tests cannot run here, or None when they can. Every reason names Chromium."""
    if importlib.util.find_spec(package) is None:
        return (f"Chromium tests need the {package} package (pip install -e '.[dev]'); "
                "it is not installed")
    if not os.access(chromium, os.X_OK):
        return f"Chromium not found at {chromium} (apt-get install chromium)"
    return None


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                      headless=True)


@dataclass
class PageErrors:
    """Console errors and uncaught exceptions of a page, collected as they happen."""

    console: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.exceptions.append(f"{error.name}: {error.message}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "")
            self.console.append(f"{message.text} ({where})" if where else message.text)

    @property
    def all(self) -> list[str]:
        return [*self.exceptions, *self.console]

    def assert_none(self) -> None:
        assert not self.all, "the page logged errors:\n" + "\n".join(self.all)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "page"


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG as test-artifacts/<name>.png and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{_safe_name(name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_scan(page: Page, *, options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now; return its violations (axe's own objects).

    The vendored script is run with ``page.evaluate`` (the DevTools protocol, which a page's
    Content-Security-Policy does not govern), so it works under kiroku's ``script-src 'self'``.
    ``page.add_script_tag`` would not: it inserts an inline ``<script>``, which that policy
    blocks. Each violation has ``id``, ``impact`` ("minor" … "critical"), ``help`` and ``nodes``.
    """
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_axe_source())
    result = page.evaluate("async (options) => await window.axe.run(document, options)",
                           options or {})
    return list(result["violations"])


@functools.cache
def _axe_source() -> str:
    return AXE_JS.read_text(encoding="utf-8")


def serious(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The violations a page must not have: impact serious or critical."""
    return [v for v in violations if v.get("impact") in ("serious", "critical")]


def describe(violations: list[dict[str, Any]]) -> str:
    """One line per violation, for assertion messages."""
    return "\n".join(
        f"{v['id']} ({v.get('impact')}): {v['help']} — "
        + ", ".join(str(n.get("target")) for n in v.get("nodes", [])[:5])
        for v in violations
    )
