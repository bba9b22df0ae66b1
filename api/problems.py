"""Every error to HTTP, in one place: RFC 9457 ``application/problem+json``.

``type`` is ``urn:kiroku:problem:<code>`` where ``<code>`` is the error class's stable ``code``
(ledger.errors, api.errors); the same code is the ``code`` member, for clients that switch on it.
A refused batch answers once for the batch and lists each refused statement in ``errors``
(``index`` = position in the request). No handler echoes request data back: a problem document
never contains personal data.

A database that cannot take the request (unreachable, read-only, out of disk, a lock not granted
in time) answers 503 ``unavailable`` with ``Retry-After`` and a ``reason`` member, never 500:
``database_fault`` recognises the drivers' errors (docs/api.md "Failures"). Nothing was
acknowledged: a receipt is only ever returned after the commit.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import errors as api_errors
from ledger import errors as le
from ledger import flags as lf
from ledger import proxies as lp
from ledger import shards as lsh

try:  # projections/ is optional for the service: its routes answer 503 without it
    from projections import errors as pe
except ImportError:  # pragma: no cover
    pe = None  # type: ignore[assignment]

log = logging.getLogger("kiroku.api")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:kiroku:problem:"

#: Status per error class; the most specific class listed wins (checked in MRO order).
STATUS: dict[type[Exception], int] = {
    le.StatementRejected: 422,
    le.NotAllowedByLegalBasis: 403,
    le.SubmitterNotParty: 403,
    le.DuplicateConflict: 409,
    le.BatchTooLarge: 413,
    le.InvalidRequest: 400,
    le.NotFound: 404,
    le.AlreadyRegistered: 409,
    le.IntegrityFailure: 503,
    le.CheckpointError: 503,
    le.ConfigurationError: 503,
    le.LedgerError: 500,
    api_errors.Unauthenticated: 401,
    api_errors.Forbidden: 403,
    api_errors.MalformedJson: 400,
    api_errors.BodyTooLarge: 413,
    api_errors.InvalidParameter: 400,
    api_errors.ResourceNotFound: 404,
    api_errors.ProofPending: 404,
    api_errors.RateLimited: 429,
    api_errors.Unavailable: 503,
}
# Flags and proxies (ledger.flags, ledger.proxies).
STATUS.update({lf.FlagNotSet: 409, lp.InvalidProxy: 422})
# Sharded logs (docs/shards.md): a frozen log takes no appends.
STATUS.update({lsh.ShardFrozen: 409, lsh.ShardError: 409})
if pe is not None:
    STATUS.update({pe.InvalidQuery: 400, pe.UnknownAgency: 404, pe.ViewsMissing: 503,
                   pe.ProjectionError: 503})
    # Alert subscriptions (projections.alerts, docs/alerts.md).
    from projections import alerts as pa

    STATUS.update({pa.InvalidSubscription: 422, pa.TooManySubscriptions: 409,
                   pa.InvalidConfirmation: 422, pa.UnknownSubscription: 404})

TITLES: dict[str, str] = {
    "malformed-statement": "The statement is malformed",
    "bad-signature": "The statement's signature does not verify",
    "unknown-key": "The statement's key is not registered",
    "key-not-yet-valid": "The statement's key was not yet valid at its time",
    "key-revoked": "The statement's key is revoked",
    "key-of-another-agency": "The key belongs to another agency",
    "unknown-agency": "The agency is not registered",
    "commitment-mismatch": "The commitment does not match the payload",
    "not-allowed-by-legal-basis": "The legal-basis table does not allow this provision",
    "unknown-basis": "No such legal basis",
    "requester-not-allowed": "The requester may not ask under this basis",
    "provider-not-allowed": "The provider may not provide under this basis",
    "affair-not-allowed": "The affair does not match the legal basis",
    "items-not-allowed": "The items are not allowed by the legal basis",
    "submitter-not-party": "The submitting agency is not a party to the provision",
    "time-in-future": "A time is in the future",
    "time-before-registration": "A time precedes the agency's registration",
    "duplicate-conflict": "The request id was already used for another statement",
    "unknown-link-code": "The link code was not issued to that agency",
    "link-code-of-another-agency": "The link code belongs to another agency",
    "link-codes-of-different-residents": "The two link codes stand for different residents",
    "subject-in-version-2": "A version-2 payload names link codes, not a subject",
    "batch-too-large": "Too many statements in one batch",
    "batch-rejected": "Statements of the batch were refused; nothing was appended",
    "invalid-request": "The request asks for something that cannot exist",
    "not-found": "Not found",
    "integrity-failure": "Stored data no longer matches the signed checkpoint",
    "unauthenticated": "Authentication required",
    "forbidden": "Not allowed for this caller",
    "malformed-json": "The body is not valid JSON",
    "body-too-large": "The request body is too large",
    "invalid-parameter": "A parameter is invalid",
    "proof-pending": "No signed checkpoint covers this entry yet",
    "rate-limited": "Too many requests",
    "unavailable": "The service is unavailable",
    "method-not-allowed": "Method not allowed",
    "not-acceptable": "Not acceptable",
    "unsupported-media-type": "Unsupported media type",
    "internal-error": "Internal error",
    "invalid-query": "A query parameter is invalid",
    "views-missing": "The read views are missing (run the migrations)",
    "projection-error": "The read views failed",
    "unknown-provision": "The log holds no such provision",
    "flag-submitter-not-allowed": "Only the requester, the provider or an authority may flag",
    "unknown-flag": "No such flag",
    "unknown-reason": "No such reason code",
    "flag-not-set": "The flag is not in force, so it cannot be lifted",
    "unknown-proxy": "No such proxy registration of yours",
    "invalid-proxy": "The proxy registration or cancellation is refused",
    "proxy-already-registered": "This proxy is already registered",
    "invalid-notice": "The notice breaks a notice rule (category, target or validity)",
    "operator-cannot-issue-notice": "Notices are issued by agencies, not by the operator",
    "invalid-subscription": "The address or URL cannot receive alerts",
    "too-many-subscriptions": "Too many alert subscriptions",
    "invalid-confirmation": "The confirmation code is wrong or expired",
    "unknown-subscription": "No such subscription of yours",
    "shard-frozen": "The log is frozen: appends go to the open shard",
    "shard-error": "The shards' state does not allow this",
    # E-applications (ledger.applications, docs/applications.md).
    "invalid-application": "The application breaks a rule of its form",
    "unknown-notice": "No such notice applies to you now",
    "unknown-form": "The notice does not invite this form",
    "consent-missing": "A recipient lacks the resident's explicit consent",
    "replayed-application": "This signed application was already submitted",
    "unknown-application": "The log holds no such application",
    "application-of-another": "The application was made to another agency or by another resident",
    "application-state": "The step does not follow from where the application stands",
}

_HTTP_CODES = {400: "invalid-request", 401: "unauthenticated", 403: "forbidden", 404: "not-found",
               405: "method-not-allowed", 406: "not-acceptable", 413: "body-too-large",
               415: "unsupported-media-type", 422: "invalid-parameter", 429: "rate-limited",
               503: "unavailable"}


def status_of(exc: Exception) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def problem(code: str, status: int, detail: str, instance: str | None = None,
            **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": TYPE_PREFIX + code, "title": TITLES.get(code, code),
                            "status": status, "detail": detail, "code": code}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON,
                        headers=headers)


def rejection_items(exc: le.BatchRejected) -> list[dict[str, Any]]:
    return [{"index": position, "type": TYPE_PREFIX + error.code, "code": error.code,
             "status": status_of(error), "detail": str(error)} for position, error in exc.errors]


def _error_response(request: Request, exc: Exception) -> JSONResponse:
    status = status_of(exc)
    code = getattr(exc, "code", "internal-error")
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(exc, le.BatchRejected):
        extra["errors"] = rejection_items(exc)
        status = 422
    if isinstance(exc, api_errors.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="kiroku", Kiroku-Signature realm="kiroku"'
    retry = getattr(exc, "retry_after", None)
    if retry is not None:
        headers["Retry-After"] = str(max(1, round(retry)))
    if status >= 500:
        log.error("%s on %s %s: %s", code, request.method, request.url.path, exc)
    return response(problem(code, status, str(exc), request.url.path, **extra), headers)


def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errs = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errs):
        return response(problem("malformed-json", 400, "the body is not valid JSON",
                                request.url.path))
    # Report where and what, never the offending input (it may be personal data).
    items = [{"location": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
             for e in errs][:20]
    in_body = any(e.get("loc", ("",))[0] == "body" for e in errs)
    code, status = ("invalid-request", 422) if in_body else ("invalid-parameter", 400)
    detail = "; ".join(f"{i['location']}: {i['message']}" for i in items[:3])
    return response(problem(code, status, detail, request.url.path, errors=items))


def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "internal-error" if exc.status_code >= 500
                           else "invalid-request")
    detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(code, code)
    headers = dict(exc.headers or {})
    return response(problem(code, exc.status_code, detail, request.url.path), headers)


#: ``reason`` member → (detail, seconds in Retry-After) of a database fault's 503 answer.
FAULTS: dict[str, tuple[str, int]] = {
    "database-unreachable": ("the database cannot be reached; nothing was recorded", 5),
    "database-read-only": ("the database is read-only; nothing was recorded", 30),
    "disk-full": ("the database's disk is full; nothing was recorded", 30),
    "lock-timeout": ("the database did not grant a lock in time; nothing was recorded", 1),
}

# SQLite result codes (sqlite3.Error.sqlite_errorname, extended codes share the prefix).
_SQLITE_FAULTS = (("SQLITE_BUSY", "lock-timeout"), ("SQLITE_LOCKED", "lock-timeout"),
                  ("SQLITE_FULL", "disk-full"), ("SQLITE_READONLY", "database-read-only"),
                  ("SQLITE_IOERR", "database-unreachable"),
                  ("SQLITE_CANTOPEN", "database-unreachable"))
# PostgreSQL SQLSTATEs (and classes: a two-character key matches the whole class).
_PG_FAULTS = {"25006": "database-read-only", "55P03": "lock-timeout", "57014": "lock-timeout",
              "40P01": "lock-timeout", "40001": "lock-timeout", "53100": "disk-full",
              "08": "database-unreachable", "57": "database-unreachable",
              "53": "database-unreachable", "58": "database-unreachable"}


def database_fault(exc: BaseException) -> str | None:
    """The FAULTS reason when ``exc`` (or what it wraps) says the database cannot take the
    request for now: unreachable, read-only, out of disk or a lock timeout. None otherwise."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        reason = _fault_of(error)
        if reason is not None:
            return reason
        pending += [error.__cause__, error.__context__, getattr(error, "orig", None)]
    return None


def _fault_of(error: BaseException) -> str | None:
    if isinstance(error, sqlite3.Error):
        name = getattr(error, "sqlite_errorname", "") or ""
        for prefix, reason in _SQLITE_FAULTS:
            if name.startswith(prefix):
                return reason
        text = str(error).lower()
        for words, reason in (("locked", "lock-timeout"), ("disk is full", "disk-full"),
                              ("readonly", "database-read-only"),
                              ("disk i/o", "database-unreachable")):
            if words in text:
                return reason
        return None
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and type(error).__module__.startswith("psycopg"):
        return _PG_FAULTS.get(sqlstate) or _PG_FAULTS.get(sqlstate[:2])
    if type(error).__module__.startswith("psycopg") and type(error).__name__ in (
            "OperationalError", "InterfaceError"):
        return "database-unreachable"  # no SQLSTATE: the connection failed or broke
    if isinstance(error, sa_exc.DBAPIError):
        # The driver's error says more than "the connection was dropped" (read-only, say).
        found = _fault_of(error.orig) if isinstance(error.orig, BaseException) else None
        return found or ("database-unreachable" if error.connection_invalidated else None)
    if isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return "database-unreachable"
    return None


def fault_response(reason: str, instance: str | None) -> JSONResponse:
    detail, retry = FAULTS[reason]
    return response(problem("unavailable", 503, detail, instance, reason=reason),
                    {"Retry-After": str(retry)})


@dataclass
class Fault:
    """The last database fault a request of this process met, for ``/readyz``: some faults (a
    full disk on PostgreSQL) show only when something is written."""

    reason: str
    at: float
    tree_size: int


#: Per process; ``/readyz`` reports it until the log grows again or ``FAULT_MEMORY`` s pass.
last_fault: list[Fault] = []
FAULT_MEMORY = 60.0


def _remember(request: Request, reason: str) -> None:
    services = getattr(request.app.state, "services", None)
    if services is None:
        return
    try:
        size = int(services.ledger.tree_size())
    except Exception:  # noqa: BLE001 (it does not even read: /readyz's own probe sees that)
        return
    last_fault[:] = [Fault(reason, time.monotonic(), size)]


def _database(request: Request, exc: Exception) -> JSONResponse:
    reason = database_fault(exc)
    if reason is None:
        return _unexpected(request, exc)
    _remember(request, reason)
    # The driver's message only: it names the failing operation, never the request's data.
    log.warning("unavailable (%s) on %s %s: %s", reason, request.method, request.url.path,
                type(exc).__name__)
    return fault_response(reason, request.url.path)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return response(problem("internal-error", 500, "an unexpected error occurred; it was logged",
                            request.url.path))


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(le.LedgerError, _error_response)
    app.add_exception_handler(api_errors.ApiError, _error_response)
    if pe is not None:
        app.add_exception_handler(pe.ProjectionError, _error_response)
    for database_error in _database_errors():
        app.add_exception_handler(database_error, _database)
    app.add_exception_handler(Exception, _unexpected)


def _database_errors() -> list[type[Exception]]:
    """The exception bases the drivers and layers between them and the routes raise."""
    from eventsourcing.persistence import PersistenceError

    found: list[type[Exception]] = [sqlite3.Error, sa_exc.SQLAlchemyError, PersistenceError]
    try:
        import psycopg

        found.append(psycopg.Error)
    except ImportError:  # pragma: no cover (SQLite-only installs)
        pass
    return found


#: Problem response for OpenAPI documents.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri", "example": TYPE_PREFIX + "bad-signature"},
        "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "code": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem statuses of a route."""
    return {s: {"description": _describe(s), "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}
            for s in statuses}


def _describe(status: int) -> str:
    return {400: "Bad request (malformed JSON or parameter)", 401: "Not authenticated",
            403: "Forbidden", 404: "Not found", 409: "Conflict", 413: "Too large",
            422: "Refused statement(s) or invalid body", 429: "Rate limited",
            503: "Unavailable"}.get(status, "Problem")
