"""The notices page, the alert subscriptions page and the agency's delivery counts in headless
Chromium: the list (unread first), marking read, adding and removing subscriptions, the English
switch, and an axe-core scan of each page in both languages. Screenshots in test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.encoding import format_time
from ledger.notices import KIND, append_notice, set_attributes
from ledger.signing import sign_statement
from tests.dbutil import sqlite_database
from tests.web.browser import axe_scan, describe, screenshot, serious
from tests.web.server import serve_app
from tests.web.site import SUBJECTS, Site, build_site

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CITY = "131121"


def _issue(site: Site, notice_id: str, target: dict[str, Any], **extra: Any) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    payload = {"notice_id": notice_id, "category": "childcare",
               "title": {"ja": f"保育所入所のご案内 {notice_id}", "en": f"Nursery places {notice_id}"},
               "body": {"ja": "申請を受け付けています。"},
               "valid_from": format_time(now - timedelta(days=1)),
               "valid_until": format_time(now + timedelta(days=30)), "target": target, **extra}
    statement = sign_statement(payload, kind=KIND, agency=CITY, key=site.world.keys[CITY])
    return str(append_notice(site.ledger, statement).id)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with sqlite_database() as url, build_site(url) as built:
        code = built.world.code(CITY, SUBJECTS["A"])
        set_attributes(built.ledger, CITY, code, {"district": "131121-03"})
        _issue(built, "individual", {"type": "individual", "code": code},
               form={"id": "hoiku", "url": "https://example.city.lg.jp/hoiku"})
        _issue(built, "district", {"type": "group", "criteria": {"district": "131121-03"}})
        built.settle()
        yield built


@pytest.fixture(scope="module")
def base(site: Site) -> Iterator[str]:
    with serve_app(site.app) as url:
        yield url


def _login(page: Any, base: str, who: str, lang: str | None = None) -> None:
    page.goto(f"{base}/lang/{lang}?next=/login" if lang else f"{base}/login")
    page.click(f"button[data-demo='{who}']")
    page.wait_for_load_state()


def _titles(page: Any) -> list[tuple[str, str]]:
    return [(a.locator("h2").inner_text(), str(a.get_attribute("data-read")))
            for a in page.locator("#notices article").all()]


def test_notices_unread_first_mark_read_and_english(site: Site, base: str, page: Any,
                                                    page_errors: Any) -> None:
    _login(page, base, "resident:resident-aaaaaaaaaa")
    page.click("nav a[href='/me/notices']")
    page.wait_for_url(f"{base}/me/notices")
    assert _titles(page) == [("保育所入所のご案内 district", "no"),
                             ("保育所入所のご案内 individual", "no")]
    form = page.locator("#notices article").nth(1).locator("[data-form] a")
    assert form.get_attribute("href") == "https://example.city.lg.jp/hoiku"
    assert "保育・子育て" in page.locator("#notices").inner_text()
    screenshot(page, "notices-list")
    page.locator("#notices article").first.locator("[data-mark-read] button").click()
    page.wait_for_selector(".notice[role=status]")
    # The read one goes after the unread one.
    assert _titles(page) == [("保育所入所のご案内 individual", "no"),
                             ("保育所入所のご案内 district", "yes")]
    assert "既読" in page.locator("#notices article").nth(1).locator("[data-read-state]"
                                                                     ).inner_text()
    page.click("#lang-switch")
    page.wait_for_selector("html[lang=en]")
    assert _titles(page)[0] == ("Nursery places individual", "no")
    assert "Read (" in page.locator("#notices article").nth(1).inner_text()
    screenshot(page, "notices-list-en")
    page_errors.assert_none()


def test_empty_notices(site: Site, base: str, page: Any) -> None:
    _login(page, base, "resident:resident-bbbbbbbbbb")
    page.goto(f"{base}/me/notices")
    assert page.locator("#empty-state").is_visible()


def test_subscriptions_add_confirm_state_and_remove(site: Site, base: str, page: Any,
                                                    page_errors: Any) -> None:
    _login(page, base, "resident:resident-dddddddddd")
    page.click("nav a[href='/me/subscriptions']")
    page.wait_for_url(f"{base}/me/subscriptions")
    assert page.locator("#empty-state").is_visible()
    page.select_option("#sub-channel", "webhook")
    page.fill("#sub-target", "https://hooks.example.jp/kiroku")
    page.click("#add-subscription button[type=submit]")
    secret = page.locator("#secret-value").inner_text()
    assert len(secret) >= 32
    page.select_option("#sub-channel", "email")
    page.fill("#sub-target", "hanako@example.jp")
    page.click("#add-subscription button[type=submit]")
    page.wait_for_selector("#sub-done")
    rows = page.locator("#subscriptions tbody tr")
    assert rows.count() == 2
    assert secret not in page.content()  # shown once, never again
    states = {r.get_attribute("data-channel"): r.get_attribute("data-status") for r in rows.all()}
    assert states == {"webhook": "active", "email": "pending_confirmation"}
    assert page.locator("tr[data-channel=email] [data-confirm]").count() == 1
    screenshot(page, "subscriptions")
    page.locator("tr[data-channel=webhook] [data-remove] button").click()
    page.wait_for_selector("#sub-done")
    assert [r.get_attribute("data-channel") for r in rows.all()] == ["email"]
    page_errors.assert_none()
    # A refused address: said on the page (a 422 answer), nothing added.
    page.fill("#sub-target", "http://plain.example/x")
    page.select_option("#sub-channel", "webhook")
    page.click("#add-subscription button[type=submit]")
    assert page.locator("#sub-error").is_visible() and rows.count() == 1


def test_agency_delivery_counts(site: Site, base: str, page: Any) -> None:
    _login(page, base, f"agency:{CITY}")
    page.goto(f"{base}/agency")
    counts = {r.get_attribute("data-notice"): (r.locator("[data-applies]").inner_text(),
                                              r.locator("[data-read]").inner_text())
              for r in page.locator("#delivery tbody tr").all()}
    assert counts["individual"][0] == "1" and counts["district"][0] == "1"
    assert SUBJECTS["A"] not in page.content()
    screenshot(page, "agency-delivery")


def test_notices_at_375_px(site: Site, base: str, mobile_page: Any) -> None:
    _login(mobile_page, base, "resident:resident-aaaaaaaaaa")
    for path in ("/me/notices", "/me/subscriptions"):
        mobile_page.goto(base + path)
        width = mobile_page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375, f"{path} scrolls sideways on a 375-px screen ({width} px)"
    screenshot(mobile_page, "subscriptions-375px")


@pytest.mark.parametrize("who,path", [
    ("resident:resident-aaaaaaaaaa", "/me/notices"), ("resident:resident-bbbbbbbbbb",
                                                      "/me/notices"),
    ("resident:resident-aaaaaaaaaa", "/me/subscriptions"), (f"agency:{CITY}", "/agency"),
])
@pytest.mark.parametrize("lang", ["ja", "en"])
def test_accessibility(site: Site, base: str, page: Any, who: str, path: str,
                       lang: str) -> None:
    _login(page, base, who, lang)
    page.goto(base + path)
    page.wait_for_load_state("networkidle")
    found = serious(axe_scan(page))
    assert not found, describe(found)
