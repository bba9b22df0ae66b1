"""The browser harness itself: servers, page error capture, screenshots, axe-core under a strict CSP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.web.browser import MOBILE, PageErrors, axe_scan, describe, screenshot, serious
from tests.web.server import serve_app, serve_static

if TYPE_CHECKING:
    from playwright.sync_api import Page

# kiroku's pages forbid inline scripts; axe must still run there.
STRICT_CSP = {"Content-Security-Policy": "default-src 'self'; script-src 'self'"}

CLEAN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Records</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
</head><body><main><h1>Records</h1>
<form><label for="q">Search</label><input id="q" type="search" name="q">
<button type="submit">Search</button></form></main></body></html>"""
# A 1×1 transparent PNG.
FAVICON = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000b49444154789c6360000200000500017a5eab3f0000000049454e44ae42"
    "6082")
UNLABELED = CLEAN.replace('<label for="q">Search</label>', "")


def pages(**extra: bytes) -> dict[str, Path | bytes]:
    # The browser asks for /favicon.ico by itself; a 404 there would be logged as a page error.
    return {"/clean.html": CLEAN.encode(), "/unlabeled.html": UNLABELED.encode(),
            "/favicon.ico": FAVICON, **extra}


def test_axe_finds_an_unlabeled_input_under_a_strict_csp(page: Page, page_errors: PageErrors) -> None:
    with serve_static(pages(), headers=STRICT_CSP) as base:
        page.goto(f"{base}/unlabeled.html")
        violations = axe_scan(page)
    assert "label" in {v["id"] for v in violations}, describe(violations)
    assert serious(violations), "a form field without a label is a serious violation"
    page_errors.assert_none()


def test_axe_finds_nothing_on_a_clean_page_under_a_strict_csp(page: Page, page_errors: PageErrors) -> None:
    with serve_static(pages(), headers=STRICT_CSP) as base:
        page.goto(f"{base}/clean.html")
        violations = axe_scan(page)
        # A second scan on the same page reuses the injected script.
        assert axe_scan(page) == violations
    assert violations == [], describe(violations)
    page_errors.assert_none()


def test_the_strict_csp_really_blocks_inline_scripts(page: Page, page_errors: PageErrors) -> None:
    # What makes the test above meaningful: under this policy an inline script does not run.
    inline = CLEAN.replace("</body>", "<script>document.title = 'ran'</script></body>")
    with serve_static(pages(**{"/inline.html": inline.encode()}), headers=STRICT_CSP) as base:
        page.goto(f"{base}/inline.html")
        assert page.title() == "Records"
    assert any("Content Security Policy" in message for message in page_errors.console)


def test_page_errors_are_collected(page: Page, page_errors: PageErrors) -> None:
    script = b"console.error('broken widget'); throw new TypeError('boom');"
    broken = CLEAN.replace("</body>", '<script src="/app.js"></script></body>')
    with serve_static(pages(**{"/broken.html": broken.encode(), "/app.js": script})) as base:
        page.goto(f"{base}/broken.html")
        page.wait_for_function("() => document.readyState === 'complete'")
    assert any("broken widget" in m for m in page_errors.console)
    assert any("boom" in e for e in page_errors.exceptions)
    with pytest.raises(AssertionError, match="boom"):
        page_errors.assert_none()


def test_screenshot_writes_a_full_page_png(page: Page, artifacts: Path) -> None:
    with serve_static(pages()) as base:
        page.goto(f"{base}/clean.html")
        path = screenshot(page, "harness clean page")
    assert path.parent == artifacts
    assert path.name == "harness_clean_page.png"
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_pages_default_to_desktop_and_mobile_is_375_wide(page: Page, mobile_page: Page) -> None:
    with serve_static(pages()) as base:
        page.goto(f"{base}/clean.html")
        mobile_page.goto(f"{base}/clean.html")
        assert page.evaluate("() => [innerWidth, innerHeight]") == [1280, 900]
        assert mobile_page.evaluate("() => innerWidth") == MOBILE["width"]


@pytest.mark.parametrize("viewport", [MOBILE], indirect=True)
def test_viewport_can_be_chosen_per_test(page: Page) -> None:
    assert page.viewport_size == MOBILE


Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LifespanApp:
    """A minimal ASGI app that reports whether its lifespan startup and shutdown ran."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                self.events.append(kind)
                await send({"type": f"{message['type']}.complete"})
                if kind == "shutdown":
                    return
        body = f"started={'startup' in self.events} path={scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


def test_serve_app_runs_the_lifespan_and_stops_cleanly() -> None:
    app = LifespanApp()
    with serve_app(app) as base:
        assert base.startswith("http://127.0.0.1:")
        answer = httpx.get(f"{base}/hello", timeout=10)
        assert answer.text == "started=True path=/hello"
    assert app.events == ["startup", "shutdown"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/hello", timeout=2)


def test_serve_app_reports_a_failed_startup() -> None:
    async def refuses(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(RuntimeError, match="did not start"), serve_app(refuses):
        pass


def test_static_server_serves_routes_and_nothing_outside_them(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.js").write_text("export const a = 1;\n")
    (tmp_path / "secret.txt").write_text("no")
    with serve_static({"/s/": tmp_path / "site", "/mem.json": b"{}"}) as base:
        js = httpx.get(f"{base}/s/a.js")
        assert js.status_code == 200
        assert js.headers["content-type"].startswith("text/javascript")
        assert httpx.get(f"{base}/mem.json").headers["content-type"] == "application/json"
        assert httpx.get(f"{base}/s/../secret.txt").status_code == 404
        assert httpx.get(f"{base}/s/%2e%2e/secret.txt").status_code == 404
        assert httpx.get(f"{base}/nothing").status_code == 404
