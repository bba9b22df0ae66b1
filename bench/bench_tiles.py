"""Writing the log as C2SP tlog-tiles (``kiroku log tiles``) at 1M entries: entries/s and bytes.

    PYTHONPATH=. python bench/bench_tiles.py [--entries 1000000] [--more 10000] [--repeat 3]
                                             [--cache var/bench/tiles-1000000]

Builds (or copies from ``--cache``) a SQLite log of ``--entries`` demo entries with a signed
checkpoint, then measures, in the same run:

1. the baseline: a plain sequential read of the same leaves and leaf hashes (what any tile
   writer must read at least), in the same 4,096-entry ranges ``write_tiles`` reads;
2. a full ``write_tiles`` run into an empty directory: entries/s, files, bytes of level tiles
   and entry bundles (file sizes, and blocks on disk);
3. after ``--more`` appended entries and a new checkpoint, an incremental run into the same
   directory: what it wrote and how long it took.

Steps 1 and 2 are repeated ``--repeat`` times (a fresh directory each time); medians printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _open(home: Path) -> Any:
    os.environ["KIROKU_HOME"] = str(home)
    os.environ.pop("KIROKU_DATABASE_URL", None)
    from ledger.config import Settings
    from ledger.db import upgrade
    from ledger.keys import load_or_create
    from ledger.opening import open_ledger

    settings = Settings.from_env()
    load_or_create(settings.operator_key_path)
    upgrade(settings.database_url)
    return open_ledger(settings)


def _grow(ledger: Any, entries: int, seed: int) -> None:
    from ledger.catalog import load_catalog
    from ledger.demo import run_demo

    ledger.load_catalog(load_catalog())
    started = time.perf_counter()
    while ledger.tree_size() < entries:
        run_demo(ledger, provisions=min(50_000, entries - ledger.tree_size()), seed=seed,
                 residents=20_000)
        print(f"  loaded {ledger.tree_size():,} entries ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr)
    ledger.checkpoint()


def _read_leaves(ledger: Any, size: int) -> float:
    """Baseline: seconds to read every leaf and leaf hash in order, in 4,096-entry ranges."""
    from ledger.tiles import _leaves

    started = time.perf_counter()
    total = 0
    for low in range(0, size, 4096):
        total += sum(len(leaf) for leaf, _ in _leaves(ledger, low, min(low + 4096, size)))
    assert total > 0
    return time.perf_counter() - started


def _on_disk(out: Path) -> tuple[int, int, int]:
    """(files, bytes, bytes in allocated blocks) below ``out``."""
    files = size = blocks = 0
    for path in out.rglob("*"):
        if path.is_file():
            stat = path.stat()
            files, size, blocks = files + 1, size + stat.st_size, blocks + stat.st_blocks * 512
    return files, size, blocks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--more", type=int, default=10_000, help="appended before the "
                        "incremental run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, help="keep the built log here and copy it on "
                        "later runs (default var/bench/tiles-<entries>)")
    args = parser.parse_args()
    cache = args.cache or Path("var/bench") / f"tiles-{args.entries}"
    work = Path(tempfile.mkdtemp(prefix="kiroku-bench-tiles-"))
    home = work / "home"
    try:
        if (cache / "kiroku.sqlite3").exists():
            shutil.copytree(cache, home)
            ledger = _open(home)
        else:
            print(f"building a log of {args.entries:,} entries in {cache}", file=sys.stderr)
            ledger = _open(cache)
            _grow(ledger, args.entries, seed=11)
            ledger.close()
            shutil.copytree(cache, home)
            ledger = _open(home)
        from ledger.tiles import write_tiles

        size = ledger.latest_checkpoint().size
        reads, writes = [], []
        for run in range(args.repeat):
            reads.append(_read_leaves(ledger, size))
            out = work / f"tiles-{run}"
            started = time.perf_counter()
            report = write_tiles(ledger, out)
            writes.append(time.perf_counter() - started)
            files, nbytes, blocks = _on_disk(out)
            if run < args.repeat - 1:
                shutil.rmtree(out)
        read_s, write_s = statistics.median(reads), statistics.median(writes)
        print(f"log: {size:,} entries (SQLite), medians of {args.repeat}")
        print(f"baseline, sequential read of leaves + hashes: {size / read_s:,.0f} entries/s "
              f"({read_s:.1f} s; runs {', '.join(f'{r:.1f}' for r in reads)})")
        print(f"write_tiles, empty directory:                 {size / write_s:,.0f} entries/s "
              f"({write_s:.1f} s; runs {', '.join(f'{w:.1f}' for w in writes)}); "
              f"{write_s / read_s:.2f} x the read")
        print(f"  {report.tiles_written:,} level tiles, {report.tile_bytes:,} bytes; "
              f"{report.bundles_written:,} entry bundles, {report.bundle_bytes:,} bytes; "
              f"{files:,} files, {nbytes:,} bytes, {blocks:,} bytes in blocks on disk")

        _grow(ledger, size + args.more, seed=12)
        grown = ledger.latest_checkpoint().size
        started = time.perf_counter()
        again = write_tiles(ledger, out)
        took = time.perf_counter() - started
        print(f"incremental after {grown - size:,} more entries (size {grown:,}): "
              f"{took:.2f} s, {again.tiles_written} level tiles ({again.tile_bytes:,} bytes), "
              f"{again.bundles_written} entry bundles ({again.bundle_bytes:,} bytes), "
              f"{again.already_present:,} already present")
        ledger.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
