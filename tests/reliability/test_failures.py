"""Failure answers (issue 13, item 2): the database down, read-only, out of disk or holding a
lock too long gives the client a 503 ``unavailable`` problem with ``Retry-After``, never a 500
and never a receipt; the service recovers by itself when the fault ends; ``/livez`` stays alive
while ``/readyz`` says not ready.

SQLite: lock timeout, disk full (a small tmpfs). A SQLite file system cannot be made read-only
under a process that holds the database open for writing (the kernel refuses the remount), so
SQLite's read-only answer is checked through the mapping of its real error only.
PostgreSQL: down (a TCP proxy in front of the shared server, cut and restored), read-only
(``default_transaction_read_only`` on a database the test made), disk full (a tablespace on a
small tmpfs), lock timeout.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api import problems
from ledger.db import upgrade
from tests.dbutil import PG_ADMIN_URL, PG_SKIP_REASON, _libpq, postgres_available, postgres_database
from tests.reliability.faults import Service, TcpProxy, fill, service, tmpfs

FAULT_REASONS = set(problems.FAULTS)


def assert_unavailable(response: Any, reason: str | None = None) -> str:
    """A 503 unavailable problem with Retry-After (and ``reason`` when given); returns reason."""
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["type"] == "urn:kiroku:problem:unavailable" and body["status"] == 503
    assert body["reason"] in FAULT_REASONS, body
    if reason is not None:
        assert body["reason"] == reason, body
    return str(body["reason"])


def refused_then_recovered(svc: Service, reason: str, start: Any, end: Any) -> None:
    """With the fault in place appends and /readyz answer 503 ``reason``, /livez 200, and
    nothing is appended; after ``end()`` the same statement is appended at the old size."""
    before = svc.size()
    statement = svc.world.statement()
    start()
    try:
        for _ in range(3):
            assert_unavailable(svc.client.post("/v1/provisions", json=statement), reason)
        assert_unavailable(svc.client.post("/v1/provisions/batch",
                                           json=[svc.world.statement(), svc.world.statement()]),
                           reason)
        assert_unavailable(svc.client.get("/readyz"), reason)
        assert svc.client.get("/livez").json() == {"status": "alive"}
    finally:
        end()
    # The service recovers by itself: no restart, no operator action.
    receipt = svc.client.post("/v1/provisions", json=statement)
    assert receipt.status_code == 201, receipt.text
    assert receipt.json()["index"] == before, "a refused append left something in the log"
    assert svc.client.get("/readyz").status_code == 200
    batch = svc.client.post("/v1/provisions/batch", json=[svc.world.statement()])
    assert batch.status_code == 201 and batch.json()["receipts"][0]["index"] == before + 1


# SQLite --------------------------------------------------------------------------------------

@pytest.fixture
def sqlite_home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kiroku-fault-") as folder:
        yield Path(folder)


def test_sqlite_lock_timeout(sqlite_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIROKU_DB_LOCK_TIMEOUT", "0.3")
    path = sqlite_home / "kiroku.sqlite3"
    url = f"sqlite:///{path}"
    upgrade(url)
    with service(url, sqlite_home) as svc:
        holder = sqlite3.connect(path, isolation_level=None)
        refused_then_recovered(svc, "lock-timeout",
                               lambda: holder.execute("BEGIN IMMEDIATE"),
                               lambda: holder.execute("ROLLBACK"))
        holder.close()


def test_sqlite_disk_full() -> None:
    try:
        mounted = tmpfs("24m")
        folder = mounted.__enter__()
    except PermissionError as exc:
        pytest.skip(f"disk-full test needs a tmpfs mount: {exc}")
    try:
        url = f"sqlite:///{folder / 'kiroku.sqlite3'}"
        upgrade(url)
        with service(url, folder) as svc:
            fillers: list[Path] = []

            def full() -> None:
                fillers.append(fill(folder))

            refused_then_recovered(svc, "disk-full", full, lambda: fillers.pop().unlink())
    finally:
        mounted.__exit__(None, None, None)


def test_sqlite_read_only_error_is_unavailable() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.sqlite3"
        sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
        reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        with pytest.raises(sqlite3.OperationalError) as raised:
            reader.execute("INSERT INTO t VALUES (1)")
        reader.close()
    assert problems.database_fault(raised.value) == "database-read-only"


# PostgreSQL ----------------------------------------------------------------------------------

def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True)


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not postgres_available():
        pytest.skip(PG_SKIP_REASON)
    with postgres_database() as url:
        yield url


def test_postgres_down_and_back(pg_url: str, tmp_path: Path) -> None:
    host_port = PG_ADMIN_URL.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = TcpProxy((host, int(port)))
    try:
        proxied = pg_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        with service(proxied, tmp_path) as svc:
            refused_then_recovered(svc, "database-unreachable", proxy.cut, proxy.restore)
    finally:
        proxy.close()


def test_postgres_read_only(pg_url: str, tmp_path: Path) -> None:
    name = pg_url.rsplit("/", 1)[1]
    with _admin() as admin, service(pg_url, tmp_path) as svc:
        def read_only() -> None:
            admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            # The setting applies to new sessions: end the service's current ones, as a
            # failover would. The first answer after that may be "unreachable".
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            for _ in range(5):
                if assert_unavailable(svc.append()) == "database-read-only":
                    return
            raise AssertionError("the database never answered read-only")

        # Writable again without ending any session: the service drops its read-only
        # connections by itself.
        refused_then_recovered(svc, "database-read-only", read_only, lambda: admin.execute(
            f'ALTER DATABASE "{name}" RESET default_transaction_read_only'))


def test_postgres_lock_timeout(pg_url: str, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIROKU_DB_LOCK_TIMEOUT", "0.3")
    with service(pg_url, tmp_path) as svc, psycopg.connect(_libpq(pg_url)) as holder:
        table = svc.world.ledger.log.events_table_name
        refused_then_recovered(
            svc, "lock-timeout",
            lambda: holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"),
            holder.rollback)


def test_postgres_disk_full(tmp_path: Path) -> None:
    if not postgres_available():
        pytest.skip(PG_SKIP_REASON)
    try:
        mounted = tmpfs("32m")
        folder = mounted.__enter__()
    except PermissionError as exc:
        pytest.skip(f"disk-full test needs a tmpfs mount: {exc}")
    space = "kiroku_full_" + uuid.uuid4().hex[:8]
    name = "kiroku_t_" + uuid.uuid4().hex[:12]
    location = folder / "pg"
    location.mkdir()
    import shutil

    shutil.chown(location, "postgres", "postgres")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        with _admin() as admin:
            admin.execute(f"CREATE TABLESPACE {space} LOCATION '{location}'")
            admin.execute(f'CREATE DATABASE "{name}" TABLESPACE {space}')
        url = f"{base}/{name}"
        upgrade(url)
        with service(url, tmp_path) as svc:
            fillers: list[Path] = []

            def full() -> None:
                fillers.append(fill(folder))
                # Tables grow a page at a time: append until a page no longer fits.
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    response = svc.client.post("/v1/provisions/batch",
                                               json=[svc.world.statement() for _ in range(50)])
                    if response.status_code == 503:
                        assert_unavailable(response, "disk-full")
                        return
                    assert response.status_code == 201, response.text
                raise AssertionError("the tablespace never filled up")

            refused_then_recovered(svc, "disk-full", full, lambda: fillers.pop().unlink())
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f"DROP TABLESPACE IF EXISTS {space}")
        mounted.__exit__(None, None, None)
