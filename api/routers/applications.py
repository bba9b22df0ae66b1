"""E-applications (電子申請, docs/applications.md): residents apply from a notice, signing with
their own credential; the receiving agency records that it took the application and its
decision; partner organisations receive a consented address change and acknowledge it.

Who may do what:
- residents (session): submit an application signed by **their own** certificate (the one their
  session was opened with; another resident's certificate is refused), list theirs, read one as
  a thread. Another resident's application answers 404 like a missing one.
- agencies (signed statements / signed requests): the receiving agency posts
  ``application.received`` / ``application.decided`` statements and reads its inbox; auditors
  read any agency's inbox; other agencies get 403.
- partners (agencies registered with kind ``partner``): read the address changes forwarded to
  them (only consented, approved ones) and post ``application.forwarded`` receipts.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api import problems
from api.bodies import read_json
from api.deps import AgencyOrAuditorDep, ResidentDep, ServicesDep
from api.errors import Forbidden, MalformedJson, ResourceNotFound, Unavailable
from api.models import STATEMENT_SCHEMA
from api.residents import (
    check_certificate,
    fingerprint,
    parse_certificate,
    verify_login_signature,
)
from api.services import Services
from ledger import applications as la

router = APIRouter(tags=["applications"])

_APP_ID = "5c1d6a43-8e0b-5b9f-a7c2-3f4e5d6c7b8a"
_NOTICE_ID = "0b1f7f0e-3c55-5f57-9a7e-0d3f1c2b4a59"
REQUEST_EXAMPLE: dict[str, Any] = {
    "notice": _NOTICE_ID, "form": "address-change",
    "answers": {"new_address": "東京都世田谷区北沢1-2-3", "moved_on": "2026-06-01"},
    "forward": [{"partner": "TOKYOGAS", "consent": True, "customer_number": "1234-5678"}],
    "challenge": "the challenge of POST /v1/auth/challenge"}
SUBMISSION_EXAMPLE: dict[str, Any] = {
    "request": REQUEST_EXAMPLE,
    "certificate": "-----BEGIN CERTIFICATE-----\n…\n-----END CERTIFICATE-----\n",
    "signature": "base64 signature of 'kiroku-application/v1\\n<origin>\\n' + JCS(request)"}
STEP_EXAMPLE: dict[str, Any] = {
    "statement": {"v": 1, "kind": "application.decided", "agency": "131121",
                  "key_id": "9f2c4b1a0d3e5f67", "time": "2026-06-12T00:10:00Z",
                  "commitment": "q1Jm3Yf0m2k8ZL0lX9dKc3o4n5p6r7s8t9u0v1w2x3Y="},
    "signature": "base64 Ed25519 signature of the RFC 8785 JSON of 'statement'",
    "payload": {"application": _APP_ID, "outcome": "approved", "reason": None},
    "salt": "base64 of 32 random bytes"}
_STEP_SCHEMA = {**STATEMENT_SCHEMA, "example": STEP_EXAMPLE}
_AGENCY: dict[str, Any] = {"code": "131121", "name_ja": "世田谷区", "name_en": "Setagaya City"}
_SUMMARY: dict[str, Any] = {
    "id": _APP_ID, "status": "approved", "form": "address-change",
    "form_title": {"ja": "転居届", "en": "Change of address"}, "agency": _AGENCY,
    "notice": _NOTICE_ID, "submitted_index": 2051, "submitted_at": "2026-06-11T09:00:00Z"}


class ApplicationSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": SUBMISSION_EXAMPLE})

    request: dict[str, Any] = Field(description="notice, form, answers, forward (optional) and challenge: exactly what was signed")
    certificate: str = Field(max_length=16 * 1024, description="PEM: the resident's own "
                             "certificate, the one their session was opened with")
    signature: str = Field(max_length=2048)


class ApplicationReceipt(BaseModel):
    id: str = Field(examples=[_APP_ID])
    index: int = Field(examples=[2051])
    leaf_hash: str
    leaf: str
    entry: dict[str, Any]


class ApplicationSummary(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"example": _SUMMARY})

    id: str
    status: str = Field(description="submitted, received, approved or rejected")
    form: str
    agency: dict[str, str]
    notice: str
    submitted_index: int
    submitted_at: str


class ApplicationList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"items": [_SUMMARY]}})

    items: list[ApplicationSummary]


class Thread(ApplicationSummary):
    """notice → application → provisions → decision (and partners' receipts)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"example": {
        **_SUMMARY,
        "notice": {"id": _NOTICE_ID, "agency": _AGENCY, "category": "other",
                   "title": {"ja": "転居の手続き"}, "issued_at": "2026-06-10T00:00:00Z"},
        "answers": REQUEST_EXAMPLE["answers"],
        "steps": [{"step": "submitted", "index": 2051, "logged_at": "2026-06-11T09:00:00Z",
                   "by": {"code": "operator", "name_ja": "operator", "name_en": "operator"}},
                  {"step": "received", "index": 2060, "logged_at": "2026-06-11T10:00:00Z",
                   "by": _AGENCY},
                  {"step": "decided", "index": 2090, "logged_at": "2026-06-12T00:10:00Z",
                   "by": _AGENCY, "outcome": "approved", "reason": None}],
        "provisions": [{"id": "8d7c…", "index": 2071, "requester": _AGENCY}],
        "decision": {"step": "decided", "index": 2090, "outcome": "approved", "reason": None},
        "forwards": [{"partner": {"code": "TOKYOGAS", "name_ja": "東京ガス",
                                  "name_en": "Tokyo Gas"},
                      "received_index": 2101, "received_at": "2026-06-12T01:00:00Z"}]}})

    notice: Any  # type: ignore[assignment]
    answers: dict[str, str] | None
    steps: list[dict[str, Any]]
    provisions: list[dict[str, Any]]
    decision: dict[str, Any] | None
    forwards: list[dict[str, Any]]


class Inbox(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"agency": "131121", "items": [{
        **_SUMMARY, "applicant": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "answers": REQUEST_EXAMPLE["answers"], "forward_to": ["TOKYOGAS"]}]}})

    agency: str
    items: list[dict[str, Any]]


class Forwards(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"partner": "TOKYOGAS", "items": [{
        "application": _APP_ID, "form": "address-change",
        "data": REQUEST_EXAMPLE["answers"], "customer_number": "1234-5678",
        "received_index": None}]}})

    partner: str
    items: list[dict[str, Any]]


class FormOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": la.FORMS["address-change"].to_json()})

    id: str
    title: dict[str, str]
    fields: list[dict[str, Any]]
    forwardable: bool


class Partner(BaseModel):
    code: str
    name_ja: str
    name_en: str


class Partners(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"items": [
        {"code": "TOKYOGAS", "name_ja": "東京ガス", "name_en": "Tokyo Gas"}]}})

    items: list[Partner]


def threads(services: Services) -> Any:
    try:
        from projections.applications import ApplicationThreads
    except ImportError:  # pragma: no cover  # the service runs without projections/
        raise Unavailable("applications (projections) are not installed") from None
    return ApplicationThreads.for_ledger(services.ledger)


def submit_signed(services: Services, subject: str, session_fingerprint: str,
                  body: ApplicationSubmission) -> dict[str, Any]:
    """Every check of a resident's signed application, then the ledger's; shared by the API
    and the web form. The certificate must be the one the session was opened with: a resident
    applies only for themself."""
    if not services.anchors:
        raise Unavailable("no resident CA is configured (KIROKU_RESIDENT_CA)")
    request = body.request  # exactly what was signed
    parsed = la.ApplicationRequest.parse(request)  # shape first: bad input changes nothing
    claims = services.tokens.open("challenge", parsed.challenge)
    cert = parse_certificate(body.certificate)
    check_certificate(cert, services.anchors)
    if fingerprint(cert) != session_fingerprint:
        raise Forbidden("sign with your own certificate, the one you logged in with: an "
                        "application is made only for yourself")
    verify_login_signature(cert, la.signing_message(services.settings.log_origin, request),
                           body.signature)
    services.challenges.check_and_add("challenge", str(claims.get("jti")), float(claims["exp"]))
    _, receipt = la.submit(services.ledger, subject, request, body.certificate,
                               body.signature)
    return receipt.to_json()


def _own(services: Services, caller: Any, code: str, *, auditors: bool) -> None:
    if caller.kind == "auditor" and not auditors:
        raise Forbidden("only the partner itself reads what was forwarded to it")
    if caller.kind == "agency" and caller.name != code:
        raise Forbidden("an agency may read only its own applications")
    if code not in services.ledger.registry.agencies:
        services.ledger.refresh_registry()
        if code not in services.ledger.registry.agencies:
            raise ResourceNotFound("no such agency")


# Public --------------------------------------------------------------------------------------
@router.get("/v1/forms/{form_id}", response_model=FormOut,
            responses=problems.responses(404), summary="A form a notice may invite")
def get_form(form_id: Annotated[str, Path(max_length=128)]) -> dict[str, Any]:
    form = la.FORMS.get(form_id)
    if form is None:
        raise ResourceNotFound("no such form")
    return form.to_json()


@router.get("/v1/partners", response_model=Partners, summary="Registered partner organisations")
def partners(services: ServicesDep) -> dict[str, Any]:
    """Agencies registered with kind ``partner`` (utilities, banks) that an address change may
    be forwarded to, with the resident's consent for each."""
    services.ledger.refresh_registry(force=False)
    return {"items": [{"code": a.code, "name_ja": a.name_ja, "name_en": a.name_en}
                      for a in sorted(services.ledger.registry.agencies.values(),
                                      key=lambda a: a.code) if a.kind == la.PARTNER_KIND]}


# Residents -----------------------------------------------------------------------------------
@router.post("/v1/me/applications", status_code=201, response_model=ApplicationReceipt,
             responses=problems.responses(400, 401, 403, 404, 409, 422, 503),
             summary="Apply from a notice, signed with my own credential")
def apply(body: ApplicationSubmission, resident: ResidentDep, services: ServicesDep
          ) -> JSONResponse:
    """Sign ``"kiroku-application/v1\\n" + origin + "\\n" + JCS(request)`` with the key of the
    certificate you logged in with; ``request.challenge`` comes from POST /v1/auth/challenge and
    is used once. Refused with ``unknown-notice`` (404: no such notice applies to you now),
    ``unknown-form`` (422: the notice does not invite it), ``invalid-application`` (422: answers
    or partners), ``consent-missing`` (422: a partner without ``"consent": true``),
    ``forbidden`` (403: another resident's certificate), ``unauthenticated`` (401: bad
    signature, or the challenge was already used), ``replayed-application`` (409)."""
    receipt = submit_signed(services, resident.subject, resident.fingerprint, body)
    return JSONResponse(receipt, status_code=201)


@router.get("/v1/me/applications", response_model=ApplicationList,
            responses=problems.responses(401, 403, 503), summary="My applications, newest first")
def my_applications(resident: ResidentDep, services: ServicesDep) -> dict[str, Any]:
    return {"items": threads(services).of_resident(resident.subject)}


@router.get("/v1/me/applications/{application_id}", response_model=Thread,
            responses=problems.responses(401, 403, 404, 503),
            summary="One of my applications as a thread: notice → application → provisions → "
                    "decision")
def my_application(application_id: Annotated[str, Path(max_length=64)], resident: ResidentDep,
                   services: ServicesDep) -> dict[str, Any]:
    found = threads(services).thread(resident.subject, application_id)
    if found is None:
        raise ResourceNotFound("no such application of yours")
    return dict(found)


# Agencies and partners -----------------------------------------------------------------------
@router.post(
    "/v1/applications/steps", status_code=201, response_model=ApplicationReceipt,
    responses=problems.responses(400, 403, 409, 413, 422, 503),
    summary="Record a step of an application (received, decided, forwarded)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": _STEP_SCHEMA, "example": STEP_EXAMPLE}}}},
)
async def post_step(request: Request, services: ServicesDep) -> JSONResponse:
    """One signed statement of kind ``application.received`` or ``application.decided`` (by
    the agency the application was made to) or ``application.forwarded`` (by a partner the
    resident consented to, once the application is approved). Refused with
    ``unknown-application``, ``application-of-another`` (403), ``application-state`` (422: out
    of order), ``consent-missing`` (422), ``duplicate-conflict`` (409), or any statement refusal
    of POST /v1/provisions. The same statement again gets the same receipt."""
    submission = await read_json(request)
    if not isinstance(submission, dict):
        raise MalformedJson("send one statement object")
    receipt = await run_in_threadpool(la.append_step, services.ledger, submission)
    return JSONResponse(receipt.to_json(), status_code=201)


@router.get("/v1/agencies/{code}/applications", response_model=Inbox,
            responses=problems.responses(400, 401, 403, 404, 503),
            summary="The applications made to an agency, with their answers")
def inbox(code: Annotated[str, Path(max_length=64)], caller: AgencyOrAuditorDep,
          services: ServicesDep) -> dict[str, Any]:
    """A signed request by the agency itself, or by an auditor. The applicant is named by the
    agency's own link code."""
    _own(services, caller, code, auditors=True)
    return {"agency": code, "items": threads(services).inbox(code)}


@router.get("/v1/partners/{code}/forwards", response_model=Forwards,
            responses=problems.responses(400, 401, 403, 404),
            summary="Address changes forwarded to a partner, with the resident's consent")
def partner_forwards(code: Annotated[str, Path(max_length=64)], caller: AgencyOrAuditorDep,
                     services: ServicesDep) -> dict[str, Any]:
    """A signed request by the partner itself: approved applications whose resident consented
    to this partner, with only the forwardable answers and the customer number given for it."""
    _own(services, caller, code, auditors=False)
    if services.ledger.registry.agencies[code].kind != la.PARTNER_KIND:
        raise ResourceNotFound("no such partner organisation")
    return {"partner": code, "items": la.partner_forwards(services.ledger, code)}
