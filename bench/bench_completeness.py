"""Completeness index benchmark (issue 11 item 6), with its baseline in the same run.

- index update cost per append: batches of appends (the baseline: the append's own cost), then
  the checkpoint that indexes them, minus the same checkpoint's signing without an index (the
  indexing is timed directly around ``CompletenessIndex.update``); target ≤ 20 %;
- a resident with 100 records in a log of --entries entries: proof size (JSON bytes) and the
  verifier's check time.

Usage: PYTHONPATH=. python bench/bench_completeness.py [--entries 1000000] [--residents 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.completeness import CompletenessIndex
from tests.dbutil import sqlite_database
from tests.ledger.fixtures import World, make_world
from verifier import completeness as vc
from verifier.note import NoteVerifier

BATCH = 1000
TARGET = "subj-BENCHTARGET0000001"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--residents", type=int, default=20_000)
    parser.add_argument("--checkpoint-every", type=int, default=5,
                        help="batches of 1,000 appends between checkpoints")
    args = parser.parse_args()
    with sqlite_database() as url:
        world = make_world(url)
        timed: list[float] = []
        original = CompletenessIndex.update

        def update(self: CompletenessIndex, *a: object, **k: object) -> object:
            started = time.perf_counter()
            try:
                return original(self, *a, **k)  # type: ignore[arg-type]
            finally:
                timed.append(time.perf_counter() - started)

        CompletenessIndex.update = update  # type: ignore[method-assign,assignment]
        append_s = index_s = 0.0
        appended = 0
        batches = args.entries // BATCH
        every = max(1, batches // 100)  # the target resident gets 100 records spread out
        for b in range(batches):
            statements = _batch(world, b, args.residents, target=b % every == 0)
            started = time.perf_counter()
            world.ledger.append_batch(statements)
            append_s += time.perf_counter() - started
            appended += len(statements)
            if (b + 1) % args.checkpoint_every == 0 or b == batches - 1:
                timed.clear()
                world.ledger.checkpoint()
                index_s += sum(timed)
            if (b + 1) % 50 == 0:
                print(f"  {appended:,} appended; index {index_s / append_s:.1%} of append time",
                      file=sys.stderr)
        per_append = append_s / appended * 1e6
        per_index = index_s / appended * 1e6
        print(f"entries {world.ledger.tree_size():,}, residents ~{args.residents:,}, "
              f"checkpoint every {args.checkpoint_every * BATCH:,} appends")
        print(f"append (baseline): {per_append:.1f} µs/entry; index update: {per_index:.1f} "
              f"µs/entry = {per_index / per_append:.1%} (target ≤ 20%)")
        proof = world.ledger.completeness.prove(TARGET)
        size = len(json.dumps(proof).encode())
        vkey = NoteVerifier.from_vkey(world.ledger.vkey)
        parsed = vc.ResidentProof.from_json(proof)
        runs = []
        for _ in range(20):
            started = time.perf_counter()
            vc.verify_resident_proof(vc.ResidentProof.from_json(proof), vkey,
                                     held=list(parsed.records))
            runs.append(time.perf_counter() - started)
        print(f"resident with {len(parsed.records)} records: proof {size:,} bytes "
              f"({len(parsed.siblings)} siblings), check {statistics.median(runs) * 1e3:.2f} ms "
              "(median of 20, parse included)")
        world.ledger.close()


def _batch(world: World, b: int, residents: int, *, target: bool) -> list[dict]:
    out = [world.statement(subject=f"subj-{(b * BATCH + i) * 7919 % residents:08d}")
           for i in range(BATCH - 1)]
    out.append(world.statement(subject=TARGET if target else f"subj-{b % residents:08d}"))
    return out


if __name__ == "__main__":
    main()
