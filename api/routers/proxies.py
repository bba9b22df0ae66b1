"""Proxies (代理人): residents name and cancel them; a proxy reads their principals' records.

A resident registers a proxy by sending the proxy's login certificate (issued by a trusted
resident CA): if it already belongs to a resident of this log (a parent's own card) that
resident is the proxy, otherwise the certificate is registered as a new proxy identity. Each
registration and cancellation is a log entry signed by the operator as registrar
(ledger.proxies). The proxy logs in like a resident (/v1/auth/*) and reads, through an opaque
per-registration ``handle`` (never the principal's pseudonym), exactly what the principal would
see: nothing withheld by a flag or not yet disclosed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api import problems
from api.deps import CallerDep, ResidentDep, ServicesDep
from api.errors import Forbidden, InvalidParameter, ResourceNotFound, Unauthenticated, Unavailable
from api.models import RecordDetail, RecordPage
from api.residents import check_certificate, fingerprint, parse_certificate
from api.schema import resident_credential
from api.services import Services
from api.witnessing import checkpoint_for_proof
from ledger.proxies import (
    PROXY_IDENTITY_PREFIX,
    RELATIONSHIPS,
    InvalidProxy,
    ProxyRegistration,
    get_for_holder,
    list_for_holder,
    list_for_principal,
    new_proxy_identity,
)

router = APIRouter(tags=["proxies"])

_REGISTRATION_EXAMPLE: dict[str, Any] = {
    "id": "3b9a6c1e-7f7d-4e0a-9d2b-2f4a5c6d7e8f", "relationship": "legal_representative",
    "registered_at": "2026-06-10T02:00:00Z", "registered_index": 1050, "cancelled_at": None,
    "cancelled_by": None, "cancel_reason": None}


class ProxyRequest(BaseModel):
    certificate: str = Field(max_length=16384, description="The proxy's login certificate (PEM), "
                             "issued by a trusted resident CA",
                             examples=["-----BEGIN CERTIFICATE-----\n…"])
    relationship: str = Field(max_length=64, description=f"One of {sorted(RELATIONSHIPS)}",
                              examples=["legal_representative"])


class ProxyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": _REGISTRATION_EXAMPLE})

    id: str
    relationship: str
    registered_at: str
    registered_index: int
    cancelled_at: str | None
    cancelled_by: str | None
    cancel_reason: str | None


class ProxyList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"proxies": [_REGISTRATION_EXAMPLE]}})

    proxies: list[ProxyOut]


class Principal(BaseModel):
    handle: str = Field(description="Opaque reference to this principal, for this proxy only",
                        examples=["3b9a6c1e-7f7d-4e0a-9d2b-2f4a5c6d7e8f"])
    relationship: str = Field(examples=["legal_representative"])
    registered_at: str = Field(examples=["2026-06-10T02:00:00Z"])


class PrincipalList(BaseModel):
    principals: list[Principal]


# Who is calling --------------------------------------------------------------------------------
async def require_holder(caller: CallerDep, services: ServicesDep) -> str:
    """The identity a logged-in certificate stands for (a resident's pseudonym or a proxy
    identity): whose proxy registrations the caller may use."""
    if caller is None:
        raise Unauthenticated("log in with your certificate: POST /v1/auth/challenge, then "
                              "/v1/auth/session")
    if caller.kind != "resident":
        raise Forbidden("only a person logged in with a certificate acts as a proxy")
    holder = await run_in_threadpool(services.credentials.subject_for, caller.name)
    if holder is None:
        raise Unauthenticated("this certificate is no longer registered; log in again")
    return holder


HolderDep = Annotated[str, Depends(require_holder)]


def _principal(services: Services, holder: str, handle: str) -> str:
    """The pseudonym behind ``handle`` if the registration is in force for this proxy; the same
    404 for a cancelled, missing or another proxy's handle."""
    try:
        handle = str(UUID(handle))
    except ValueError:
        raise ResourceNotFound("you act for no principal with this handle") from None
    found = get_for_holder(services.ledger, holder, handle)
    if found is None:
        raise ResourceNotFound("you act for no principal with this handle")
    return found.principal


def _records(services: Services) -> Any:
    if services.projections.residents is None:
        raise Unavailable("the resident view (projections) is not installed")
    return services.projections.residents


# The principal ---------------------------------------------------------------------------------
@router.post("/v1/me/proxies", status_code=201, response_model=ProxyOut,
             responses=problems.responses(401, 403, 409, 422, 503),
             summary="Name a proxy (代理人) who may read my records")
def register(body: ProxyRequest, resident: ResidentDep, services: ServicesDep
             ) -> dict[str, Any]:
    """Appends a ``proxy.registered`` entry (operator-signed; its payload holds only salted
    digests of who is who). 422 ``invalid-proxy`` for a certificate the resident CA did not
    issue, a revoked one, your own, or an unknown relationship; 409 if already registered."""
    if resident.subject.startswith(PROXY_IDENTITY_PREFIX):
        raise Forbidden("a proxy identity has no records of its own and cannot name proxies")
    return dict(register_proxy(services, resident.subject, body.certificate,
                               body.relationship).to_json())


def register_proxy(services: Services, principal: str, certificate: str, relationship: str
                   ) -> ProxyRegistration:
    """Register the holder of ``certificate`` (issued by a trusted resident CA) as
    ``principal``'s proxy; a certificate already registered (a parent's own card) makes its
    holder the proxy, any other becomes a new proxy identity. The API and the pages share it."""
    if relationship not in RELATIONSHIPS:
        raise InvalidProxy(f"relationship must be one of {sorted(RELATIONSHIPS)}")
    try:
        cert = parse_certificate(certificate)
        check_certificate(cert, services.anchors)
    except Unauthenticated as exc:
        raise InvalidProxy(f"the proxy's certificate cannot be used: {exc}") from None
    holder = _holder_of(services, fingerprint(cert))
    if holder is None:
        holder = new_proxy_identity()
        services.credentials.register(cert, holder)
    registration, _ = services.ledger.register_proxy(principal, holder, relationship)
    return registration


def _holder_of(services: Services, cert_sha256: str) -> str | None:
    t = resident_credential.c
    with services.ledger.log.transaction(commit=False) as session:
        row = session.execute(select(t.subject, t.revoked_at).where(
            t.cert_sha256 == cert_sha256)).first()
    if row is not None and row.revoked_at is not None:
        raise InvalidProxy("the proxy's certificate is revoked; ask for their current one")
    return None if row is None else str(row.subject)


@router.get("/v1/me/proxies", response_model=ProxyList,
            responses=problems.responses(401, 403), summary="My proxies in force")
def list_mine(resident: ResidentDep, services: ServicesDep) -> dict[str, Any]:
    return {"proxies": [r.to_json() for r in list_for_principal(services.ledger,
                                                                resident.subject)]}


@router.delete("/v1/me/proxies/{registration_id}", response_model=ProxyOut,
               responses=problems.responses(400, 401, 403, 404),
               summary="Cancel one of my proxies")
def cancel(registration_id: UUID, resident: ResidentDep, services: ServicesDep
           ) -> dict[str, Any]:
    """Appends a ``proxy.cancelled`` entry; the proxy loses access at once. Another
    resident's registration answers 404 exactly like a missing or cancelled one."""
    services.ledger.cancel_proxy(str(registration_id), by="principal", reason="principal_request",
                                 principal=resident.subject)
    cancelled = [r for r in list_for_principal(services.ledger, resident.subject,
                                               include_cancelled=True)
                 if r.id == str(registration_id)]
    return dict(cancelled[0].to_json())


# The proxy -------------------------------------------------------------------------------------
@router.get("/v1/proxy/principals", response_model=PrincipalList,
            responses=problems.responses(401, 403),
            summary="Whom I act for as a proxy",
            response_description="Handles are opaque and valid for this proxy only")
def principals(holder: HolderDep, services: ServicesDep) -> dict[str, Any]:
    return {"principals": [_principal_json(r) for r in list_for_holder(services.ledger, holder)]}


def _principal_json(registration: ProxyRegistration) -> dict[str, Any]:
    return {"handle": registration.id, "relationship": registration.relationship,
            "registered_at": registration.registered_at}


Handle = Annotated[str, Path(max_length=64, description="A handle from /v1/proxy/principals")]


@router.get("/v1/proxy/principals/{handle}/provisions", response_model=RecordPage,
            responses=problems.responses(400, 401, 403, 404, 503),
            summary="A principal's records, as they see them (newest first)")
def principal_provisions(
    handle: Handle, holder: HolderDep, services: ServicesDep,
    since: Annotated[datetime | None, Query(description="Request time at or after (RFC 3339)")
                     ] = None,
    until: Annotated[datetime | None, Query(description="… and before this time")] = None,
    agency: Annotated[str | None, Query(max_length=64)] = None,
    affair: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The same page as the principal's GET /v1/me/provisions: records withheld by a flag
    (不開示, 自己情報提供不可) or not yet disclosed never appear."""
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidParameter(f"{name} needs a UTC offset, e.g. 2026-06-01T00:00:00Z")
    subject = _principal(services, holder, handle)
    try:
        page = _records(services).list(subject, since=since, until=until, agency=agency,
                                       affair=affair, cursor=cursor, limit=limit)
    except ValueError as exc:
        raise InvalidParameter(str(exc)) from None
    return dict(page.to_json())


@router.get("/v1/proxy/principals/{handle}/provisions/{provision_id}",
            response_model=RecordDetail, responses=problems.responses(400, 401, 403, 404, 503),
            summary="One of a principal's records, with what is needed to verify it")
def principal_provision(handle: Handle, provision_id: UUID, holder: HolderDep,
                        services: ServicesDep) -> dict[str, Any]:
    """As GET /v1/me/provisions/{id} for the principal; a withheld record, another resident's
    or a missing one all answer 404."""
    subject = _principal(services, holder, handle)
    record = _records(services).get(subject, provision_id)
    if record is None:
        raise ResourceNotFound(f"no record {provision_id} of this principal")
    ledger = services.ledger
    line = next(iter(ledger.export(record.index, record.index + 1)), None)
    if line is None:
        raise ResourceNotFound(f"no record {provision_id} of this principal")
    settings = services.settings
    covering = checkpoint_for_proof(ledger, settings.witness_list(), settings.quorum,
                                    record.index)
    inclusion = ledger.prove_inclusion(record.index, covering[1]) if covering else None
    return {"record": record.to_json(), "leaf": line["leaf"], "leaf_hash": line["leaf_hash"],
            "payload": line["payload"], "salt": line["salt"],
            "checkpoint": covering[0] if covering else None, "inclusion": inclusion,
            "vkey": ledger.vkey}
