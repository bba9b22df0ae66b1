"""Capacity figures: what one entry costs in the database, in an export and in tiles, and how
fast one node appends and rebuilds its views (docs/capacity.md builds its plan on these).

    python bench/bench_capacity.py [--entries 100000] [--postgres URL] [--no-postgres]

For SQLite (a fresh file under a temporary $KIROKU_HOME) and PostgreSQL (a fresh database
created on the server at ``--postgres``'s admin URL, dropped afterwards), each:

1. appends ``--entries`` demo provisions in-process in batches of 500 (``run_demo``: signed
   v2 statements with link codes, the whole validation) and signs a checkpoint: appends/s;
2. builds the views from nothing (``catch_up`` from index 0): entries/s, with the raw read of the
   same entries beside it (eventsourcing's ``select_notifications``: the floor);
3. measures bytes per entry: the database (SQLite: the file after a checkpoint of its WAL;
   PostgreSQL: ``pg_total_relation_size`` of every table, indexes and TOAST included), by table;
   the export (JSON Lines as ``kiroku log export`` writes it, and gzip-compressed); the C2SP
   tiles (``kiroku log tiles``, level tiles and entry bundles); the baseline is the leaf bytes
   themselves (what the Merkle tree commits to).

The entries are the demo's: 20,000 residents, the legal table's real rows, link codes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _dir_bytes(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _table_sizes(ledger: Any, url: str) -> dict[str, int]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if url.startswith("sqlite"):
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                rows = conn.exec_driver_sql(
                    "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").all()
                sizes: dict[str, int] = {}
                indexes = dict(conn.exec_driver_sql(
                    "SELECT name, tbl_name FROM sqlite_master WHERE type='index'").all())
                for name, size in rows:
                    table = indexes.get(name, name)
                    sizes[table] = sizes.get(table, 0) + int(size)
                return sizes
            rows = conn.exec_driver_sql(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND n.nspname = 'public'").all()
            return {name: int(size) for name, size in rows}
    finally:
        engine.dispose()


def _measure(label: str, url: str | None, entries: int, work: Path) -> dict[str, Any]:
    from ledger.config import Settings
    from ledger.db import upgrade
    from ledger.demo import run_demo
    from ledger.keys import load_or_create
    from ledger.opening import open_ledger
    from ledger.tiles import write_tiles
    from projections.runner import Runner

    home = work / label
    home.mkdir()
    os.environ["KIROKU_HOME"] = str(home)
    if url:
        os.environ["KIROKU_DATABASE_URL"] = url
    else:
        os.environ.pop("KIROKU_DATABASE_URL", None)
    settings = Settings.from_env()
    load_or_create(settings.operator_key_path)
    upgrade(settings.database_url)
    ledger = open_ledger(settings)
    out: dict[str, Any] = {"backend": label}
    try:
        from ledger.catalog import load_catalog

        ledger.load_catalog(load_catalog())
        start_size = ledger.tree_size()
        t = time.perf_counter()
        while ledger.tree_size() - start_size < entries:
            run_demo(ledger, provisions=min(50_000, entries - (ledger.tree_size() - start_size)),
                     seed=11, residents=20_000)
        elapsed = time.perf_counter() - t
        appended = ledger.tree_size() - start_size
        out["appends_per_s"] = appended / elapsed
        ledger.checkpoint()
        size = ledger.tree_size()
        out["size"] = size

        # Views from nothing, beside the raw read of the same notifications.
        recorder = ledger.recorder
        t = time.perf_counter()
        read = 0
        start = 1
        while True:
            batch = recorder.select_notifications(start=start, limit=5000)
            if not batch:
                break
            read += len(batch)
            start = batch[-1].id + 1
        out["raw_read_per_s"] = read / (time.perf_counter() - t)
        runner = Runner(ledger)
        try:
            t = time.perf_counter()
            runner.catch_up()
            out["rebuild_per_s"] = size / (time.perf_counter() - t)
        finally:
            runner.close()

        # Bytes per entry: database (by table), export, tiles; the leaves as the baseline.
        tables = _table_sizes(ledger, settings.database_url)
        out["db_bytes"] = sum(tables.values())
        if not url:
            db_file = Path(settings.database_url.removeprefix("sqlite:///"))
            out["db_file_bytes"] = db_file.stat().st_size
        out["tables"] = dict(sorted(tables.items(), key=lambda kv: -kv[1])[:8])
        export = work / f"{label}.jsonl"
        leaf_bytes = 0
        with export.open("wb") as fh:
            for line in ledger.export():
                leaf_bytes += len(line["leaf"]) * 3 // 4
                fh.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        out["leaf_bytes"] = leaf_bytes
        out["export_bytes"] = export.stat().st_size
        with export.open("rb") as src, gzip.open(work / f"{label}.jsonl.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        out["export_gz_bytes"] = (work / f"{label}.jsonl.gz").stat().st_size
        tiles = work / f"{label}-tiles"
        write_tiles(ledger, tiles)
        out["tile_files"], out["tile_bytes"] = _dir_bytes(tiles)
        return out
    finally:
        ledger.close()


def _report(r: dict[str, Any]) -> None:
    n = r["size"]
    print(f"\n{r['backend']}: log of {n:,} entries")
    print(f"  demo load (statements made, signed, link codes issued, appended in batches of 500, in-process): {r['appends_per_s']:,.0f}/s")
    print(f"  views rebuilt from nothing: {r['rebuild_per_s']:,.0f} entries/s "
          f"(raw read of the same entries: {r['raw_read_per_s']:,.0f}/s, "
          f"ratio {r['rebuild_per_s'] / r['raw_read_per_s']:.2f})")
    base = r["leaf_bytes"] / n
    print(f"  leaf bytes (baseline): {base:,.0f} B/entry")
    print(f"  database: {r['db_bytes'] / n:,.0f} B/entry ({r['db_bytes'] / n / base:.1f} x leaf)"
          + (f"; file {r['db_file_bytes'] / n:,.0f} B/entry" if "db_file_bytes" in r else ""))
    for table, size in r["tables"].items():
        print(f"    {table:40s} {size / n:8,.0f} B/entry")
    print(f"  export: {r['export_bytes'] / n:,.0f} B/entry, gzip {r['export_gz_bytes'] / n:,.0f} "
          f"B/entry")
    print(f"  tiles: {r['tile_bytes'] / n:,.0f} B/entry ({r['tile_files']:,} files)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--postgres", default=PG_ADMIN, help="admin URL (a database is created)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kiroku-capacity-"))
    results = []
    try:
        results.append(_measure("sqlite", None, args.entries, work))
        _report(results[-1])
        if not args.no_postgres:
            import psycopg

            name = "kiroku_capacity_" + uuid.uuid4().hex[:8]
            with psycopg.connect(_libpq(args.postgres), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            try:
                url = args.postgres.rsplit("/", 1)[0] + "/" + name
                results.append(_measure("postgresql", url, args.entries, work))
                _report(results[-1])
            finally:
                with psycopg.connect(_libpq(args.postgres), autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
