"""``create_app(settings)``: the FastAPI application, one router module per resource."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api import problems, web
from api.limits import LimitsMiddleware
from api.routers import (
    agencies,
    applications,
    auth,
    completeness,
    flags,
    health,
    log,
    me,
    notices,
    provisions,
    proxies,
    shards,
    subscriptions,
    tiles,
)
from api.services import Services
from api.settings import ApiSettings
from api.shards import attach as attach_shards
from api.shards import open_shards
from ledger.application import Ledger
from ledger.errors import ConfigurationError

DESCRIPTION = """\
kiroku records which agency provided whose information to whom, and why (My Number Act Art. 23),
in a signed, append-only Merkle log. See docs/api.md for the credentials and the trust model.

- **Agencies** append statements signed with their registered Ed25519 key and read their own
  report with a `Kiroku-Signature` signed request.
- **Residents** log in with a JPKI-like certificate (`/v1/auth/*`) and read only their own
  records, each with an inclusion proof against a signed checkpoint.
- **Auditors** read entries and reports with a `Kiroku-Signature` signed request.
- **Anyone** can read checkpoints and proofs: they carry no personal data.

Every error is RFC 9457 `application/problem+json` with a stable `type`
(`urn:kiroku:problem:<code>`).
"""


def open_ledger(settings: ApiSettings) -> Ledger:
    from ledger.keys import SigningKey

    ledger_settings = settings.ledger_settings()
    key_path = ledger_settings.operator_key_path
    if not key_path.exists():
        raise ConfigurationError(f"no operator key at {key_path}; run 'kiroku init' first")
    return Ledger(ledger_settings, SigningKey.load(key_path))


def create_app(settings: ApiSettings, ledger: Ledger | None = None) -> FastAPI:
    """Build the service. Without ``ledger`` it opens (and at shutdown closes) its own, which
    re-verifies the latest checkpoint against stored data before serving anything."""
    owned, given = ledger is None, ledger
    # docs/shards.md: with KIROKU_SHARDS every shard is opened; the open one serves as the ledger.
    shard_set = open_shards(settings, ledger)
    if shard_set is not None:
        ledger = shard_set.open.ledger
    ledger = ledger if ledger is not None else open_ledger(settings)
    services = Services.open(settings, ledger)
    attach_shards(services, shard_set)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.background:
            services.housekeeper.start()
        try:
            yield
        finally:
            services.housekeeper.stop()
            if shard_set is not None:
                shard_set.close(keep=given)
            elif owned:
                ledger.close()

    app = FastAPI(title="kiroku", version="1", description=DESCRIPTION, lifespan=lifespan,
                  responses=problems.responses(400, 405, 413, 429))
    app.state.services = services
    app.state.shards = shard_set
    problems.install(app)
    for module in (provisions, agencies, auth, me, completeness, log, health, tiles):
        app.include_router(module.router)
    for module in (flags, proxies):  # docs/api.md "Flags", "Proxies"
        app.include_router(module.router)
    app.include_router(shards.router)  # docs/shards.md
    app.include_router(notices.router)  # docs/notices.md
    app.include_router(subscriptions.router)  # docs/alerts.md
    app.include_router(applications.router)  # docs/applications.md
    web.install(app)
    app.add_middleware(LimitsMiddleware, max_body=settings.max_body_bytes,  # type: ignore[arg-type]
                       max_batch=settings.max_batch_bytes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    logging.getLogger("kiroku.api").setLevel(logging.INFO)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    schema.setdefault("components", {}).setdefault("securitySchemes", {}).update({
        "residentSession": {"type": "http", "scheme": "bearer",
                            "description": "Session token from POST /v1/auth/session"},
        "signedRequest": {"type": "apiKey", "in": "header", "name": "Authorization",
                          "description": "Kiroku-Signature principal=…, key_id=…, created=…, "
                          "nonce=…, signature=… (docs/api.md)"},
    })
    security: dict[str, list[dict[str, list[str]]]] = {"/v1/me/": [{"residentSession": []}], "/v1/agencies/": [{"signedRequest": []}],
                "/v1/log/entries": [{"signedRequest": []}],
                "/v1/log/provisions/": [{"signedRequest": []}],
                "/v1/notices": [{"signedRequest": []}],
                "/v1/applications/steps": [{"signedRequest": []}],
                "/v1/partners/": [{"signedRequest": []}],
                "/v1/proxy/": [{"residentSession": []}],
                "/v1/provisions/{provision_id}/receipt": [{"signedRequest": []}]}
    for path, operations in schema.get("paths", {}).items():
        for prefix, requirement in security.items():
            if path.startswith(prefix):
                for operation in operations.values():
                    operation["security"] = requirement
    app.openapi_schema = schema
    return schema


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers (``kiroku serve``): settings from the environment."""
    return create_app(ApiSettings())
