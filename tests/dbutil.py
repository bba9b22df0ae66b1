"""Test databases: a fresh SQLite file or a fresh PostgreSQL database, each migrated by Alembic.

PostgreSQL tests skip with a visible reason when the server is absent (CI turns such skips into
a failure). Every database made here is dropped afterwards: CI reuses the server as it is left.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_ADMIN_URL = os.environ.get("KIROKU_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_SKIP_REASON = f"PostgreSQL not reachable at {PG_ADMIN_URL}"


def postgres_available() -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(_libpq(PG_ADMIN_URL), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@contextmanager
def postgres_database(migrate: bool = True) -> Iterator[str]:
    import psycopg

    name = "kiroku_t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    try:
        if migrate:
            from ledger.db import upgrade

            upgrade(url)
        yield url
    finally:
        with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sqlite_database(migrate: bool = True) -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="kiroku-test-")
    url = f"sqlite:///{folder}/kiroku.sqlite3"
    try:
        if migrate:
            from ledger.db import upgrade

            upgrade(url)
        yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)
