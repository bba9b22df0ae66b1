"""Notices and alerts: a group notice reaching 100,000 residents, alert latency from append to the
SMTP server, and the resident notice list at a 1M-entry log.

    python bench/bench_notices.py [--part group,alerts,list] [--group-residents 100000]
                                  [--rate 500] [--seconds 10] [--rounds 3]
                                  [--cache var/bench/api-1000000]

1. group: a fresh SQLite ledger with the demo agencies and ``--group-residents`` residents whose
   attributes (district) the issuing agency holds (bulk-inserted: setup, not measured). Timed,
   ``--rounds`` times: one group notice whose criteria match all of them, from ``append_notice``
   until the notices projection has it (from then on every one of them sees it: membership is
   decided when read); the agency's delivery count (``applies_to`` over all of them); and the
   notice lists of 1,000 sampled residents (each must show the notice). Baselines in the same
   run: one individual notice (append + projection, its cost per resident) and one plain
   provision append + projection.
2. alerts: ``kiroku serve --workers 2`` with its housekeeping process (which runs the alert
   sender) and a real local SMTP server (aiosmtpd) on 127.0.0.1. ``--subscribers`` residents
   have a confirmed e-mail subscription; signed single appends (POST /v1/provisions), each about
   one of them, are sent at ``--rate`` per second for ``--seconds`` per round. Latency: from the
   append's 201 at the client to the SMTP server's DATA for the message whose Message-ID is the
   alert's delivery id. Target (issue 12): p50 <= 2 s, p99 <= 10 s at 500 appends/s. Baselines:
   the append's own latency, and one bare smtplib message to the same server.
3. list: a copy of the cached 1M-entry home (``--cache``, as bench_pages.py; never written),
   30 notices for each of 5 demo residents (10 individual, 20 group) among 1,000 group notices for
   other districts; ``kiroku serve --workers 2``, 8 connections. GET /v1/me/notices and GET
   /me/notices, baseline GET /v1/me/provisions?limit=50 in the same rounds. Target (issue 12):
   p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from bench_api import HOST, _load, _pct, _prepare, _time
from bench_pages import _page_login, _rotating, _start_server, _wait_ready

LATENCY_P50_S, LATENCY_P99_S, LIST_P99_S = 2.0, 10.0, 0.050
DISTRICT = "131121-01"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _notice(keys: dict[str, Any], agency: str, notice_id: str, target: dict[str, Any]
            ) -> dict[str, Any]:
    from ledger.encoding import format_time
    from ledger.notices import KIND
    from ledger.signing import sign_statement

    now = datetime.now(UTC).replace(microsecond=0)
    payload = {"notice_id": notice_id, "category": "disaster",
               "title": {"ja": "避難所開設のお知らせ", "en": "Shelters open"},
               "body": {"ja": "地区の避難所を開設しました。"},
               "valid_from": format_time(now - timedelta(days=1)),
               "valid_until": format_time(now + timedelta(days=7)), "target": target}
    return sign_statement(payload, kind=KIND, agency=agency, key=keys[agency])


def _city(ledger: Any) -> str:
    """A demo agency that may issue notices (a municipality)."""
    from ledger.demo import ensure_agencies

    agencies, _ = ensure_agencies(ledger)
    return next(a.code for a in agencies if a.code.isdigit())


# -- 1. a group notice to N residents -----------------------------------------------------------
def bench_group(residents: int, rounds: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="kiroku-bench-notices-"))
    try:
        ledger, keys, _population, _creds = _prepare(home, 0)
        from ledger.encoding import format_time, now_utc
        from ledger.notices import append_notice, resident_attribute
        from projections.notices import Notices
        from projections.runner import catch_up

        city = _city(ledger)
        subjects = [f"subj-bench-{i:08d}" for i in range(residents)]
        stamp = format_time(now_utc())
        t = time.perf_counter()
        with ledger.log.transaction(commit=True) as session:
            for start in range(0, residents, 10_000):
                session.execute(resident_attribute.insert(), [
                    {"agency": city, "subject": s, "birth_date": None, "municipality": None,
                     "district": DISTRICT, "household_type": None, "updated_at": stamp}
                    for s in subjects[start:start + 10_000]])
        print(f"  {residents} residents' attributes inserted in {time.perf_counter() - t:.1f} s",
              file=sys.stderr)
        code = ledger.issue_link_codes(city, [subjects[0]])[subjects[0]]
        catch_up(ledger)
        notices = Notices.for_ledger(ledger)
        import random

        sample = random.Random(1).sample(subjects, min(1000, residents))
        rows: dict[str, list[float]] = {k: [] for k in ("group", "individual", "provision",
                                                       "count", "lists")}
        for n in range(rounds):
            t = time.perf_counter()
            receipt = append_notice(ledger, _notice(keys, city, f"group-{n}", {
                "type": "group", "criteria": {"district": DISTRICT}}))
            catch_up(ledger)
            rows["group"].append(time.perf_counter() - t)
            t = time.perf_counter()
            counted = next(x for x in notices.for_agency(city)["notices"]
                           if x["id"] == str(receipt.id))["delivery"]["applies_to"]
            rows["count"].append(time.perf_counter() - t)
            if counted != residents:
                raise SystemExit(f"the group notice applies to {counted}, not {residents}")
            t = time.perf_counter()
            for s in sample:
                if not any(i["id"] == str(receipt.id) for i in notices.list(s)["items"]):
                    raise SystemExit("a sampled resident does not see the group notice")
            rows["lists"].append((time.perf_counter() - t) / len(sample))
            t = time.perf_counter()
            append_notice(ledger, _notice(keys, city, f"individual-{n}", {
                "type": "individual", "code": code}))
            catch_up(ledger)
            rows["individual"].append(time.perf_counter() - t)
            statement = _provision(ledger, keys, subjects[0], n)
            t = time.perf_counter()
            ledger.append(statement)
            catch_up(ledger)
            rows["provision"].append(time.perf_counter() - t)
        ledger.close()
        g, i, p = (_median(rows[k]) for k in ("group", "individual", "provision"))
        print()
        print(f"Group notice to {residents:,} residents (SQLite, in-process, medians of "
              f"{rounds}; runs in brackets):")
        print("| | median | per resident | baseline ratio |")
        print("|---|---|---|---|")
        runs = " / ".join(_ms(v) for v in rows["group"])
        print(f"| group notice: append → projected, visible to all {residents:,} | {_ms(g)} "
              f"({runs}) | {g / residents * 1e6:.2f} µs | {g / i:.2f} × one individual notice |")
        print(f"| baseline: one individual notice, append → projected | {_ms(i)} | {_ms(i)} | "
              f"group per resident = {g / residents / i:.6f} of it |")
        print(f"| baseline: one provision, append → projected | {_ms(p)} | | group "
              f"{g / p:.2f} × |")
        print(f"| agency delivery count over {residents:,} (applies_to) | "
              f"{_ms(_median(rows['count']))} | | |")
        print(f"| a resident's notice list (1,000 sampled, each shows it) | "
              f"{_ms(_median(rows['lists']))} per list | | |")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _provision(ledger: Any, keys: dict[str, Any], subject: str, n: int) -> dict[str, Any]:
    from ledger.demo import ensure_agencies, signed_provisions
    from ledger.signing import sign_statement

    agencies, _ = ensure_agencies(ledger)
    s = next(iter(signed_provisions(ledger, agencies, keys, [subject], 1, seed=50 + n)))
    s["payload"]["request_id"] += f"-notices-{n}-{uuid.uuid4().hex[:8]}"
    return sign_statement(s["payload"], kind="provision", agency=s["statement"]["agency"],
                          key=keys[s["statement"]["agency"]], time=_time(s["statement"]["time"]))


# -- 2. alert latency append → SMTP -------------------------------------------------------------
class _Box:
    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        arrived = time.perf_counter()
        for line in envelope.content.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                ident = line.split(b":", 1)[1].strip().decode().strip("<>").split("@")[0]
                with self.lock:
                    self.seen.setdefault(ident, arrived)
                break
            if not line:
                break
        return "250 OK"


def _paced(url: str, bodies: list[bytes], rate: float, connections: int
           ) -> tuple[list[float | None], list[float]]:
    """POST each body at its slot (start + i/rate) over keep-alive connections; per body the
    perf_counter time of its 201 (None when refused), and each append's latency."""
    host, port = url.removeprefix("http://").split(":")
    done: list[float | None] = [None] * len(bodies)
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while True:
                i = await queue.get()
                if i < 0:
                    return
                body = bodies[i]
                head = (f"POST /v1/provisions HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                        f"application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                t = time.perf_counter()
                writer.write(head + body)
                status = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                now = time.perf_counter()
                latencies.append(now - t)
                if int(status.split()[1]) == 201:
                    done[i] = now
        finally:
            writer.close()

    async def run() -> None:
        workers = [asyncio.create_task(worker()) for _ in range(connections)]
        start = time.perf_counter()
        for i in range(len(bodies)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait(i)
        for _ in workers:
            queue.put_nowait(-1)
        await asyncio.gather(*workers)

    asyncio.run(run())
    return done, latencies


def bench_alerts(subscribers: int, rate: float, seconds: float, rounds: int, port: int,
                 workers: int) -> None:
    import json

    from aiosmtpd.controller import Controller

    home = Path(tempfile.mkdtemp(prefix="kiroku-bench-alerts-"))
    box = _Box()
    smtp_port = port + 1
    controller = Controller(box, hostname=HOST, port=smtp_port)
    controller.start()
    server = None
    try:
        ledger, keys, _population, _creds = _prepare(home, 0)
        from ledger.demo import ensure_agencies, signed_provisions
        from ledger.domain import provision_id
        from ledger.signing import sign_statement
        from projections import alerts as pa
        from projections.runner import catch_up
        from projections.store import ViewStore

        subjects = [f"subj-alert-{i:06d}" for i in range(subscribers)]
        store = ViewStore(ledger.settings.database_url)
        sids: dict[str, uuid.UUID] = {}
        with store.write() as session:
            for s in subjects:
                created, _ = pa.create(session, s, pa.EMAIL, f"r{s[-6:]}@example.jp")
                sids[s] = uuid.UUID(created.id)
            # Confirmed as the page's confirm form does (the codes are read back: setup only).
            for s in subjects:
                token = session.execute(pa.subscription.select().where(
                    pa.subscription.c.id == sids[s])).first().confirm_token
                pa.confirm(session, s, str(sids[s]), token)
            # The confirmation mails are not part of the measurement.
            session.execute(pa.outbox.delete())
        store.close()
        agencies, _ = ensure_agencies(ledger)
        per_round = int(rate * seconds)
        made = list(signed_provisions(ledger, agencies, keys, subjects, per_round * rounds,
                                      seed=11))
        catch_up(ledger)
        ledger.checkpoint()
        statements, expected, withheld = [], [], []
        for i, s in enumerate(made):
            s["payload"]["request_id"] += f"-alerts-{i}"
            agency = s["statement"]["agency"]
            statements.append(sign_statement(s["payload"], kind="provision", agency=agency,
                                             key=keys[agency], time=_time(s["statement"]["time"])))
            codes = ledger.link_codes.lookup([c for c in (s["payload"].get("requester_code"),
                                                          s["payload"].get("provider_code"))
                                              if c])
            subject = next((hit[1] for hit in codes.values()), s["payload"].get("subject"))
            pid = provision_id(agency, s["payload"]["request_id"])
            expected.append(str(pa.delivery_id(sids[subject], pid)))
            # Non-disclosed (不開示) records must raise no alert (the demo data has a few).
            withheld.append(bool(s["payload"].get("non_disclosure"))
                            or s["payload"].get("disclose_after") is not None)
        ledger.close()
        bodies = [json.dumps(s).encode() for s in statements]
        env_extra = {"KIROKU_SMTP_URL": f"smtp://{HOST}:{smtp_port}"}
        env = dict(os.environ, KIROKU_HOME=str(home), KIROKU_DEMO="1", **env_extra)
        server = subprocess.Popen(
            [sys.executable, "-m", "kiroku", "serve", "--host", HOST, "--port", str(port),
             "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        url = f"http://{HOST}:{port}"
        _wait_ready(url)
        # Baseline: one bare message to the same SMTP server, 50 times.
        bare = []
        for k in range(50):
            t = time.perf_counter()
            with smtplib.SMTP(HOST, smtp_port) as smtp:
                smtp.sendmail("a@localhost", ["b@example.jp"],
                              f"Message-ID: <bare-{k}@x>\r\n\r\nx".encode())
            bare.append(time.perf_counter() - t)
        load_before = os.getloadavg()
        results = []
        for n in range(rounds):
            chunk = slice(n * per_round, (n + 1) * per_round)
            sent = time.perf_counter()
            done, append_lat = _paced(url, bodies[chunk], rate, 16)
            took = time.perf_counter() - sent
            deadline = time.perf_counter() + 120
            ids, hidden = expected[chunk], withheld[chunk]
            due = sum(1 for d, h in zip(done, hidden, strict=True) if d is not None and not h)
            while time.perf_counter() < deadline:
                with box.lock:
                    arrived = sum(1 for d, h in zip(ids, hidden, strict=True)
                                  if d in box.seen and not h)
                if arrived >= due:
                    break
                time.sleep(0.2)
            time.sleep(1.0)  # a sender pass more: a withheld record's alert would come by now
            with box.lock:
                lat = [box.seen[d] - t for d, t, h in zip(ids, done, hidden, strict=True)
                       if t is not None and d in box.seen and not h]
                leaked = sum(1 for d, h in zip(ids, hidden, strict=True) if h and d in box.seen)
            accepted = sum(1 for d in done if d is not None)
            results.append({"accepted": accepted, "due": due, "withheld": accepted - due,
                            "leaked": leaked, "delivered": len(lat), "p50": _pct(lat, 50),
                            "p99": _pct(lat, 99), "max": max(lat) if lat else float("nan"),
                            "rate": len(bodies[chunk]) / took, "append_p50": _pct(append_lat, 50),
                            "append_p99": _pct(append_lat, 99)})
            r = results[-1]
            print(f"round {n + 1}: {r['accepted']} appends accepted at {r['rate']:.0f}/s "
                  f"({r['withheld']} non-disclosed), {r['delivered']} alerts received for the "
                  f"{r['due']} disclosed, {r['leaked']} for non-disclosed ones; append→SMTP p50 {r['p50']:.2f} s, p99 "
                  f"{r['p99']:.2f} s, max {r['max']:.2f} s; append p50 {_ms(r['append_p50'])} "
                  f"p99 {_ms(r['append_p99'])}", flush=True)
        load_after = os.getloadavg()
        p50 = _median([r["p50"] for r in results])
        p99 = _median([r["p99"] for r in results])
        print()
        print(f"Alert latency, {rounds} rounds of {per_round} appends at {rate:.0f}/s, every "
              f"append about one of {subscribers} confirmed e-mail subscribers "
              f"(kiroku serve --workers {workers}, SQLite, aiosmtpd on loopback; medians of "
              f"rounds, runs in brackets):")
        print("| | measured | target | ratio |")
        print("|---|---|---|---|")
        runs50 = " / ".join(f"{r['p50']:.2f}" for r in results)
        runs99 = " / ".join(f"{r['p99']:.2f}" for r in results)
        print(f"| append (201) → SMTP server DATA, p50 | {p50:.2f} s ({runs50}) | ≤ 2 s | "
              f"{p50 / LATENCY_P50_S:.2f} |")
        print(f"| append (201) → SMTP server DATA, p99 | {p99:.2f} s ({runs99}) | ≤ 10 s | "
              f"{p99 / LATENCY_P99_S:.2f} |")
        print(f"| alerts received / disclosed appends accepted | "
              f"{sum(r['delivered'] for r in results)} / {sum(r['due'] for r in results)}"
              f" | all | |")
        print(f"| alerts for non-disclosed appends (不開示) | "
              f"{sum(r['leaked'] for r in results)} of {sum(r['withheld'] for r in results)}"
              f" | none | |")
        print(f"| achieved append rate | {_median([r['rate'] for r in results]):.0f}/s | "
              f"{rate:.0f}/s | |")
        print(f"| baseline: the append itself, p50 / p99 | "
              f"{_ms(_median([r['append_p50'] for r in results]))} / "
              f"{_ms(_median([r['append_p99'] for r in results]))} | | |")
        print(f"| baseline: one bare smtplib message (connect, send, quit), median | "
              f"{_ms(_median(bare))} | | |")
        print(f"load average before {load_before[0]:.2f} / {load_before[1]:.2f} / "
              f"{load_before[2]:.2f}, after {load_after[0]:.2f} / {load_after[1]:.2f} / "
              f"{load_after[2]:.2f}")
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        controller.stop()
        shutil.rmtree(home, ignore_errors=True)


# -- 3. the notice list at 1M entries -----------------------------------------------------------
def bench_list(cache: Path | None, entries: int, seconds: float, rounds: int, requests: int,
               port: int, workers: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="kiroku-bench-nlist-"))
    if cache is not None and (cache / "kiroku.sqlite3").exists():
        shutil.copytree(cache, home, dirs_exist_ok=True)  # the cache itself is never written
    server = None
    try:
        ledger, keys, _population, creds = _prepare(home, entries)
        from ledger.notices import append_notice, set_attributes
        from projections.runner import catch_up

        city = _city(ledger)
        residents = creds.residents[:5]
        t = time.perf_counter()
        for k in range(1000):  # group notices for districts none of them lives in
            append_notice(ledger, _notice(keys, city, f"other-{k}", {
                "type": "group", "criteria": {"district": f"131121-x{k}"}}))
        for k, r in enumerate(residents):
            code = ledger.issue_link_codes(city, [r.subject])[r.subject]
            set_attributes(ledger, city, code, {"district": DISTRICT})
            for j in range(10):
                append_notice(ledger, _notice(keys, city, f"for-{k}-{j}",
                                              {"type": "individual", "code": code}))
        for j in range(20):
            append_notice(ledger, _notice(keys, city, f"district-{j}",
                                          {"type": "group", "criteria": {"district": DISTRICT}}))
        catch_up(ledger)
        ledger.checkpoint()
        size = ledger.tree_size()
        print(f"  notices issued and projected in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        ledger.close()
        server = _start_server(home, port, workers)
        url = f"http://{HOST}:{port}"
        _wait_ready(url)
        from kiroku.client import ResidentClient

        bearers, cookies, counts = [], [], []
        for r in residents:
            client = ResidentClient(url)
            client.login_files(r.certificate, r.key)
            bearers.append({"Authorization": f"Bearer {client.token}"})
            session, csrf = _page_login(url, r.certificate)
            cookies.append({"Cookie": f"kiroku_session={session}; kiroku_csrf={csrf}"})
            counts.append(len(httpx.get(url + "/v1/me/notices", headers=bearers[-1],
                                        timeout=30).json()["items"]))
        if min(counts) != 30:
            raise SystemExit(f"each resident should list 30 notices, got {counts}")
        routes = (("/v1/me/provisions?limit=50", bearers), ("/v1/me/notices", bearers),
                  ("/me/notices", cookies))
        for path, headers in routes:  # warm-up
            _load(url, "GET", path, [None] * 100, 8, seconds, headers=_rotating(headers))
        load_before = os.getloadavg()
        results: dict[str, list[tuple[float, float, float]]] = {p: [] for p, _ in routes}
        for n in range(rounds):
            for path, headers in routes:
                lat, errors, took = _load(url, "GET", path, [None] * requests, 8, seconds,
                                          headers=_rotating(headers))
                if errors:
                    raise SystemExit(f"{errors} errors on {path}")
                results[path].append((_pct(lat, 50), _pct(lat, 99), len(lat) / took))
                print(f"round {n + 1} {path}: {len(lat)} requests, {len(lat) / took:.0f}/s, "
                      f"p50 {_ms(_pct(lat, 50))} p99 {_ms(_pct(lat, 99))}", flush=True)
        load_after = os.getloadavg()
        print()
        print(f"Notice list: log of {size:,} entries, {len(residents)} residents with 30 notices "
              f"each among {1000 + 20 + 10 * len(residents):,} notices; kiroku serve --workers "
              f"{workers}, SQLite, 8 connections; medians of {rounds} rounds (p99 per round in "
              f"brackets):")
        print("| request | rate | p50 | p99 | target | ratio |")
        print("|---|---|---|---|---|---|")
        for path, _ in routes:
            rs = results[path]
            p99 = _median([r[1] for r in rs])
            target = path != "/v1/me/provisions?limit=50"
            print(f"| GET {path}{'' if target else ' (baseline)'} | "
                  f"{_median([r[2] for r in rs]):.0f}/s | {_ms(_median([r[0] for r in rs]))} | "
                  f"{_ms(p99)} ({' / '.join(f'{r[1] * 1000:.1f}' for r in rs)}) | "
                  f"{'p99 ≤ 50 ms' if target else ''} | "
                  f"{f'{p99 / LIST_P99_S:.2f}' if target else ''} |")
        print(f"load average before {load_before[0]:.2f} / {load_before[1]:.2f} / "
              f"{load_before[2]:.2f}, after {load_after[0]:.2f} / {load_after[1]:.2f} / "
              f"{load_after[2]:.2f}")
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", default="group,alerts,list",
                        help="comma-separated: group, alerts, list")
    parser.add_argument("--group-residents", type=int, default=100_000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0, help="appends per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000, help="per list phase")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--cache", type=Path, help="the loaded 1M home to copy (list part)")
    parser.add_argument("--port", type=int, default=8807)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    parts = set(args.part.split(","))
    if parts - {"group", "alerts", "list"} or args.rounds < 1:
        parser.error("--part takes group, alerts, list; --rounds must be positive")
    if "group" in parts:
        bench_group(args.group_residents, args.rounds)
    if "alerts" in parts:
        bench_alerts(args.subscribers, args.rate, args.seconds, args.rounds, args.port,
                     args.workers)
    if "list" in parts:
        bench_list(args.cache, args.entries, args.seconds, args.rounds, args.requests,
                   args.port + 2, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
