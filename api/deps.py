"""Dependencies, as ``Annotated`` aliases (the full-stack template's ``deps`` module).

Authentication happens here and nowhere else: ``Bearer`` session tokens for residents,
``Kiroku-Signature`` signed requests for agencies and auditors. No credential gives 401; a valid
credential of the wrong kind or for someone else gives 403 (raised by the routes' checks here).

Dependencies that only look at the request are ``async``: FastAPI runs a plain ``def``
dependency in its thread pool, and each such hop cost more than the dependency itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from api.errors import Forbidden, Unauthenticated
from api.request_signing import SCHEME, Principal, verify_request
from api.services import Services
from api.settings import ApiSettings
from ledger.application import Ledger


async def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_ledger(services: ServicesDep) -> Ledger:
    return services.ledger


async def get_settings(services: ServicesDep) -> ApiSettings:
    return services.settings


LedgerDep = Annotated[Ledger, Depends(get_ledger)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


def _target(request: Request) -> str:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    return (raw + (b"?" + query if query else b"")).decode("latin-1")


async def get_caller(request: Request, services: ServicesDep) -> Principal | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    if header.startswith("Bearer "):
        claims = services.tokens.open("session", header[len("Bearer "):].strip())
        fp = claims.get("cfp")
        if not isinstance(fp, str):
            raise Unauthenticated("the session token is not valid here")
        return Principal("resident", fp)
    if header.startswith(SCHEME + " "):
        body = await request.body()
        return verify_request(header, request.method, _target(request), body,
                              ledger=services.ledger, auditors=services.auditors,
                              skew=services.settings.request_skew, nonces=services.nonces)
    raise Unauthenticated(f"use 'Bearer <session>' (residents) or '{SCHEME} …' (agencies, "
                          "auditors)")


CallerDep = Annotated[Principal | None, Depends(get_caller)]


class Resident:
    """An authenticated resident: only ever their own pseudonym, never another's."""

    def __init__(self, subject: str, fingerprint: str) -> None:
        self.subject = subject
        self.fingerprint = fingerprint


async def require_resident(caller: CallerDep, services: ServicesDep) -> Resident:
    if caller is None:
        raise Unauthenticated("log in as a resident: POST /v1/auth/challenge, then "
                              "/v1/auth/session")
    if caller.kind != "resident":
        raise Forbidden("only residents can read their own records here")
    known, subject = services.credentials.cached(caller.name)
    if not known:  # the database only on a cache miss, and then off the event loop
        subject = await run_in_threadpool(services.credentials.subject_for, caller.name)
    if subject is None:
        raise Unauthenticated("this certificate is no longer registered; log in again")
    if subject.startswith("proxy:"):  # ledger.proxies.PROXY_IDENTITY_PREFIX: no records of its own
        raise Forbidden("a proxy's credential reads its principals' records under /v1/proxy/")
    return Resident(subject, caller.name)


async def require_auditor(caller: CallerDep) -> Principal:
    if caller is None:
        raise Unauthenticated("this route needs an auditor's signed request")
    if caller.kind != "auditor":
        raise Forbidden("only auditors may use this route")
    return caller


async def require_agency_or_auditor(caller: CallerDep) -> Principal:
    if caller is None:
        raise Unauthenticated("this route needs an agency's or an auditor's signed request")
    if caller.kind not in ("agency", "auditor"):
        raise Forbidden("only agencies and auditors may use this route")
    return caller


ResidentDep = Annotated[Resident, Depends(require_resident)]
AuditorDep = Annotated[Principal, Depends(require_auditor)]
AgencyOrAuditorDep = Annotated[Principal, Depends(require_agency_or_auditor)]
