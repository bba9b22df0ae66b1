"""Ledger append benchmark (issue: durable appends per second), with baselines in the same run.

Measures, on SQLite and PostgreSQL:
- kiroku: provisions/s for batches of 1,000 and for single statements (commit per batch,
  fsync on: SQLite WAL with synchronous=FULL, PostgreSQL defaults). Statements are signed
  beforehand (signing is the agency's work, not the log's); the log verifies every signature.
- baseline 1: the raw eventsourcing-sqlalchemy application recorder inserting the same stored
  events (no validation, signing or chaining), same batch sizes, same database server.
- baseline 2: this machine's single-core Ed25519 verification rate, through libsodium (what the
  log uses, ledger.signing) and through OpenSSL (``cryptography``, the verifier's) for reference.
And, with --memory N: resident memory after 100k entries and after N (default 1M) in one process.
And, with --proofs HOME [HOME ...] (SQLite homes, each copied to a temporary directory first):
inclusion and consistency proof latency through ``Ledger.prove_inclusion`` /
``Ledger.prove_consistency`` at random indices and old sizes against the whole log, every proof
checked with the verifier's own functions outside the timing; baselines in the same run: the
previous implementation (four read transactions, pymerkle's walk) and the verifier's check of
the same proof (the bare hash computation). Target p99 <= 5 ms at 1M and 10M entries.

Prints medians over --repeat runs and the ratios. Usage:
    python bench/bench_ledger.py [--backend sqlite|postgres|both] [--repeat 3] [--memory 1000000]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.utils import Environment
from eventsourcing_sqlalchemy.factory import SQLAlchemyFactory

from ledger.domain import Provision, provision_id
from ledger.keys import raw_public_key
from tests.dbutil import postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import World, make_world

BATCH = 1000
CALLERS = 8


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def ed25519_rate(n: int = 5000) -> tuple[float, float]:
    """(libsodium, OpenSSL) verifications per second on one core, same messages and keys."""
    from nacl.bindings import crypto_sign_open

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    raw = raw_public_key(public)
    messages = [os.urandom(180) for _ in range(n)]
    signatures = [key.sign(m) for m in messages]
    start = time.perf_counter()
    for message, signature in zip(messages, signatures):
        crypto_sign_open(signature + message, raw)
    sodium = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for message, signature in zip(messages, signatures):
        public.verify(signature, message)
    return sodium, n / (time.perf_counter() - start)


def statements(world: World, n: int, tag: str) -> list[dict]:
    return [world.statement(request_id=f"{tag}-{i}") for i in range(n)]


def kiroku_rates(world: World, batches: int, singles: int, tag: str) -> tuple[float, float]:
    prepared = [statements(world, BATCH, f"{tag}-b{b}") for b in range(batches)]
    start = time.perf_counter()
    for batch in prepared:
        world.ledger.append_batch(batch)
    batched = batches * BATCH / (time.perf_counter() - start)
    one_by_one = statements(world, singles, f"{tag}-s")
    start = time.perf_counter()
    for statement in one_by_one:
        world.ledger.append(statement)
    single = singles / (time.perf_counter() - start)
    return batched, single


def concurrent_single_rate(world: World, singles: int, callers: int, tag: str) -> float:
    """Single statements from ``callers`` threads at once (a server's request threads)."""
    from concurrent.futures import ThreadPoolExecutor

    prepared = statements(world, singles, f"{tag}-c")
    start = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(world.ledger.append, prepared))
    return singles / (time.perf_counter() - start)


def raw_rates(url: str, world: World, batches: int, singles: int, tag: str) -> tuple[float, float]:
    """The library's own recorder, same events, tables created by the library."""
    env = Environment("Raw", {"SQLALCHEMY_URL": url, "CREATE_TABLE": "yes"})
    recorder = SQLAlchemyFactory(env).application_recorder()
    mapper = world.ledger.mapper

    def stored(n: int, prefix: str) -> list:
        events = []
        for i in range(n):
            sub = world.statement(request_id=f"{prefix}-{i}")
            aggregate = Provision._create(
                Provision.Recorded, id=provision_id(sub["statement"]["agency"], f"{prefix}-{i}"),
                statement=sub["statement"], signature=sub["signature"], payload=sub["payload"],
                salt=sub["salt"], logged_at="2026-01-01T00:00:00Z")
            events.extend(mapper.to_stored_event(e) for e in aggregate.collect_events())
        return events

    prepared = [stored(BATCH, f"{tag}-rb{b}") for b in range(batches)]
    start = time.perf_counter()
    for batch in prepared:
        recorder.insert_events(batch)
    batched = batches * BATCH / (time.perf_counter() - start)
    one_by_one = stored(singles, f"{tag}-rs")
    start = time.perf_counter()
    for event in one_by_one:
        recorder.insert_events([event])
    single = singles / (time.perf_counter() - start)
    recorder.datastore.engine.dispose()
    return batched, single


def run_backend(name: str, database: Callable[[], AbstractContextManager[str]], repeat: int,
                batches: int, singles: int) -> dict[str, float]:
    results: dict[str, list[float]] = {k: [] for k in ("kb", "ks", "kc", "rb", "rs")}
    for run in range(repeat):
        with database() as url:
            world = make_world(url)
            kb, ks = kiroku_rates(world, batches, singles, f"r{run}")
            kc = concurrent_single_rate(world, singles, CALLERS, f"r{run}")
            rb, rs = raw_rates(url, world, batches, singles, f"r{run}")
            world.ledger.close()
        for key, value in zip(("kb", "ks", "kc", "rb", "rs"), (kb, ks, kc, rb, rs)):
            results[key].append(value)
        print(f"  {name} run {run + 1}: kiroku batch {kb:,.0f}/s single {ks:,.0f}/s "
              f"single×{CALLERS} callers {kc:,.0f}/s | raw batch {rb:,.0f}/s single {rs:,.0f}/s",
              flush=True)
    return {key: statistics.median(values) for key, values in results.items()}


def memory_run(total: int) -> None:
    with sqlite_database() as url:
        world = make_world(url)
        marks: dict[int, float] = {}
        appended = 0
        checkpoints = sorted({100_000, total})
        started = time.perf_counter()
        while appended < total:
            world.ledger.append_batch(statements(world, BATCH, f"m{appended}"))
            appended += BATCH
            if appended in checkpoints:
                gc.collect()
                marks[appended] = rss_mib()
                print(f"  RSS after {appended:,} entries: {marks[appended]:.1f} MiB "
                      f"({appended / (time.perf_counter() - started):,.0f} appends/s incl. signing)",
                      flush=True)
        low, high = marks[100_000], marks[total]
        print(f"memory: {low:.1f} MiB at 100k, {high:.1f} MiB at {total:,}: "
              f"{(high / low - 1) * 100:+.1f}% (target within ±10%)")
        world.ledger.close()


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _previous_inclusion(ledger: Any, index: int) -> dict[str, Any]:
    """How prove_inclusion worked before (baseline): tree size, root, leaf and path each read
    in its own transaction, the path by pymerkle's walk run twice (nodes collected, then read)."""
    from ledger.encoding import b64encode
    from ledger.merkle import StoredTree

    size = ledger.tree_size()
    tree = StoredTree(ledger.log, size)
    tree._prefetched(lambda: tree._get_root(0, size))
    root = tree._get_root(0, size)
    _, digest = ledger.get_leaf(index)
    tree._prefetched(lambda: tree._get_inclusion_path(index + 1, size))
    path = tree._get_inclusion_path(index + 1, size)[1][1:]
    return {"leaf_index": index, "tree_size": size, "leaf_hash": b64encode(digest),
            "root_hash": b64encode(root), "proof": [b64encode(h) for h in path]}


def proofs_run(home: Path, samples: int, repeat: int) -> None:
    """Proof latency on a copy of ``home`` (see the module docstring)."""
    import base64
    import random
    import shutil
    import tempfile

    from ledger.application import Ledger
    from ledger.config import Settings
    from ledger.keys import SigningKey
    from verifier.merkle import verify_consistency, verify_inclusion

    copy = Path(tempfile.mkdtemp(prefix="kiroku-bench-proofs-"))
    try:
        started = time.perf_counter()
        shutil.copytree(home, copy, dirs_exist_ok=True)
        os.environ["KIROKU_HOME"] = str(copy)
        os.environ.pop("KIROKU_DATABASE_URL", None)
        settings = Settings.from_env()
        ledger = Ledger(settings, SigningKey.load(settings.operator_key_path))
        size = ledger.tree_size()
        print(f"  proofs at {size:,} entries ({home}, copied in "
              f"{time.perf_counter() - started:.0f} s; load average "
              f"{os.getloadavg()[0]:.1f})", flush=True)
        b64 = base64.b64decode
        rng = random.Random(size)
        kinds: dict[str, list[float]] = {k: [] for k in ("inc", "con", "prev", "vinc", "vcon")}
        for run in range(repeat):
            lat: dict[str, list[float]] = {k: [] for k in ("inc", "con", "prev", "vinc", "vcon")}
            for _ in range(samples):
                index = rng.randrange(size)
                t = time.perf_counter()
                proof = ledger.prove_inclusion(index)
                lat["inc"].append(time.perf_counter() - t)
                t = time.perf_counter()
                previous = _previous_inclusion(ledger, index)
                lat["prev"].append(time.perf_counter() - t)
                if previous != proof:
                    raise SystemExit(f"previous and current inclusion proofs differ at {index}")
                path = [b64(h) for h in proof["proof"]]
                t = time.perf_counter()
                verify_inclusion(b64(proof["leaf_hash"]), index, size, path,
                                 b64(proof["root_hash"]))
                lat["vinc"].append(time.perf_counter() - t)
                old = rng.randrange(1, size)
                t = time.perf_counter()
                consistency = ledger.prove_consistency(old)
                lat["con"].append(time.perf_counter() - t)
                hashes = [b64(h) for h in consistency["proof"]]
                t = time.perf_counter()
                verify_consistency(old, size, hashes, b64(consistency["old_root"]),
                                   b64(consistency["new_root"]))
                lat["vcon"].append(time.perf_counter() - t)
            line = " ".join(f"{k} p50 {_pct(v, 50) * 1e3:.3f} p99 {_pct(v, 99) * 1e3:.3f} ms"
                            for k, v in lat.items())
            print(f"  run {run + 1} (load {os.getloadavg()[0]:.1f}): {line}", flush=True)
            for k, v in lat.items():
                kinds[k].append(_pct(v, 99))
                kinds[k + "50"] = kinds.get(k + "50", []) + [_pct(v, 50)]
        ledger.close()
        m = {k: statistics.median(v) * 1e3 for k, v in kinds.items()}
        print(f"proofs at {size:,} entries ({samples} of each per run, medians of {repeat}; all "
              f"checked with verifier.merkle):\n"
              f"  inclusion   p50 {m['inc50']:.3f} ms p99 {m['inc']:.3f} ms (target p99 <= 5 ms: "
              f"{m['inc'] / 5:.2f}); previous implementation p50 {m['prev50']:.3f} ms p99 "
              f"{m['prev']:.3f} ms (p99 ratio {m['inc'] / m['prev']:.2f}); verifier's check "
              f"p50 {m['vinc50']:.3f} ms\n"
              f"  consistency p50 {m['con50']:.3f} ms p99 {m['con']:.3f} ms (target p99 <= 5 ms: "
              f"{m['con'] / 5:.2f}); verifier's check p50 {m['vcon50']:.3f} ms", flush=True)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both", "none"], default="both")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batches", type=int, default=10, help="batches of 1,000 per run")
    parser.add_argument("--singles", type=int, default=1000, help="single appends per run")
    parser.add_argument("--memory", type=int, default=0, help="entries for the memory run (0: skip)")
    parser.add_argument("--proofs", type=Path, nargs="*", default=[],
                        help="SQLite KIROKU_HOMEs to time proofs on (copied first); with it, "
                             "--backend none skips the append runs")
    parser.add_argument("--proof-samples", type=int, default=1000)
    args = parser.parse_args(argv)

    rates = [ed25519_rate() for _ in range(args.repeat)]
    verify = statistics.median(r[0] for r in rates)
    openssl = statistics.median(r[1] for r in rates)
    print(f"Ed25519 verify, one core: {verify:,.0f}/s through libsodium (the log's), "
          f"{openssl:,.0f}/s through OpenSSL (median of {args.repeat}); "
          f"cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
    backends: list[tuple[str, Callable[[], AbstractContextManager[str]]]] = []
    if args.backend in ("sqlite", "both"):
        backends.append(("SQLite", sqlite_database))
    if args.backend in ("postgres", "both"):
        if postgres_available():
            backends.append(("PostgreSQL", postgres_database))
        else:
            print("PostgreSQL not reachable: skipped")
    targets = {"SQLite": 8000, "PostgreSQL": 5000}  # issue 13 item 7
    for name, database in backends:
        m = run_backend(name, database, args.repeat, args.batches, args.singles)
        print(f"{name}: batched {m['kb']:,.0f}/s (target ≥ {targets[name]:,}) = "
              f"{m['kb'] / m['rb']:.2f} × raw recorder ({m['rb']:,.0f}/s), "
              f"{m['kb'] / verify:.2f} × one-core libsodium Ed25519 verify, "
              f"{m['kb'] / (verify * (os.cpu_count() or 1)):.2f} × the machine's verification "
              f"limit ({verify * (os.cpu_count() or 1):,.0f}/s = one core × {os.cpu_count()}); "
              f"single {m['ks']:,.0f}/s (target ≥ 500) = {m['ks'] / m['rs']:.2f} × raw "
              f"({m['rs']:,.0f}/s); single from {CALLERS} concurrent callers (group commit) "
              f"{m['kc']:,.0f}/s = {m['kc'] / m['rs']:.2f} × raw single")
    if args.memory:
        memory_run(args.memory)
    for home in args.proofs:
        proofs_run(home, args.proof_samples, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
