"""Alive, ready, healthy: three probes for orchestrators and operators (docs/api.md "Failures").

- ``/livez``: the process answers. Touches nothing else, so a database fault never gets a live
  process restarted (restarting would not help, and the service recovers by itself).
- ``/readyz``: route traffic here. The database answers a write-capable check (PostgreSQL: the
  session is not read-only, the server is not a standby and the appenders' lock is granted
  within a second; SQLite: its
  file system is writable, has room, and the write lock is granted within a second), the latest
  checkpoint still matches stored data, no request of this process met a database fault since
  the log last grew (at most ``problems.FAULT_MEMORY`` s ago: a full disk on PostgreSQL shows
  only when something is written), and no read view is more than
  ``KIROKU_READY_MAX_LAG_SECONDS`` behind the log.
- ``/healthz``: as before: the database answers and the latest checkpoint re-verifies.

Every not-ready answer is a 503 ``unavailable`` problem with ``Retry-After``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from api import metrics, problems
from api.deps import ServicesDep
from api.models import Health
from ledger.application import Ledger

router = APIRouter(tags=["operations"])

#: A SQLite database's file system with less room than this is reported as full.
MIN_FREE_BYTES = 1 << 20


@router.get("/healthz", response_model=Health, responses=problems.responses(503),
            summary="Database reachable and latest checkpoint re-verified")
def healthz(services: ServicesDep) -> Any:
    ledger = services.ledger
    try:
        ledger.verify_latest_checkpoint()
        latest = ledger.latest_checkpoint()
        size = ledger.tree_size()
    except Exception as exc:  # noqa: BLE001 (any failure means "do not route traffic to me")
        return _not_ready("/healthz", exc, "health check failed")
    status = services.projections.status
    views = list(status(ledger)) if status is not None else []
    return {"status": "ok", "tree_size": size, "checkpoint_size": latest.size if latest else 0,
            "projections": views}


@router.get("/livez", responses={200: {"content": {"application/json": {"example":
                                                                         {"status": "alive"}}}}},
            summary="The process answers (no database access)")
async def livez() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/readyz", response_model=Health, responses=problems.responses(503),
            summary="Ready for traffic: the database takes writes, checkpoint holds, views current")
def readyz(services: ServicesDep) -> Any:
    ledger = services.ledger
    try:
        reason = write_check(ledger)
        if reason is not None:
            return problems.fault_response(reason, "/readyz")
        ledger.verify_latest_checkpoint()
        latest = ledger.latest_checkpoint()
        size = ledger.tree_size()
        remembered = recent_fault(size)
        if remembered is not None:
            return problems.fault_response(remembered, "/readyz")
        status = services.projections.status
        views = list(status(ledger)) if status is not None else []
    except Exception as exc:  # noqa: BLE001
        return _not_ready("/readyz", exc, "readiness check failed")
    limit = services.settings.ready_max_lag_seconds
    behind = [view["name"] for view in views if view.get("lag_seconds", 0) > limit]
    if behind:
        body = problems.problem("unavailable", 503, f"read views more than {limit:g} s behind "
                                f"the log: {', '.join(behind)}", "/readyz",
                                reason="views-behind")
        return problems.response(body, {"Retry-After": "5"})
    return {"status": "ready", "tree_size": size,
            "checkpoint_size": latest.size if latest else 0, "projections": views}


def recent_fault(size: int) -> str | None:
    """The reason of a database fault a request met lately, unless the log grew since (then
    the database took a write again)."""
    if not problems.last_fault:
        return None
    fault = problems.last_fault[0]
    if (time.monotonic() - fault.at > problems.FAULT_MEMORY
            or size > fault.tree_size):
        problems.last_fault.clear()
        return None
    return fault.reason


def _not_ready(path: str, exc: Exception, what: str) -> JSONResponse:
    reason = problems.database_fault(exc)
    if reason is not None:
        return problems.fault_response(reason, path)
    body = problems.problem("unavailable", 503, f"{what}: {type(exc).__name__}: {exc}", path)
    return problems.response(body, {"Retry-After": "5"})


def write_check(ledger: Ledger) -> str | None:
    """None when the ledger's database would take a write now, else a problems.FAULTS reason.
    Writes nothing."""
    engine = ledger.log.datastore.engine
    assert isinstance(engine, Engine)
    if engine.dialect.name == "sqlite":
        return _sqlite_write_check(make_url(ledger.settings.database_url).database or "")
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            connection.exec_driver_sql("SET LOCAL statement_timeout = 2000")
            read_only, standby = connection.exec_driver_sql(
                "SELECT current_setting('transaction_read_only'), pg_is_in_recovery()").one()
            if read_only == "on" or standby:
                transaction.rollback()
                # A session opened read-only stays so: drop it rather than pool it.
                connection.invalidate()
                return "database-read-only"
            # The appenders' lock, granted within a second (held for milliseconds per append).
            connection.exec_driver_sql("SET LOCAL lock_timeout = 1000")
            connection.exec_driver_sql(f"LOCK TABLE {ledger.log.events_table_name} "
                                       "IN EXCLUSIVE MODE")
            transaction.rollback()
    except Exception as exc:  # noqa: BLE001
        return problems.database_fault(exc) or "database-unreachable"
    return None


def _sqlite_write_check(path: str) -> str | None:
    if not path or path == ":memory:":
        return None
    try:
        stat = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return "database-unreachable"
    if stat.f_flag & os.ST_RDONLY:
        return "database-read-only"
    if stat.f_bavail * stat.f_frsize < MIN_FREE_BYTES:
        return "disk-full"
    try:
        connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=1.0,
                                     isolation_level=None)
    except sqlite3.Error as exc:
        return problems.database_fault(exc) or "database-unreachable"
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
    except sqlite3.Error as exc:
        return problems.database_fault(exc) or "database-unreachable"
    finally:
        connection.close()
    return None


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"example":
                                                        "kiroku_tree_size 1042.0\n"}}}},
            summary="Prometheus metrics")
def prometheus(services: ServicesDep) -> Response:
    data, content_type = metrics.render(services.ledger, services.projections.status)
    return Response(data, media_type=content_type)
