"""Resident web pages: list page latency at the server, in-browser verification in Chromium.

    python bench/bench_pages.py [--entries 1000000] [--cache var/bench/api-1000000]
                                [--seconds 10] [--rounds 3] [--loads 30]

The same conditions as bench_api.py's resident list, whose preparation this reuses (and its
``--cache`` directory, so both scripts start from one loaded home): ``kiroku serve --workers 2``
with its housekeeping process on 127.0.0.1 (only), SQLite, a log of ``--entries`` entries, the
demo residents with the most records, 8 keep-alive connections from a small asyncio client.

Before the server starts, ``--extra`` more signed provisions are appended for each of those
residents (so that each has a full first page of 50 visible records), the views are caught up and
a checkpoint is signed. Each resident logs in through the login page's demo one-click form
(POST /login/demo, the ``kiroku_csrf`` double-submit cookie), which sets the page session cookie;
the API baseline logs in with the certificate challenge (``kiroku.client``).

1. Server: per round, ``--requests`` GETs (bounded by ``--seconds``) of each of
   - GET /v1/me/provisions?limit=50, the JSON list the page is rendered from (baseline),
   - GET /me, the resident list page (HTML, 50 records),
   - GET /me/verification, the proof bundle the page's script fetches right after it,
   rotating the residents. Latency is taken at the client over loopback, and the server's own
   time from the /metrics histogram ``kiroku_http_request_duration_seconds`` (scraped before and
   after each phase; its buckets give the share under 50 ms exactly and p50/p99 interpolated).
   Target (issue 9): list page p99 <= 50 ms.
2. Browser: ``--loads`` loads of /me in headless Chromium (Debian's, through Playwright, launched
   as tests/web/browser.py does), each in a fresh tab, waiting for ``html[data-verified]``;
   marks.js records the time spent in verifyRecords in ``data-verify-ms``. Baseline in the same
   run: the same SHA-256 digests (same inputs and sizes: leaf hashes, proof nodes, commitments,
   one chain per record, records in parallel) done in the page with bare WebCrypto.
   Target (issue 9): verification of a 50-record page <= 200 ms.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from bench_api import HOST, _buckets, _load, _pct, _prepare, _server_stats, _time

PAGE_TARGET_S = 0.050
VERIFY_TARGET_MS = 200.0
ROUTES = {
    "json": ("/v1/me/provisions?limit=50", "/v1/me/provisions"),
    "page": ("/me", "/me"),
    "verification": ("/me/verification", "/me/verification"),
}


# -- preparation ---------------------------------------------------------------------------------
def _extra_provisions(ledger: Any, keys: dict[str, Any], subjects: list[str], n: int
                      ) -> int:
    """Append ``n`` more signed provisions for each subject (demo agencies and keys)."""
    from ledger.demo import ensure_agencies, signed_provisions
    from ledger.signing import sign_statement

    agencies, _ = ensure_agencies(ledger)
    appended = 0
    for k, subject in enumerate(subjects):
        made = list(signed_provisions(ledger, agencies, keys, [subject], n, seed=1000 + k))
        statements = []
        for i, s in enumerate(made):
            # request ids derive from the tree size: make them unique whatever the cache held
            s["payload"]["request_id"] += f"-pages-{k}-{i}"
            statements.append(sign_statement(
                s["payload"], kind="provision", agency=s["statement"]["agency"],
                key=keys[s["statement"]["agency"]], time=_time(s["statement"]["time"])))
        ledger.append_batch(statements)
        appended += len(statements)
    from projections.runner import catch_up

    catch_up(ledger)
    ledger.checkpoint()
    return appended


def _start_server(home: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, KIROKU_HOME=str(home), KIROKU_DEMO="1")
    return subprocess.Popen(
        [sys.executable, "-m", "kiroku", "serve", "--host", HOST, "--port", str(port),
         "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)


def _wait_ready(url: str, timeout: float = 120.0) -> None:
    """Up, views caught up, and the latest checkpoint covers the whole log (every record on
    the page has an inclusion proof)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            health = httpx.get(url + "/healthz", timeout=5)
            if health.status_code == 200 and all(
                    v["lag"] == 0 for v in health.json().get("projections", [])):
                gauges = _gauges(httpx.get(url + "/metrics", timeout=10).text)
                if gauges.get("kiroku_checkpoint_size", -1) >= gauges.get("kiroku_tree_size", 0):
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not come up (or its views/checkpoint did not catch up)")


def _page_login(url: str, certificate: Path) -> tuple[str, str]:
    """The login page's demo one-click form: returns the ``kiroku_session`` cookie and the
    ``kiroku_csrf`` one (a browser sends both back; without the latter every page would mint a
    new CSRF token, which no browser session does)."""
    label = certificate.stem
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
        client.get("/login").raise_for_status()
        csrf = client.cookies.get("kiroku_csrf")
        if not csrf:
            raise SystemExit("GET /login set no kiroku_csrf cookie")
        done = client.post("/login/demo", data={"csrf": csrf, "who": f"resident:{label}"})
        if done.status_code != 303 or "kiroku_session" not in done.cookies:
            raise SystemExit(f"demo login as {label} failed: {done.status_code} {done.text[:200]}")
        return done.cookies["kiroku_session"], csrf


# -- server-side histogram -----------------------------------------------------------------------
def _gauges(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(("kiroku_tree_size ", "kiroku_checkpoint_size ")):
            name, value = line.split()
            out[name] = float(value)
    return out


# -- phases --------------------------------------------------------------------------------------
def _rotating(headers: list[dict[str, str]]) -> Any:
    counter = iter(range(10**9))
    lock = threading.Lock()

    def pick() -> dict[str, str]:
        with lock:
            i = next(counter)
        return headers[i % len(headers)]

    return pick


def _phase(url: str, route: str, headers: list[dict[str, str]], requests: int,
           connections: int, seconds: float) -> dict[str, Any]:
    path, template = ROUTES[route]
    before = _buckets(url, template)
    lat, errors, duration = _load(url, "GET", path, [None] * requests, connections, seconds,
                                  headers=_rotating(headers))
    server = _server_stats(before, _buckets(url, template))
    return {"n": len(lat), "errors": errors, "rate": len(lat) / duration,
            "p50": _pct(lat, 50), "p99": _pct(lat, 99), "server": server}


BASELINE_JS = """
async (records) => {
  const enc = (n) => { const b = new Uint8Array(n); crypto.getRandomValues(b); return b; };
  const inputs = records.map((r) => ({ leaf: enc(r.leaf), nodes: Array.from({ length: r.proof },
    () => enc(65)), commitment: r.commitment ? enc(r.commitment) : null }));
  const digest = (b) => crypto.subtle.digest('SHA-256', b);
  const t = performance.now();
  await Promise.all(inputs.map(async (r) => {
    await digest(r.leaf);
    for (const node of r.nodes) await digest(node);
    if (r.commitment) await digest(r.commitment);
  }));
  return performance.now() - t;
}
"""

ED25519_PROBE = """
() => crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])
  .then(() => true, () => false)
"""


def _digest_shapes(bundle: dict[str, Any]) -> list[dict[str, int]]:
    """Per record, the SHA-256 inputs verify.js hashes: 0x00||leaf, one 65-byte node per proof
    hash, and the commitment's prefix||salt||JCS(payload) (size of the compact JSON, close)."""
    import json

    shapes = []
    for r in bundle["records"]:
        if not r.get("inclusion"):
            continue
        commitment = 0
        if r.get("payload") is not None:
            jcs = json.dumps(r["payload"], sort_keys=True, separators=(",", ":"),
                             ensure_ascii=False).encode()
            commitment = len(b"kiroku/commitment/v1\n") + len(base64.b64decode(r["salt"])) + len(jcs)
        shapes.append({"leaf": 1 + len(base64.b64decode(r["leaf"])),
                       "proof": len(r["inclusion"]["proof"]), "commitment": commitment})
    return shapes


def _browser(url: str, session: str, loads: int, bundle: dict[str, Any]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from tests.web.browser import launch

    shapes = _digest_shapes(bundle)
    verify_ms: list[float] = []
    wall_ms: list[float] = []
    baseline_ms: list[float] = []
    verified: set[str] = set()
    ed25519 = False
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "kiroku_session", "value": session, "url": url}])
            errors: list[str] = []
            for i in range(loads):
                page = context.new_page()
                page.on("pageerror", lambda e: errors.append(str(e)))
                t = time.perf_counter()
                page.goto(url + "/me")
                page.wait_for_selector("html[data-verified]", state="attached", timeout=30_000)
                wall_ms.append((time.perf_counter() - t) * 1000)
                data = page.evaluate("() => ({ms: document.documentElement.dataset.verifyMs,"
                                     " ok: document.documentElement.dataset.verified})")
                verify_ms.append(float(data["ms"]))
                verified.add(data["ok"])
                if i == 0 and page.locator(".record[data-id]").count() < 50:
                    raise SystemExit("the page shows fewer than 50 records")
                # Baseline, same tab, after the page's own work: bare WebCrypto digests.
                baseline_ms.append(float(page.evaluate(BASELINE_JS, shapes)))
                if i == 0:
                    # verify.js checks the checkpoint with WebCrypto Ed25519 when the browser
                    # has it, else with the vendored library: say which one was timed.
                    ed25519 = page.evaluate(ED25519_PROBE)
                page.close()
            if errors:
                raise SystemExit("the page raised: " + "; ".join(errors[:3]))
        finally:
            browser.close()
    return {"verify": verify_ms, "wall": wall_ms, "baseline": baseline_ms,
            "verified": sorted(verified), "digests": sum(1 + s["proof"] + (1 if s["commitment"]
                                                                           else 0)
                                                         for s in shapes),
            "records": len(shapes), "ed25519": ed25519}


# -- report --------------------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="log size")
    parser.add_argument("--cache", type=Path,
                        help="keep the loaded KIROKU_HOME here (shared with bench_api.py); "
                             "later runs copy it")
    parser.add_argument("--extra", type=int, default=60,
                        help="extra provisions appended for each measured resident")
    parser.add_argument("--residents", type=int, default=5,
                        help="demo residents to rotate (the ones with the most records)")
    parser.add_argument("--seconds", type=float, default=10.0, help="bound per server phase")
    parser.add_argument("--requests", type=int, default=3000, help="requests per server phase")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="server phases repeated")
    parser.add_argument("--loads", type=int, default=30, help="browser page loads (>= 20)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="build the --cache home and stop (no measurement)")
    parser.add_argument("--port", type=int, default=8797)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.loads < 1 or args.rounds < 1:
        parser.error("--loads and --rounds must be positive")

    home = Path(tempfile.mkdtemp(prefix="kiroku-bench-pages-"))
    cached = args.cache is not None and (args.cache / "kiroku.sqlite3").exists()
    if cached:
        shutil.copytree(args.cache, home, dirs_exist_ok=True)
    server = None
    try:
        print(f"preparing {args.entries} entries in {home}"
              + (f" (from {args.cache})" if cached else ""), file=sys.stderr)
        ledger, keys, _population, creds = _prepare(home, args.entries)
        if args.cache is not None and not cached:
            ledger.close()
            shutil.copytree(home, args.cache, dirs_exist_ok=True)
            ledger, keys, _population, creds = _prepare(home, args.entries)
        if args.prepare_only:
            ledger.close()
            return 0
        residents = creds.residents[:args.residents]
        if not residents:
            raise SystemExit("no demo resident with records")
        t = time.perf_counter()
        extra = _extra_provisions(ledger, keys, [r.subject for r in residents], args.extra)
        size = ledger.tree_size()
        print(f"  appended {extra} extra provisions for {len(residents)} residents, views and "
              f"checkpoint caught up in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        ledger.close()

        server = _start_server(home, args.port, args.workers)
        url = f"http://{HOST}:{args.port}"
        _wait_ready(url)

        from kiroku.client import ResidentClient

        cookies, bearers, counts, sessions = [], [], [], []
        for resident in residents:
            session, csrf = _page_login(url, resident.certificate)
            sessions.append(session)
            cookies.append({"Cookie": f"kiroku_session={session}; kiroku_csrf={csrf}"})
            client = ResidentClient(url)
            client.login_files(resident.certificate, resident.key)
            bearers.append({"Authorization": f"Bearer {client.token}"})
            page = httpx.get(url + "/me", headers=cookies[-1], timeout=30)
            page.raise_for_status()
            cards = len(re.findall(r'<article class="record" data-id=', page.text))
            items = httpx.get(url + ROUTES["json"][0], headers=bearers[-1], timeout=30).json()
            counts.append((cards, len(items["items"])))
        print(f"log of {size} entries; {len(residents)} residents, records on the first page "
              f"(HTML, JSON): {counts}")
        if min(c for c, _ in counts) < 50:
            print("  warning: a page has fewer than 50 records (raise --extra)")

        # Warm-up: each worker has opened its database connections and compiled its templates.
        for route, headers in (("json", bearers), ("page", cookies), ("verification", cookies)):
            _load(url, "GET", ROUTES[route][0], [None] * 100, args.connections, args.seconds,
                  headers=_rotating(headers))

        load_before = os.getloadavg()
        results: dict[str, list[dict[str, Any]]] = {r: [] for r in ROUTES}
        for n in range(args.rounds):
            for route, headers in (("json", bearers), ("page", cookies),
                                   ("verification", cookies)):
                r = _phase(url, route, headers, args.requests, args.connections, args.seconds)
                results[route].append(r)
                s = r["server"]
                print(f"round {n + 1} {ROUTES[route][0]}: {r['n']} requests, "
                      f"{r['rate']:.0f}/s, client p50 {_ms(r['p50'])} p99 {_ms(r['p99'])}; "
                      f"server p50 {_ms(s['p50'])} p99 {_ms(s['p99'])} "
                      f"({s['under_50ms']:.2%} under 50 ms, {s['count']:.0f} counted); "
                      f"errors {r['errors']}", flush=True)

        with httpx.Client(base_url=url, headers=cookies[0], timeout=30) as client:
            bundle = client.get("/me/verification").json()
        b = _browser(url, sessions[0], args.loads, bundle)
        load_after = os.getloadavg()

        # -- table ---------------------------------------------------------------------------
        def row(name: str, route: str, target: bool) -> str:
            rs = results[route]
            p50 = _median([r["p50"] for r in rs])
            p99 = _median([r["p99"] for r in rs])
            sp50 = _median([r["server"]["p50"] for r in rs])
            sp99 = _median([r["server"]["p99"] for r in rs])
            under = min(r["server"]["under_50ms"] for r in rs)
            runs = " / ".join(f"{r['p99'] * 1000:.1f}" for r in rs)
            ratio = f"{p99 / PAGE_TARGET_S:.2f}" if target else ""
            return (f"| {name} | {_median([r['rate'] for r in rs]):.0f}/s | {_ms(p50)} | "
                    f"{_ms(p99)} ({runs}) | {_ms(sp50)} | {_ms(sp99)} | {under:.2%} | "
                    f"{'p99 <= 50 ms' if target else 'baseline'} | {ratio} |")

        print()
        print(f"Server: log of {size} entries, {args.workers} workers, {args.connections} "
              f"connections, {len(residents)} residents rotated, medians of {args.rounds} rounds "
              f"(client p99 per round in brackets); server-side from /metrics buckets "
              f"(p50/p99 interpolated; 'under 50 ms' is exact, worst round).")
        print("| request | rate | client p50 | client p99 | server p50 | server p99 | "
              "server <= 50 ms | target | ratio |")
        print("|---|---|---|---|---|---|---|---|---|")
        print(row("GET /v1/me/provisions?limit=50 (JSON)", "json", False))
        print(row("GET /me (list page, HTML)", "page", True))
        print(row("GET /me/verification (proof bundle)", "verification", False))
        page_rounds = results["page"]
        server_p99 = _median([r["server"]["p99"] for r in page_rounds])
        client_p99 = _median([r["p99"] for r in page_rounds])
        met = server_p99 <= PAGE_TARGET_S
        print(f"\nTarget (issue 9) GET /me p99 <= {_ms(PAGE_TARGET_S)} server-side: "
              f"{'MET' if met else 'NOT MET'} (server p99 {_ms(server_p99)}, client p99 "
              f"{_ms(client_p99)}, medians of {args.rounds} rounds; JSON baseline server p99 "
              f"{_ms(_median([r['server']['p99'] for r in results['json']]))}; load average "
              f"before {load_before[0]:.2f})")
        print()
        v, w, base = b["verify"], b["wall"], b["baseline"]
        print(f"Browser: {len(v)} loads of /me in headless Chromium, {b['records']} records, "
              f"verified {', '.join(b['verified'])}; {b['digests']} SHA-256 digests a page; "
              f"Ed25519 {'WebCrypto' if b['ed25519'] else 'vendored library'}.")
        print("| | median | p95 | first load | target | ratio |")
        print("|---|---|---|---|---|---|")
        print(f"| verifyRecords (data-verify-ms) | {_median(v):.1f} ms | {_pct(v, 95):.1f} ms | "
              f"{v[0]:.1f} ms | <= {VERIFY_TARGET_MS:.0f} ms | {_median(v) / VERIFY_TARGET_MS:.2f} "
              f"(p95 {_pct(v, 95) / VERIFY_TARGET_MS:.2f}) |")
        print(f"| baseline: the same digests, bare WebCrypto | {_median(base):.1f} ms | "
              f"{_pct(base, 95):.1f} ms | {base[0]:.1f} ms | | verify / baseline "
              f"{_median(v) / _median(base):.1f} |")
        print(f"| navigation to verified mark (wall, Playwright) | {_median(w):.0f} ms | "
              f"{_pct(w, 95):.0f} ms | {w[0]:.0f} ms | | |")
        print()
        print(f"load average (1/5/15 min) before the server phases {load_before[0]:.2f} / "
              f"{load_before[1]:.2f} / {load_before[2]:.2f}, after the browser phase "
              f"{load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f}")
        return 0
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
