"""Completeness index benchmark (issue 11 item 6), with its baseline in the same run.

1. A SQLite log of --entries provisions about ~--residents residents is built (appends in
   batches of 1,000, a checkpoint every --checkpoint-every batches, so the index is kept all
   along), or copied from --cache where an earlier run left it.
2. Measured on a copy of it: --measure more appends, same batches and checkpoints. The
   baseline is the appends' own time (``Ledger.append_batch``); the index's is timed directly
   around ``CompletenessIndex.update`` inside each checkpoint. Target: index ≤ 20 % of append.
   The whole checkpoint is timed too: its commit writes the index's pages (the rest of a
   checkpoint, a root and a signature per 5,000 appends, is well under 1 µs per append), so
   it bounds the index's cost with its I/O included.
3. A resident given 100 records spread over the log: the proof's size (JSON bytes) and the
   verifier's check time (parse, signatures, chain, path, record match).

Each --repeat starts again from the same built log; medians are printed with each run.

Usage: PYTHONPATH=. python bench/bench_completeness.py [--entries 1000000]
       [--residents 20000] [--measure 50000] [--repeat 3] [--cache var/bench/completeness-1000000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.application import Ledger
from ledger.catalog import load_catalog
from ledger.completeness import CompletenessIndex
from ledger.config import Settings
from ledger.db import upgrade
from ledger.keys import SigningKey
from tests.ledger.fixtures import World, make_world
from verifier import completeness as vc
from verifier.note import NoteVerifier

BATCH = 1000
TARGET = "subj-BENCHTARGET0000001"
_KEYS = "bench-keys"  # the world's operator and agency keys, kept beside the cached log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="log size to build")
    parser.add_argument("--residents", type=int, default=20_000)
    parser.add_argument("--checkpoint-every", type=int, default=5,
                        help="batches of 1,000 appends between checkpoints")
    parser.add_argument("--measure", type=int, default=50_000,
                        help="appends measured after the build (whole batches)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--cache", type=Path,
                        help="keep the built log here and start later runs from a copy of it")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="kiroku-bench-completeness-"))
    try:
        built = args.cache or scratch / "built"
        if not (built / "kiroku.sqlite3").exists():
            _build(built, args)
        runs = []
        for run in range(args.repeat):
            home = scratch / f"run-{run}"
            shutil.copytree(built, home)
            runs.append(_measure(home, args))
            shutil.rmtree(home)
            _report(run + 1, runs[-1])
        if args.repeat > 1:
            medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            _report("median", medians)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _build(home: Path, args: argparse.Namespace) -> None:
    print(f"building a log of {args.entries:,} entries in {home}", file=sys.stderr)
    home.mkdir(parents=True)
    url = f"sqlite:///{home}/kiroku.sqlite3"
    upgrade(url)
    world = make_world(url, home)
    keys = home / _KEYS
    world.ledger.operator_key.save(keys / "operator.pem")
    for code, key in world.keys.items():
        key.save(keys / f"{code}.pem")
    batches = args.entries // BATCH
    every = max(1, batches // 100)  # the target resident gets 100 records spread out
    started = time.perf_counter()
    for b in range(batches):
        world.ledger.append_batch(_batch(world, b, args.residents, target=b % every == 0
                                         and b // every < 100))
        if (b + 1) % args.checkpoint_every == 0 or b == batches - 1:
            world.ledger.checkpoint()
        if (b + 1) % 50 == 0:
            print(f"  {(b + 1) * BATCH:,} appended ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr)
    world.ledger.close()


def _open(home: Path) -> World:
    url = f"sqlite:///{home}/kiroku.sqlite3"
    settings = Settings(home=home, database_url=url, key_dir=home / "keys",
                        origin="test.kiroku/log")
    ledger = Ledger(settings, SigningKey.load(home / _KEYS / "operator.pem"))
    world = World(ledger, load_catalog().bases["2-4"])
    for code in (world.requester, world.provider, world.stranger):
        world.keys[code] = SigningKey.load(home / _KEYS / f"{code}.pem")
    world.counter = ledger.tree_size()  # request ids stay unique
    return world


def _adapt(home: Path) -> None:
    """Bring a log cached before the index's last schema change (migration 0006 is unreleased
    and was changed in place) to the current tables, with the rows the current code would
    have written: the pending table (empty: the cached log has no flags), each record's
    ``prev`` (the resident's previous record) and each resident's ``last``."""
    import sqlite3

    db = sqlite3.connect(home / "kiroku.sqlite3")
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(kiroku_completeness_record)")}
        if "prev" not in columns:
            print("adapting the cached index to the record chain", file=sys.stderr)
            db.executescript("""
                CREATE TABLE record_chained (idx INTEGER NOT NULL PRIMARY KEY,
                    index_key BLOB NOT NULL, disclosed BOOLEAN NOT NULL, prev INTEGER);
                INSERT INTO record_chained SELECT idx, index_key, disclosed,
                    LAG(idx) OVER (PARTITION BY index_key ORDER BY idx)
                    FROM kiroku_completeness_record ORDER BY idx;
                DROP TABLE kiroku_completeness_record;
                ALTER TABLE record_chained RENAME TO kiroku_completeness_record;
                CREATE TEMP TABLE lasts (index_key BLOB PRIMARY KEY, m INTEGER NOT NULL);
                INSERT INTO lasts SELECT index_key, MAX(idx) FROM kiroku_completeness_record
                    GROUP BY index_key;
                ALTER TABLE kiroku_completeness_resident ADD COLUMN "last" INTEGER NOT NULL
                    DEFAULT 0;
                UPDATE kiroku_completeness_resident SET "last" = (SELECT m FROM lasts
                    WHERE lasts.index_key = kiroku_completeness_resident.index_key);
            """)
        db.executescript("""
            CREATE TABLE IF NOT EXISTS kiroku_completeness_pending (
                idx INTEGER NOT NULL PRIMARY KEY, index_key BLOB NOT NULL,
                disclose_after INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS kiroku_completeness_pending_due_idx
                ON kiroku_completeness_pending (disclose_after);
        """)
        db.commit()
    finally:
        db.close()


def _measure(home: Path, args: argparse.Namespace) -> dict[str, float]:
    _adapt(home)
    world = _open(home)
    timed: list[float] = []
    original = CompletenessIndex.update

    def update(self: CompletenessIndex, *a: object, **k: object) -> object:
        started = time.perf_counter()
        try:
            return original(self, *a, **k)  # type: ignore[arg-type]
        finally:
            timed.append(time.perf_counter() - started)

    CompletenessIndex.update = update  # type: ignore[method-assign,assignment]
    try:
        append_s = index_s = checkpoint_s = 0.0
        appended = 0
        first = world.ledger.tree_size() // BATCH
        world.ledger.checkpoint()  # (already indexed) so the first measured one is warm too
        timed.clear()
        for b in range(first, first + args.measure // BATCH):
            statements = _batch(world, b, args.residents, target=False)
            started = time.perf_counter()
            world.ledger.append_batch(statements)
            append_s += time.perf_counter() - started
            appended += len(statements)
            if (b + 1 - first) % args.checkpoint_every == 0:
                started = time.perf_counter()
                world.ledger.checkpoint()
                checkpoint_s += time.perf_counter() - started
                index_s += sum(timed)
                timed.clear()
        if appended % (args.checkpoint_every * BATCH):
            started = time.perf_counter()
            world.ledger.checkpoint()
            checkpoint_s += time.perf_counter() - started
            index_s += sum(timed)
    finally:
        CompletenessIndex.update = original  # type: ignore[method-assign]
    proof = world.ledger.completeness.prove(TARGET)
    size = len(json.dumps(proof).encode())
    vkey = NoteVerifier.from_vkey(world.ledger.vkey)
    parsed = vc.ResidentProof.from_json(proof)
    checks = []
    for _ in range(20):
        started = time.perf_counter()
        vc.verify_resident_proof(vc.ResidentProof.from_json(proof), vkey,
                                 held=list(parsed.records))
        checks.append(time.perf_counter() - started)
    result = {
        "entries": world.ledger.tree_size(), "append_us": append_s / appended * 1e6,
        "index_us": index_s / appended * 1e6, "ratio": index_s / append_s,
        "checkpoint_us": checkpoint_s / appended * 1e6, "checkpoint_ratio": checkpoint_s / append_s,
        "records": len(parsed.records), "proof_bytes": size, "siblings": len(parsed.siblings),
        "check_ms": statistics.median(checks) * 1e3,
    }
    world.ledger.close()
    return result


def _report(run: int | str, r: dict[str, float]) -> None:
    print(f"[{run}] log {int(r['entries']):,} entries: append (baseline) {r['append_us']:.1f} "
          f"µs/entry; index update {r['index_us']:.1f} µs/entry = {r['ratio']:.1%} "
          f"(target ≤ 20%); whole checkpoint with its commit {r['checkpoint_us']:.1f} µs/entry "
          f"= {r['checkpoint_ratio']:.1%}; resident with {int(r['records'])} records: proof "
          f"{int(r['proof_bytes']):,} bytes ({int(r['siblings'])} siblings), check "
          f"{r['check_ms']:.2f} ms (median of 20)", flush=True)


def _batch(world: World, b: int, residents: int, *, target: bool) -> list[dict]:
    out = [world.statement(subject=f"subj-{(b * BATCH + i) * 7919 % residents:08d}")
           for i in range(BATCH - 1)]
    out.append(world.statement(subject=TARGET if target else f"subj-{b % residents:08d}"))
    return out


if __name__ == "__main__":
    main()
