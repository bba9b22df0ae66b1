"""The application form and its thread in a real browser (Chromium): from a notice, resident A
fills the address-change form, consents to one partner, signs with their card's key inside the
browser (RSA, as JPKI) and lands on the thread; once the agency takes it, asks another agency
for the data and decides, the thread shows notice → application → provision → decision. A key
that is not the card's is refused with nothing appended. axe-core finds nothing serious."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger import applications as la
from ledger.encoding import format_time
from ledger.keys import SigningKey
from ledger.notices import KIND as NOTICE_KIND
from ledger.notices import append_notice
from ledger.signing import sign_statement
from tests.dbutil import sqlite_database
from tests.ledger.fixtures import REGISTERED
from tests.web.browser import axe_scan, describe, screenshot, serious
from tests.web.server import serve_app
from tests.web.site import SUBJECTS, Site, build_site

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with sqlite_database() as url, build_site(url) as built:
        ledger = built.ledger
        for code, ja, en in (("TOKYOGAS", "東京ガス", "Tokyo Gas"),
                             ("MIZUHO", "みずほ銀行", "Mizuho Bank")):
            ledger.register_agency(code, name_ja=ja, name_en=en, kind=la.PARTNER_KIND,
                                   roles=[], registered_at=REGISTERED)
            key = SigningKey.generate()
            ledger.add_agency_key(code, key.public_bytes, valid_from=REGISTERED)
            built.world.keys[code] = key
        yield built


@pytest.fixture(scope="module")
def base(site: Site) -> Iterator[str]:
    with serve_app(site.app) as url:
        yield url


def _notice(site: Site) -> str:
    world, y = site.world, site.world.requester
    now = datetime.now(UTC).replace(microsecond=0)
    receipt = append_notice(site.ledger, sign_statement({
        "notice_id": f"address-{now.timestamp()}", "category": "other",
        "title": {"ja": "住所変更の届出のお願い", "en": "Please report your new address"},
        "body": {"ja": "転居された方は届け出てください。"},
        "valid_from": format_time(now - timedelta(days=1)),
        "valid_until": format_time(now + timedelta(days=30)),
        "target": {"type": "individual", "code": world.code(y, SUBJECTS["A"])},
        "form": {"id": "address-change"}}, kind=NOTICE_KIND, agency=y, key=world.keys[y]))
    return str(receipt.id)


def _login(page: Any, base: str, site: Site) -> None:
    cert, key = site.credentials["A"]
    page.goto(f"{base}/login")
    page.set_input_files("#cert-file", str(cert))
    page.set_input_files("#key-file", str(key))
    page.click("#resident-login button[type=submit]")
    page.wait_for_url(f"{base}/me")


def _fill(page: Any, base: str, site: Site, notice: str, key: Any) -> None:
    page.goto(f"{base}/me/applications/new?notice={notice}")
    page.fill("#answer-new_address", "東京都世田谷区北沢1-2-3")
    page.fill("#answer-moved_on", "2026-06-01")
    page.check("#consent-TOKYOGAS")
    page.fill("#customer-TOKYOGAS", "1234-5678")
    page.fill("#customer-MIZUHO", "999")  # a number without the tick is not sent
    page.set_input_files("#cert-file", str(site.credentials["A"][0]))
    page.set_input_files("#key-file", str(key))


def test_apply_sign_in_the_browser_and_follow_the_thread(site: Site, base: str, page: Any,
                                                         page_errors: Any) -> None:
    _login(page, base, site)
    notice = _notice(site)
    # A key that is not the card's: refused in words, nothing appended.
    size = site.ledger.tree_size()
    _fill(page, base, site, notice, site.credentials["B"][1])
    page.click("#apply-form button[type=submit]")
    error = page.locator("#apply-error")
    error.wait_for(state="visible")
    assert "申請できませんでした" in error.inner_text()
    assert site.ledger.tree_size() == size
    # The browser logs the refused POST (401), and nothing else.
    assert page_errors.all and all("401" in m for m in page_errors.all), page_errors.all
    page_errors.console.clear()
    found = serious(axe_scan(page))
    assert not found, describe(found)
    screenshot(page, "application-form")
    # The card's own key: the application is made and the thread opens.
    _fill(page, base, site, notice, site.credentials["A"][1])
    page.click("#apply-form button[type=submit]")
    page.wait_for_url(re.compile(r"/me/applications/[0-9a-f-]{36}$"))
    app_id = page.url.rsplit("/", 1)[1]
    assert page.locator("#thread-status").get_attribute("data-status") == "submitted"
    assert "住所変更の届出のお願い" in page.locator("[data-step=notice]").inner_text()
    forwards = page.locator("[data-forward]")
    assert [f.get_attribute("data-forward") for f in forwards.all()] == ["TOKYOGAS"]
    # The agency takes it, asks the city for the data (a provision naming it), decides.
    world, y = site.world, site.world.requester

    def step(kind: str, agency: str = y, **extra: Any) -> None:
        la.append_step(site.ledger, sign_statement({"application": app_id, **extra}, kind=kind,
                                                   agency=agency, key=world.keys[agency]))

    step(la.RECEIVED)
    caused = site.ledger.append(world.statement(agency=y, subject=SUBJECTS["A"],
                                                application=app_id))
    step(la.DECIDED, outcome="approved", reason=None)
    step(la.FORWARDED, agency="TOKYOGAS")
    site.settle()
    page.reload()
    assert page.locator("#thread-status").get_attribute("data-status") == "approved"
    assert page.locator(f"[data-provision='{caused.id}']").count() == 1
    assert page.locator("#decision").get_attribute("data-outcome") == "approved"
    assert page.locator("[data-forward=TOKYOGAS]").get_attribute("data-received") == "yes"
    found = serious(axe_scan(page))
    assert not found, describe(found)
    screenshot(page, "application-thread")
    # The provision's own page is one click away, verified like any record.
    page.click(f"[data-provision='{caused.id}'] a")
    page.wait_for_url(f"{base}/me/records/{caused.id}")
    page.goto(f"{base}/me/applications")
    assert page.locator(f"[data-application='{app_id}']").count() == 1
    page_errors.assert_none()
