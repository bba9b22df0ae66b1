"""Bench-only: grow a SQLite kiroku home to N log entries with synthetic leaves, for proof timing.

    PYTHONPATH=. python bench/build_proof_log.py --from var/bench/api-1000000 \\
        --out var/bench/proofs-10000000 --size 10000000

A 10M-entry log cannot be built through signed appends in reasonable time (1M takes ~17 min),
and inclusion and consistency proofs read only two tables: the leaf hashes
(``kiroku_log_entry.leaf_hash``) and the stored subtree roots (``kiroku_merkle_node``). This
copies a real home (``--from``, its entries stay as they are) and appends synthetic entries to
those two tables directly, in the storage layout ``ledger.merkle.append_nodes`` defines:

- leaf i is ``{"bench":"synthetic","index":i,"logged_at":…}``; its ``notification_id`` is
  ``-(i+1)``, pointing at no event, so views, exports and the completeness index skip it;
- the leaves are not hash-chained and carry no statement: ``kiroku log fsck`` and
  ``kiroku verify`` refuse such a log. It is for proof measurements only.

Then it checks the result independently: the root over every stored leaf hash, recomputed with
the verifier's own ``verifier.merkle.root_hash`` (not the ledger's code), must equal the root the
ledger reads from its stored subtree roots; and it signs a checkpoint at the new size through
``Ledger.checkpoint`` (so a served copy starts with nothing left to sign). Writes ``DONE`` into
the output directory last; an output directory with ``DONE`` is reused as it is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.merkle import append_nodes, frontier_keys, leaf_hash

CHUNK = 200_000


def synthetic_leaf(index: int, logged_at: str) -> bytes:
    return b'{"bench":"synthetic","index":%d,"logged_at":"%s"}' % (index, logged_at.encode())


def grow(db: Path, size: int, logged_at: str) -> int:
    """Append synthetic entries to the SQLite log at ``db`` until it has ``size``; returns the
    number added."""
    connection = sqlite3.connect(db, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-262144")
        last = connection.execute("SELECT idx, leaf_hash FROM kiroku_log_entry "
                                  "ORDER BY idx DESC LIMIT 1").fetchone()
        start = 0 if last is None else int(last[0]) + 1
        frontier: dict[int, bytes] = {}
        for level, idx in frontier_keys(start):
            if level == 0:
                frontier[0] = bytes(last[1])
            else:
                row = connection.execute("SELECT hash FROM kiroku_merkle_node WHERE level = ? "
                                         "AND idx = ?", (level, idx)).fetchone()
                frontier[level] = bytes(row[0])
        started = time.perf_counter()
        for low in range(start, size, CHUNK):
            high = min(low + CHUNK, size)
            leaves = [synthetic_leaf(i, logged_at) for i in range(low, high)]
            digests = [leaf_hash(leaf) for leaf in leaves]
            nodes = append_nodes(low, frontier, digests)
            connection.execute("BEGIN")
            connection.executemany(
                "INSERT INTO kiroku_log_entry (idx, notification_id, leaf, leaf_hash) "
                "VALUES (?, ?, ?, ?)",
                zip(range(low, high), range(-low - 1, -high - 1, -1), leaves, digests))
            connection.executemany(
                "INSERT INTO kiroku_merkle_node (level, idx, hash) VALUES (?, ?, ?)", nodes)
            connection.execute("COMMIT")
            print(f"  {high:,} entries ({time.perf_counter() - started:.0f} s)", file=sys.stderr,
                  flush=True)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return max(0, size - start)
    finally:
        connection.close()


def independent_root(db: Path) -> tuple[int, bytes]:
    """(size, root) over every stored leaf hash, with the verifier's code only."""
    from verifier.merkle import root_hash

    connection = sqlite3.connect(db)
    try:
        rows = connection.execute("SELECT leaf_hash FROM kiroku_log_entry ORDER BY idx")
        count = 0

        def hashes():  # type: ignore[no-untyped-def]
            nonlocal count
            for (digest,) in rows:
                count += 1
                yield bytes(digest)

        root = root_hash(hashes())
        return count, root
    finally:
        connection.close()


def build(source: Path, out: Path, size: int) -> Path:
    if (out / "DONE").exists():
        return out
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(source, out)
    os.environ["KIROKU_HOME"] = str(out)
    os.environ.pop("KIROKU_DATABASE_URL", None)
    from ledger.application import Ledger
    from ledger.config import Settings
    from ledger.encoding import format_time, now_utc
    from ledger.keys import SigningKey

    settings = Settings.from_env()
    db = out / "kiroku.sqlite3"
    t = time.perf_counter()
    added = grow(db, size, format_time(now_utc()))
    print(f"added {added:,} synthetic entries in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    t = time.perf_counter()
    count, root = independent_root(db)
    ledger = Ledger(settings, SigningKey.load(settings.operator_key_path))
    try:
        stored = ledger.get_root(count)
        if count != size or stored != root:
            raise SystemExit(f"root check failed: {count} leaves, verifier root {root.hex()}, "
                             f"stored-tree root {stored.hex()}")
        print(f"root over {count:,} leaf hashes (verifier.merkle.root_hash) = stored-tree root "
              f"{root.hex()} ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
        t = time.perf_counter()
        ledger.checkpoint()
        print(f"checkpoint signed at {size:,} ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    finally:
        ledger.close()
    (out / "DONE").write_text(f"{size}\n{root.hex()}\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="source", type=Path, required=True,
                        help="a SQLite KIROKU_HOME (copied, never written)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, required=True)
    args = parser.parse_args(argv)
    if not (args.source / "kiroku.sqlite3").exists():
        raise SystemExit(f"{args.source} holds no kiroku.sqlite3")
    build(args.source, args.out, args.size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
