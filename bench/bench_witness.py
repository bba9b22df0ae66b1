"""Witness cosigning latency: from a new checkpoint being signed to its cosigned checkpoint
being published (GET /v1/log/checkpoint/witnessed would serve it), with two local witnesses.

Two ``kiroku witness serve`` processes on 127.0.0.1; the operator side is the housekeeping's own
witness threads (api/witnessing.py), as ``kiroku serve`` runs them. For each of N rounds: append
one statement, sign a checkpoint and wake the witness threads (Housekeeper.checkpoint_now), then
poll the published witnessed checkpoint until it has the new size (2 of 2 cosignatures). The
baseline, measured in the same run, is signing the bare checkpoint (Ledger.checkpoint).

    PYTHONPATH=. python bench/bench_witness.py --rounds 200
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from api.background import Housekeeper
from api.settings import parse_witnesses
from api.witnessing import Witnessing, witnessed_note
from tests.dbutil import sqlite_database
from tests.ledger.fixtures import make_world
from tests.witness.servers import WitnessProcess


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="checkpoints to time (>= 100)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kiroku-bench-witness-"))
    with sqlite_database() as url:
        world = make_world(url, home / "log")
        ledger = world.ledger
        processes = [WitnessProcess(home / f"w{i}", f"bench.witness/w{i}",
                                    {ledger.origin: ledger.vkey}) for i in (1, 2)]
        for process in processes:
            process.start()
        witnessing = Witnessing(ledger, parse_witnesses(",".join(p.endpoint for p in processes)),
                                2, timeout=5)
        keeper = Housekeeper(ledger, checkpoint_interval=1, projection_interval=60,
                             catch_up=None, witnessing=witnessing)
        witnessing.start()
        signing: list[float] = []
        published: list[float] = []
        try:
            for _ in range(args.rounds):
                ledger.append(world.statement())
                started = time.perf_counter()
                keeper.checkpoint_now()
                signed = time.perf_counter()
                size = ledger.tree_size()
                while True:
                    note = witnessed_note(ledger, witnessing.witnesses, 2, min_size=size)
                    if note is not None:
                        break
                    time.sleep(0.002)
                published.append(time.perf_counter() - started)
                signing.append(signed - started)
            # Baseline: signing alone, no witnesses woken.
            bare: list[float] = []
            for _ in range(args.rounds):
                ledger.append(world.statement())
                started = time.perf_counter()
                ledger.checkpoint()
                bare.append(time.perf_counter() - started)
        finally:
            witnessing.stop()
            for process in processes:
                process.stop()
            ledger.close()
    ms = 1000.0
    print(f"rounds: {args.rounds}, witnesses: 2 (quorum 2), SQLite")
    print(f"signed -> published witnessed: p50 {_pct(published, .5) * ms:.1f} ms, "
          f"p99 {_pct(published, .99) * ms:.1f} ms, mean {statistics.mean(published) * ms:.1f} ms"
          " (target p50 <= 1000 ms)")
    print(f"  of which signing (with the wake-up): p50 {_pct(signing, .5) * ms:.1f} ms")
    print(f"baseline, bare checkpoint signing: p50 {_pct(bare, .5) * ms:.1f} ms, "
          f"p99 {_pct(bare, .99) * ms:.1f} ms")


if __name__ == "__main__":
    main()
