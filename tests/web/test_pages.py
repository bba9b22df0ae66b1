"""The pages in a real browser (Debian's headless Chromium driven by Playwright): log-in, the
resident's list with its filters and pages, the detail page, the verified mark computed in the
browser (and refused when a proof is tampered with in flight), the English switch, the auditor
console's charts against the report, the agency page, and an axe-core scan of each page.

Screenshots of each page land in test-artifacts/.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from tests.dbutil import sqlite_database
from tests.web.browser import axe_scan, describe, screenshot, serious
from tests.web.server import serve_app
from tests.web.site import A_MARCH, A_MOJ, A_RECORDS, MHLW, Site, build_site

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with sqlite_database() as url, build_site(url) as built:
        yield built


@pytest.fixture(scope="module")
def base(site: Site) -> Iterator[str]:
    with serve_app(site.app) as url:
        yield url


def _verified(page: Any) -> str:
    page.wait_for_selector("html[data-verified]", state="attached", timeout=15_000)
    return str(page.locator("html").get_attribute("data-verified"))


def _demo_login(page: Any, base: str, who: str, lang: str | None = None) -> None:
    page.goto(f"{base}/lang/{lang}?next=/login" if lang else f"{base}/login")
    page.click(f"button[data-demo='{who}']")


def _resident(page: Any, base: str, who: str = "A") -> None:
    label = f"resident:resident-{who.lower() * 10}"
    _demo_login(page, base, label)
    page.wait_for_url(f"{base}/me")


def _marks(page: Any) -> dict[str, str]:
    return {el.get_attribute("data-id"): el.locator("[data-mark]").get_attribute("data-state")
            for el in page.locator(".record[data-id]").all()}


def test_demo_login_list_and_marks(site: Site, base: str, page: Any, page_errors: Any) -> None:
    _resident(page, base)
    assert page.locator("html").get_attribute("lang") == "ja"
    assert _verified(page) == "50/50"
    cards = page.locator(".record[data-id]")
    assert cards.count() == 50
    assert f"{A_RECORDS} 件" in page.locator("#record-count").inner_text()
    marks = page.locator(".record [data-mark]")
    assert all(m == "ok" for m in _marks(page).values())
    assert "検証済み" in marks.first.inner_text()  # in words, not only colour
    # Newest first, agency names (not codes), the affair with its legal-basis row.
    first = cards.first
    assert "世田谷区" in first.inner_text() and "131121" not in first.inner_text()
    assert "主務省令第2条の表" in first.inner_text()
    times = [t.get_attribute("datetime") for t in page.locator(".record time").all()]
    assert times == sorted(times, reverse=True)
    screenshot(page, "resident-list")
    page_errors.assert_none()


def test_file_login_rsa_and_ecdsa(site: Site, base: str, browser: Any) -> None:
    for who in ("A", "C"):  # JPKI-like RSA, and ECDSA P-256 (WebCrypto's r‖s turned into DER)
        context = browser.new_context()
        page = context.new_page()
        cert, key = site.credentials[who]
        page.goto(f"{base}/login")
        page.set_input_files("#cert-file", str(cert))
        page.set_input_files("#key-file", str(key))
        page.click("#resident-login button[type=submit]")
        page.wait_for_url(f"{base}/me")
        assert _verified(page) == ("50/50" if who == "A" else "1/1")
        context.close()


def test_file_login_with_wrong_key_is_refused(site: Site, base: str, page: Any) -> None:
    cert, _ = site.credentials["A"]
    _, other_key = site.credentials["B"]
    page.goto(f"{base}/login")
    page.set_input_files("#cert-file", str(cert))
    page.set_input_files("#key-file", str(other_key))
    page.click("#resident-login button[type=submit]")
    error = page.locator("#login-error")
    error.wait_for(state="visible")
    assert "ログインできませんでした" in error.inner_text()
    assert page.url.startswith(f"{base}/login")


def test_each_filter(site: Site, base: str, page: Any) -> None:
    _resident(page, base)
    page.select_option("#f-agency", "MOJ")
    page.click(".filters button[type=submit]")
    assert _verified(page) == f"{A_MOJ}/{A_MOJ}"
    assert f"{A_MOJ} 件" in page.locator("#record-count").inner_text()
    assert all("法務省" in c.inner_text() for c in page.locator(".record[data-id]").all())

    page.goto(f"{base}/me")
    affair = page.locator("#f-affair option").nth(1)
    page.select_option("#f-affair", affair.get_attribute("value"))
    page.click(".filters button[type=submit]")
    _verified(page)
    shown = page.locator(".record[data-id]").count()
    assert 0 < shown < 50

    page.goto(f"{base}/me")
    page.fill("#f-since", "2026-03-01")
    page.fill("#f-until", "2026-03-31")
    page.click(".filters button[type=submit]")
    assert _verified(page) == f"{A_MARCH}/{A_MARCH}"
    assert all(t.get_attribute("datetime").startswith("2026-03")
               for t in page.locator(".record time").all())

    page.click("text=解除")  # clear
    assert f"{A_RECORDS} 件" in page.locator("#record-count").inner_text()

    page.goto(f"{base}/me?since=2099-01-01")
    assert "条件に合う記録はありません" in page.locator("#empty-state").inner_text()


def test_paging(site: Site, base: str, page: Any) -> None:
    _resident(page, base)
    first_page = set(_marks(page))
    page.click("#next-page")
    assert _verified(page) == f"{A_RECORDS - 50}/{A_RECORDS - 50}"
    second_page = set(_marks(page))
    assert len(second_page) == A_RECORDS - 50 and not first_page & second_page
    assert page.locator("#next-page").count() == 0
    page.click("a[rel=first]")
    assert set(_marks(page)) == first_page


def test_empty_state(site: Site, base: str, page: Any, page_errors: Any) -> None:
    # D has no record yet: the page says what will appear there, and the count is zero.
    _resident(page, base, "D")
    assert page.locator(".record").count() == 0
    assert "0 件" in page.locator("#record-count").inner_text()
    assert "記録がここに表示されます" in page.locator("#empty-state").inner_text()
    page_errors.assert_none()


def test_detail_with_verified_mark(site: Site, base: str, page: Any) -> None:
    _resident(page, base)
    page.locator(".record .more a").first.click()
    assert _verified(page) == "1/1"
    text = page.locator("article.record").inner_text()
    for label in ("照会者", "提供者", "照会日時", "提供日時", "提供された情報", "事務（利用目的）",
                  "根拠", "結果", "記録 ID", "ログ番号"):
        assert label in text, label
    checkpoint = site.ledger.latest_checkpoint()
    assert page.locator("[data-cp=size]").inner_text() == str(checkpoint.size)
    assert page.locator("[data-cp=root]").inner_text() == base64.b64encode(
        site.ledger.get_root(checkpoint.size)).decode()
    screenshot(page, "resident-detail")


def _tamper(route: Any) -> None:
    response = route.fetch()
    bundle = response.json()
    records = bundle["records"]
    proof = records[1]["inclusion"]["proof"]
    raw = bytearray(base64.b64decode(proof[0]))
    raw[0] ^= 1
    proof[0] = base64.b64encode(bytes(raw)).decode()          # a proof hash flipped
    records[2]["payload"]["items"] = ["something else"]       # a payload changed
    route.fulfill(response=response, body=json.dumps(bundle))


def test_tampered_proof_in_flight_shows_not_verified(site: Site, base: str, page: Any) -> None:
    _resident(page, base)
    page.route("**/me/verification*", _tamper)
    page.reload()
    assert _verified(page) == "48/50"
    cards = page.locator(".record[data-id]")
    ids = [c.get_attribute("data-id") for c in cards.all()]
    marks = _marks(page)
    assert marks[ids[1]] == "bad" and marks[ids[2]] == "bad"
    assert [i for i, state in marks.items() if state != "ok"] == [ids[1], ids[2]]
    bad = cards.nth(1).locator("[data-mark]").inner_text()
    assert "検証できません" in bad and "包含証明" in bad  # said in words, with the reason
    assert "検証できません" in cards.nth(2).locator("[data-mark]").inner_text()
    screenshot(page, "resident-list-tampered")


def test_changed_operator_key_is_not_trusted_silently(site: Site, base: str, browser: Any
                                                      ) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base}/login")
    # This browser pinned another operator key before (as if the log's key had been swapped).
    other = "test.kiroku/log+00000000+AQ" + "A" * 42 + "="
    page.evaluate("(key) => localStorage.setItem('kiroku.operator-vkey', key)", other)
    _resident(page, base)
    assert _verified(page) == "0/50"
    assert page.locator("#key-changed").is_visible()
    page.click("#trust-new-key")
    assert _verified(page) == "50/50"
    context.close()


def test_english_switch_is_kept_across_pages(site: Site, base: str, page: Any) -> None:
    _resident(page, base)
    page.click("#lang-switch")
    page.wait_for_url(f"{base}/me")
    assert page.locator("html").get_attribute("lang") == "en"
    assert _verified(page) == "50/50"
    assert "Verified" in page.locator(".record [data-mark]").first.inner_text()
    assert "Setagaya City" in page.locator(".record").first.inner_text()
    page.locator(".record .more a").first.click()
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Record details" in page.locator("h1").inner_text()
    page.click("#lang-switch")
    assert page.locator("html").get_attribute("lang") == "ja"


def test_mobile_width(site: Site, base: str, mobile_page: Any) -> None:
    _resident(mobile_page, base)
    assert _verified(mobile_page) == "50/50"
    width = mobile_page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways on a 375-px screen ({width} px)"
    screenshot(mobile_page, "resident-list-375px")


def test_a_proxy_reads_the_principals_verified_records(site: Site, base: str, browser: Any
                                                       ) -> None:
    principal = browser.new_context()
    a = principal.new_page()
    _resident(a, base)
    a.click("nav a[href='/me/proxies']")
    cert, key = site.credentials["P"]
    a.set_input_files("#proxy-cert", str(cert))
    a.select_option("#proxy-rel", "legal_representative")
    a.click("#register-proxy button[type=submit]")
    assert "代理人を登録しました" in a.locator(".notice").inner_text()
    assert a.locator("#proxies tbody tr").count() == 1

    proxy = browser.new_context()
    p = proxy.new_page()
    p.goto(f"{base}/login")
    p.set_input_files("#cert-file", str(cert))
    p.set_input_files("#key-file", str(key))
    p.click("#resident-login button[type=submit]")
    p.wait_for_url(f"{base}/proxy")
    p.click("#principals a")
    assert _verified(p) == "50/50"
    assert "法定代理人として閲覧しています" in p.locator("#acting-for").inner_text()
    assert f"{A_RECORDS} 件" in p.locator("#record-count").inner_text()
    screenshot(p, "proxy-principal-records")
    url = p.url

    a.click("#proxies button[type=submit]")
    assert "取り消しました" in a.locator(".notice").inner_text()
    assert p.goto(url).status == 404
    p.goto(f"{base}/proxy")
    assert p.locator("#no-principals").count() == 1
    principal.close()
    proxy.close()


def _report(site: Site, code: str) -> dict[str, Any]:
    return site.services.projections.reports.get(code)


def test_auditor_console_and_charts(site: Site, base: str, page: Any, page_errors: Any) -> None:
    for _ in range(2):  # more checkpoints, so consistency between successive ones is shown
        site.ledger.append(site.world.statement(subject="subj-ZZZZZZZZZZZZZZZZZZZZ"))
        site.settle()
    _demo_login(page, base, "auditor")
    page.wait_for_url(f"{base}/audit")
    page.wait_for_selector("html[data-checkpoints-verified]", state="attached")
    rows = page.locator("#checkpoints tbody tr")
    assert rows.count() >= 3
    states = [s.get_attribute("data-state")
              for s in page.locator("#checkpoints [data-check=signature]").all()]
    assert states == ["ok"] * rows.count()
    consistency = [s.get_attribute("data-state")
                   for s in page.locator("#checkpoints [data-check=consistency]").all()]
    assert consistency[:-1] == ["ok"] * (rows.count() - 1)  # the oldest has nothing before it
    assert page.locator("[data-lag=resident]").inner_text() == "0 件"
    # Live: the health line is polled, and the size follows the log without a reload.
    page.wait_for_selector("html[data-health-polled]", state="attached")
    assert page.locator("#health-status").get_attribute("data-state") == "ok"
    site.ledger.append(site.world.statement(subject="subj-ZZZZZZZZZZZZZZZZZZZZ"))
    grown = str(site.ledger.tree_size())
    page.wait_for_function("(n) => document.getElementById('tree-size').textContent === n",
                           arg=grown, timeout=15_000)
    screenshot(page, "auditor-console")

    page.click("#agency-list a[href='/audit/agencies/131121']")
    report = _report(site, "131121")
    segments = page.locator("#chart-affair svg rect[data-n]")
    assert segments.count() > 0
    drawn: dict[tuple[str, str], int] = defaultdict(int)
    for seg in segments.all():
        drawn[(seg.get_attribute("data-month"), seg.get_attribute("data-affair"))] += int(
            seg.get_attribute("data-n"))
    expected: dict[tuple[str, str], int] = defaultdict(int)
    for row in report["counts"]:
        expected[(row["month"], row["affair"])] += row["n"]
    assert dict(drawn) == dict(expected)
    assert sum(int(s.get_attribute("data-n")) for s in
               page.locator("#chart-outcome svg rect[data-n]").all()) == sum(expected.values())
    assert page.locator("[data-total=as_provider]").inner_text() == str(
        report["totals"]["as_provider"])
    with page.expect_download() as download:
        page.click("a[data-csv=counts]")
    text = download.value.path().read_text(encoding="utf-8-sig")
    assert text.splitlines()[0] == "role,month,affair,outcome,reason,n,non_disclosed"
    assert sum(int(line.split(",")[5]) for line in text.splitlines()[1:]) == sum(
        expected.values())
    screenshot(page, "auditor-report")

    page.goto(f"{base}/audit")
    page.fill("#entry-index", "10")
    page.click("#entry-h + form button")
    page.wait_for_url(f"{base}/audit/entries/10")
    assert _verified(page) == "1/1"
    assert page.locator("#statement-signature [data-state=ok]").count() == 1
    screenshot(page, "auditor-entry")
    page_errors.assert_none()


def test_agency_page(site: Site, base: str, page: Any, page_errors: Any) -> None:
    _demo_login(page, base, "agency:MOJ")
    page.wait_for_url(f"{base}/agency")
    report = _report(site, "MOJ")
    assert page.locator("[data-total=as_provider]").inner_text() == str(
        report["totals"]["as_provider"])
    assert _verified(page) == f"{A_MOJ}/{A_MOJ}"   # MOJ signed A's eight 1-1 provisions
    link = page.locator("a[data-receipt]").first
    index = int(link.get_attribute("data-receipt"))
    receipt = page.request.get(f"{base}/agency/receipts/{index}").json()
    assert receipt["index"] == index and receipt["inclusion"]["leaf_index"] == index
    # Another agency's entry answers 404, like a missing one.
    kyokai_index = 5
    assert page.request.get(f"{base}/agency/receipts/{kyokai_index}").status == 404
    screenshot(page, "agency-page")
    page_errors.assert_none()


@pytest.mark.parametrize("who,path", [
    (None, "/login"), ("resident:resident-aaaaaaaaaa", "/me"),
    ("resident:resident-aaaaaaaaaa", "detail"), ("resident:resident-dddddddddd", "/me"),
    ("auditor", "/audit"), ("auditor", "/audit/agencies/131121"), ("auditor", "/audit/entries/3"),
    (f"agency:{MHLW}", "/agency"), ("resident:resident-bbbbbbbbbb", "/me/proxies"),
])
@pytest.mark.parametrize("lang", ["ja", "en"])
def test_accessibility(site: Site, base: str, page: Any, who: str | None, path: str,
                       lang: str) -> None:
    if who is not None:
        _demo_login(page, base, who, lang)
        page.wait_for_load_state()
    else:
        page.goto(f"{base}/lang/{lang}?next=/login")
    if path == "detail":
        page.goto(f"{base}/me")
        page.locator(".record .more a").first.click()
    else:
        page.goto(base + path)
    page.wait_for_load_state("networkidle")
    found = serious(axe_scan(page))
    assert not found, describe(found)
    # Keyboard: the first Tab stop is the skip link, and it leads to the main content.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip"
