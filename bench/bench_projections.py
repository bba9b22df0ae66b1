"""Projection benchmarks, each beside the raw event-read rate measured in the same run.

    python bench/bench_projections.py [--db /tmp/kiroku-bench-1m] [--rebuild 200000] [--runs 3]

- rebuild: entries/s replaying the views from index 0 (target ≥ 20,000/s on SQLite);
- lag: seconds from an entry's logged_at to its view row being committed, while another process
  appends 1,000 entries/s (target p99 < 1 s);
- query: ResidentRecords.list latency on the 1M-entry, 100k-resident log (target p99 ≤ 10 ms).

Baseline ("raw read"): eventsourcing's ``select_notifications`` over the same entries, in
batches of 5,000 — the floor any projection must pay to see the log. The 1M log is made once
with ``KIROKU_HOME=DIR kiroku demo -n 1000000 --residents 100000 --seed 7`` and reused. Medians
are quoted: the machine is shared.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger.application import Ledger
from ledger.config import Settings
from ledger.db import upgrade
from ledger.keys import SigningKey
from projections.history import notification_of
from projections.resident import ResidentRecords
from projections.runner import Batch, Runner


def open_ledger(home: Path) -> Ledger:
    settings = Settings.from_env({"KIROKU_HOME": str(home)})
    upgrade(settings.database_url)
    return Ledger(settings, SigningKey.load(settings.operator_key_path), check=False)


def raw_read_rate(ledger: Ledger, entries: int) -> float:
    """Notifications/s through the library's select_notifications (no decoding)."""
    start, seen, began = 1, 0, time.perf_counter()
    while seen < entries:
        batch = ledger.log.select_notifications(start, limit=5000)
        if not batch:
            break
        seen += len(batch)
        start = batch[-1].id + 1
    return seen / (time.perf_counter() - began)


def mapper_rate(ledger: Ledger, entries: int) -> float:
    """Notifications/s read and decoded into domain events by the Ledger's mapper."""
    start, seen, began = 1, 0, time.perf_counter()
    while seen < entries:
        batch = ledger.log.select_notifications(start, limit=5000)
        if not batch:
            break
        for n in batch:
            ledger.mapper.to_domain_event(n)
        seen += len(batch)
        start = batch[-1].id + 1
    return seen / (time.perf_counter() - began)


def bench_rebuild(ledger: Ledger, runner: Runner, entries: int, runs: int) -> None:
    stop = notification_of(runner.store, entries - 1)
    rates, raws = [], []
    for _ in range(runs):
        raws.append(raw_read_rate(ledger, entries))
        result = runner.rebuild(stop=stop)
        rates.append(result.entries / result.seconds)
    mapped = mapper_rate(ledger, min(entries, 100_000))
    raw, rate = statistics.median(raws), statistics.median(rates)
    print(f"raw read (select_notifications): {raw:,.0f} entries/s (median of {runs})")
    print(f"read + Ledger mapper decode:     {mapped:,.0f} entries/s (the path not taken)")
    print(f"rebuild, {entries:,} entries:     {rate:,.0f} entries/s (median of {runs}; runs "
          f"{', '.join(f'{r:,.0f}' for r in rates)}) = {rate / raw:.2f} × raw read; "
          f"target ≥ 20,000/s")


def bench_query(ledger: Ledger, runner: Runner, samples: int) -> None:
    began = time.perf_counter()
    runner.catch_up()
    print(f"views caught up to the whole log in {time.perf_counter() - began:.0f} s")
    from sqlalchemy import distinct, func, select

    from projections.schema import resident_record as rr

    with runner.store.read() as session:
        subjects = [s for (s,) in session.execute(select(distinct(rr.c.subject)))]
        total = session.execute(select(func.count()).select_from(rr)).scalar()
    print(f"resident view: {total:,} records, {len(subjects):,} residents")
    records = ResidentRecords.for_ledger(ledger)
    rng = random.Random(1)
    picks = [rng.choice(subjects) for _ in range(samples)]
    for subject in picks[:50]:
        records.list(subject)  # warm the page cache as a running service would be
    latencies, sizes = [], []
    for subject in picks:
        t = time.perf_counter()
        page = records.list(subject, limit=50)
        latencies.append(time.perf_counter() - t)
        sizes.append(len(page.items))
    # Baseline: reading the same number of raw events by primary key.
    top = ledger.log.max_notification_id() or 1
    raw = []
    for size in sizes:
        start = rng.randrange(1, max(2, top - 50))
        t = time.perf_counter()
        ledger.log.select_notifications(start, limit=max(size, 1))
        raw.append(time.perf_counter() - t)
    q = statistics.quantiles(latencies, n=100)
    r = statistics.quantiles(raw, n=100)
    print(f"resident page (limit 50, mean {statistics.mean(sizes):.1f} records), {samples} "
          f"queries: p50 {q[49] * 1e3:.2f} ms, p99 {q[98] * 1e3:.2f} ms; target p99 ≤ 10 ms")
    print(f"raw read of as many events: p50 {r[49] * 1e3:.2f} ms, p99 {r[98] * 1e3:.2f} ms "
          f"(page p99 = {q[98] / r[98]:.1f} × raw)")


def _appender(home: str, rate: int, seconds: float, ready: Any) -> None:
    from ledger.demo import ensure_agencies, signed_provisions
    from ledger.demo_data import demo_residents

    ledger = open_ledger(Path(home))
    agencies, keys = ensure_agencies(ledger)
    people = demo_residents(3, 5000)
    statements = list(signed_provisions(ledger, agencies, keys, people, int(rate * seconds), 3))
    ready.set()
    chunk = rate // 10
    began = time.perf_counter()
    for i in range(0, len(statements), chunk):
        delay = began + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        ledger.append_batch(statements[i:i + chunk])
    ledger.close()


class _Watching(Runner):
    last: Batch | None = None

    def read(self, after: int, stop: int | None = None) -> Batch:
        self.last = super().read(after, stop)
        return self.last


def bench_lag(rate: int, seconds: float) -> None:
    home = Path(tempfile.mkdtemp(prefix="kiroku-lag-"))
    from ledger.demo import ensure_agencies
    from ledger.keys import load_or_create

    settings = Settings.from_env({"KIROKU_HOME": str(home)})
    load_or_create(settings.operator_key_path)
    ledger = open_ledger(home)
    from ledger.catalog import load_catalog

    ledger.load_catalog(load_catalog())
    ensure_agencies(ledger)
    runner = _Watching(ledger)
    runner.catch_up()
    ready = multiprocessing.get_context("spawn").Event()
    child = multiprocessing.get_context("spawn").Process(
        target=_appender, args=(str(home), rate, seconds, ready))
    child.start()
    ready.wait()
    lags: list[float] = []
    stopping = threading.Event()

    def observe(_: int) -> None:
        now_us = time.time() * 1e6
        if runner.last is not None:
            lags.extend((now_us - f.logged_at) / 1e6 for f in runner.last.facts)

    watcher = threading.Thread(target=runner.follow, args=(stopping, 0.05, observe))
    began = time.perf_counter()
    watcher.start()
    child.join()
    appended_in = time.perf_counter() - began
    time.sleep(1.0)
    stopping.set()
    watcher.join()
    raw = raw_read_rate(ledger, 10**9)
    q = statistics.quantiles(lags, n=100)
    print(f"lag at {len(lags) / appended_in:,.0f} appends/s for {appended_in:.0f} s "
          f"({len(lags):,} entries): p50 {q[49]:.3f} s, p99 {q[98]:.3f} s, max {max(lags):.3f} s;"
          f" target p99 < 1 s")
    print(f"raw read of that log: {raw:,.0f} entries/s (a batch of {rate:,} reads in "
          f"{rate / raw * 1e3:.0f} ms)")
    runner.close()
    ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("/tmp/kiroku-bench-1m"),
                        help="KIROKU_HOME of the 1M-entry demo log")
    parser.add_argument("--rebuild", type=int, default=200_000, help="entries to rebuild")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=1000, help="appends/s for the lag run")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["rebuild", "query", "lag"])
    args = parser.parse_args()
    if not (args.db / "kiroku.sqlite3").exists():
        sys.exit(f"no log at {args.db}; make it with: KIROKU_HOME={args.db} kiroku demo "
                 "-n 1000000 --residents 100000 --seed 7")
    ledger = open_ledger(args.db)
    runner = Runner(ledger)
    print(f"log: {ledger.tree_size():,} entries at {ledger.settings.database_url}")
    if "rebuild" not in args.skip:
        bench_rebuild(ledger, runner, min(args.rebuild, ledger.tree_size()), args.runs)
    if "query" not in args.skip:
        bench_query(ledger, runner, args.queries)
    runner.close()
    ledger.close()
    if "lag" not in args.skip:
        bench_lag(args.rate, args.seconds)


if __name__ == "__main__":
    main()
