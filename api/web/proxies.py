"""Proxies (代理人) in the pages: a resident names and cancels proxies; a proxy reads each
principal's records, verified in the browser exactly like the principal's own.

The API's rules hold here (api/routers/proxies.py, ledger/proxies.py): registrations and
cancellations are log entries; a proxy reaches a principal only through an opaque per-proxy
handle, never the pseudonym; what a principal would not see (flags, records not yet disclosed)
the proxy does not see either; a cancelled, missing or someone else's handle answers 404 alike.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from api.deps import ServicesDep
from api.errors import ResourceNotFound
from api.routers.proxies import register_proxy as register_for
from api.services import Services
from api.web import sessions
from api.web.pages import PageNotFound, ResidentPage
from api.web.render import render
from api.web.resident import detail_page, list_page, verification
from ledger.errors import LedgerError
from ledger.proxies import (
    PROXY_IDENTITY_PREFIX,
    RELATIONSHIPS,
    InvalidProxy,
    ProxyRegistration,
    get_for_holder,
    list_for_holder,
    list_for_principal,
)

router = APIRouter(include_in_schema=False)
MAX_CERTIFICATE = 16384


# The principal ---------------------------------------------------------------------------------
@router.get("/me/proxies")
def my_proxies(request: Request, resident: ResidentPage, services: ServicesDep) -> Response:
    return _proxies_page(request, resident, services)


def _proxies_page(request: Request, resident: Any, services: Services, status: int = 200,
                  notice: str | None = None, error: str | None = None) -> Response:
    own = not str(resident.subject).startswith(PROXY_IDENTITY_PREFIX)
    registrations = list_for_principal(services.ledger, str(resident.subject)) if own else []
    return render(request, "me_proxies.html", status, session=resident,
                  title_key="proxies_title", registrations=registrations, own=own,
                  relationships=sorted(RELATIONSHIPS), notice=notice, error=error)


@router.post("/me/proxies")
async def register_proxy(request: Request, resident: ResidentPage, services: ServicesDep,
                         csrf: Annotated[str, Form(max_length=64)],
                         relationship: Annotated[str, Form(max_length=64)],
                         certificate: Annotated[UploadFile, File()]) -> Response:
    sessions.check_csrf(request, csrf)
    pem = (await certificate.read(MAX_CERTIFICATE + 1)).decode("utf-8", "replace")
    try:
        if len(pem) > MAX_CERTIFICATE:
            raise InvalidProxy("the certificate file is too large")
        _register(services, str(resident.subject), pem, relationship)
    except (InvalidProxy, LedgerError) as exc:
        return _proxies_page(request, resident, services, 422, error=str(exc))
    return RedirectResponse("/me/proxies?done=registered", status_code=303)


def _register(services: Services, principal: str, pem: str, relationship: str) -> None:
    if principal.startswith(PROXY_IDENTITY_PREFIX):
        raise InvalidProxy("a proxy identity has no records of its own and cannot name proxies")
    register_for(services, principal, pem, relationship)


@router.post("/me/proxies/{registration_id}/cancel")
def cancel_proxy(request: Request, registration_id: str, resident: ResidentPage,
                 services: ServicesDep, csrf: Annotated[str, Form(max_length=64)]) -> Response:
    sessions.check_csrf(request, csrf)
    try:
        services.ledger.cancel_proxy(str(UUID(registration_id)), by="principal",
                                     reason="principal_request",
                                     principal=str(resident.subject))
    except (ValueError, ResourceNotFound, LedgerError):
        raise PageNotFound() from None
    return RedirectResponse("/me/proxies?done=cancelled", status_code=303)


# The proxy -------------------------------------------------------------------------------------
@router.get("/proxy")
def principals(request: Request, holder: ResidentPage, services: ServicesDep) -> Response:
    found = list_for_holder(services.ledger, str(holder.subject))
    return render(request, "proxy_principals.html", session=holder,
                  title_key="principals_title", principals=found)


def _acting(services: Services, holder: Any, handle: str) -> ProxyRegistration:
    try:
        handle = str(UUID(handle))
    except ValueError:
        raise PageNotFound() from None
    found = get_for_holder(services.ledger, str(holder.subject), handle)
    if found is None:
        raise PageNotFound()
    return found


@router.get("/proxy/{handle}")
def principal_records(request: Request, handle: str, holder: ResidentPage,
                      services: ServicesDep) -> Response:
    acting = _acting(services, holder, handle)
    return list_page(request, holder, services, acting.principal, f"/proxy/{acting.id}",
                     acting=acting)


@router.get("/proxy/{handle}/records/{record_id}")
def principal_record(request: Request, handle: str, record_id: str, holder: ResidentPage,
                     services: ServicesDep) -> Response:
    acting = _acting(services, holder, handle)
    return detail_page(request, holder, services, acting.principal, f"/proxy/{acting.id}",
                       record_id, acting=acting)


@router.get("/proxy/{handle}/verification")
def principal_verification(request: Request, handle: str, holder: ResidentPage,
                           services: ServicesDep) -> Response:
    acting = _acting(services, holder, handle)
    return verification(request, services, acting.principal)
