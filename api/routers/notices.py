"""Notices (お知らせ, docs/notices.md): agencies issue signed notices and keep the attributes group
notices are matched against; residents, and their proxies, read them and mark them read.

An agency submits a ``notice.issued`` statement as it submits provisions (its Ed25519 signature
authenticates it). It reads its own notices with delivery counts (how many residents a notice
applies to, how many marked it read), never who read what; auditors read any agency's.
A proxy (代理人) reads the notices of a principal through its handle and may mark them read for
them: My Portal lets a representative act for the person, and a read mark is shared, so the
principal sees what their representative has already seen.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api import problems
from api.bodies import read_json
from api.deps import AgencyOrAuditorDep, ResidentDep, ServicesDep
from api.errors import Forbidden, MalformedJson, ResourceNotFound, Unavailable
from api.models import STATEMENT_SCHEMA, Entry
from api.routers.proxies import Handle, HolderDep
from api.services import Services
from ledger.notices import append_notice, set_attributes
from ledger.proxies import get_for_holder

router = APIRouter(tags=["notices"])

NOTICE_STATEMENT_EXAMPLE: dict[str, Any] = {
    "statement": {"v": 1, "kind": "notice.issued", "agency": "131121",
                  "key_id": "9f2c4b1a0d3e5f67", "time": "2026-06-11T00:10:00Z",
                  "commitment": "q1Jm3Yf0m2k8ZL0lX9dKc3o4n5p6r7s8t9u0v1w2x3Y="},
    "signature": "base64 Ed25519 signature of the RFC 8785 JSON of 'statement'",
    "payload": {"notice_id": "vaccination-2026-06-03", "category": "vaccination",
                "title": {"ja": "予防接種のお知らせ", "en": "Vaccination due"},
                "body": {"ja": "お子さまの定期予防接種の時期です。"},
                "valid_from": "2026-06-11T00:00:00Z", "valid_until": "2026-09-30T15:00:00Z",
                "target": {"type": "group",
                           "criteria": {"age_band": "0-5", "district": "131121-03"}},
                "form": {"id": "vaccination-voucher", "url": "https://example.city.lg.jp/form"}},
    "salt": "base64 of 32 random bytes",
}
_NOTICE_SCHEMA = {**STATEMENT_SCHEMA, "example": NOTICE_STATEMENT_EXAMPLE}
_NOTICE_EXAMPLE: dict[str, Any] = {
    "id": "0b1f7f0e-3c55-5f57-9a7e-0d3f1c2b4a59", "index": 1050, "agency": "131121",
    "notice_id": "vaccination-2026-06-03", "category": "vaccination",
    "title": {"ja": "予防接種のお知らせ", "en": "Vaccination due"},
    "body": {"ja": "お子さまの定期予防接種の時期です。"},
    "valid_from": "2026-06-11T00:00:00Z", "valid_until": "2026-09-30T15:00:00Z",
    "target": "group", "form": {"id": "vaccination-voucher",
                                "url": "https://example.city.lg.jp/form"},
    "issued_at": "2026-06-11T00:10:00Z", "read_at": None}


class NoticeReceipt(BaseModel):
    """Where the notice statement sits in the log; ``id`` is the notice's id."""

    id: str = Field(examples=["0b1f7f0e-3c55-5f57-9a7e-0d3f1c2b4a59"])
    index: int = Field(examples=[1050])
    leaf_hash: str = Field(examples=["ZmFrZWhhc2hmYWtlaGFzaGZha2VoYXNoZmFrZWhhc2g="])
    leaf: str = Field(description="base64 of the exact leaf bytes (RFC 8785 JSON)")
    entry: Entry
    inclusion_url: str = Field(examples=["/v1/log/proof/inclusion?index=1050"])


class NoticeOut(BaseModel):
    """A notice as its reader sees it (``read_at``: when the resident marked it read)."""

    model_config = ConfigDict(json_schema_extra={"example": _NOTICE_EXAMPLE})

    id: str
    index: int
    agency: str
    notice_id: str
    category: str
    title: dict[str, str]
    body: dict[str, str]
    valid_from: str
    valid_until: str
    target: str = Field(description="individual or group")
    form: dict[str, str] | None
    issued_at: str
    read_at: str | None


class NoticeList(BaseModel):
    """Notices in their validity period that apply to the resident: unread first, then
    newest first."""

    model_config = ConfigDict(json_schema_extra={"example": {"items": [_NOTICE_EXAMPLE],
                                                             "unread": 1}})

    items: list[NoticeOut]
    unread: int


class Delivery(BaseModel):
    applies_to: int = Field(description="Residents the notice applies to now", examples=[412])
    read: int = Field(description="Residents who marked it read", examples=[97])


class AgencyNotice(BaseModel):
    id: str
    index: int
    agency: str
    notice_id: str
    category: str
    title: dict[str, str]
    body: dict[str, str]
    valid_from: str
    valid_until: str
    target: str
    criteria: dict[str, str] | None = None
    form: dict[str, str] | None
    issued_at: str
    delivery: Delivery


class AgencyNotices(BaseModel):
    """The agency's notices, newest first, with counts only: never who read what."""

    model_config = ConfigDict(json_schema_extra={"example": {"agency": "131121", "notices": [{
        **{k: v for k, v in _NOTICE_EXAMPLE.items() if k != "read_at"},
        "criteria": {"age_band": "0-5", "district": "131121-03"},
        "delivery": {"applies_to": 412, "read": 97}}]}})

    agency: str
    notices: list[AgencyNotice]


class Attributes(BaseModel):
    """What the agency holds about one of its residents, for matching group notices. Every
    call replaces the whole row (a missing attribute becomes unknown)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "birth_date": "2022-04-01", "municipality": "131121", "district": "131121-03",
        "household_type": "with_children"}})

    birth_date: str | None = Field(None, max_length=10, description="YYYY-MM-DD")
    municipality: str | None = Field(None, max_length=32)
    district: str | None = Field(None, max_length=64)
    household_type: str | None = Field(None, max_length=32)


class AttributesOut(Attributes):
    model_config = ConfigDict(json_schema_extra={"example": {
        "birth_date": "2022-04-01", "municipality": "131121", "district": "131121-03",
        "household_type": "with_children", "updated_at": "2026-06-11T00:05:00Z"}})

    updated_at: str


def _notices(services: Services) -> Any:
    try:
        from projections.notices import Notices
    except ImportError:  # pragma: no cover  # the service runs without projections/
        raise Unavailable("notices (projections) are not installed") from None
    return Notices.for_ledger(services.ledger)


def _own_agency(services: Services, caller: Any, code: str, *, write: bool) -> None:
    if caller.kind == "auditor" and write:
        raise Forbidden("only the agency itself keeps its residents' attributes")
    if caller.kind == "agency" and caller.name != code:
        raise Forbidden("an agency may use only its own notices and residents")
    if code not in services.ledger.registry.agencies:
        services.ledger.refresh_registry()
        if code not in services.ledger.registry.agencies:
            raise ResourceNotFound("no such agency")


# Agencies ------------------------------------------------------------------------------------
@router.post(
    "/v1/notices", status_code=201, response_model=NoticeReceipt,
    responses=problems.responses(400, 403, 409, 413, 422, 503),
    summary="Issue a notice (one signed notice.issued statement)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": _NOTICE_SCHEMA, "example": NOTICE_STATEMENT_EXAMPLE}}}},
)
async def issue(request: Request, services: ServicesDep) -> JSONResponse:
    """Refused with ``invalid-notice`` (422: category, criteria or validity), ``unknown-link-code``
    or ``link-code-of-another-agency`` (422: an individual target names a code not issued to the
    issuing agency), ``duplicate-conflict`` (409: the notice id was used for another statement),
    or any statement refusal of POST /v1/provisions. The same statement again gets the same
    receipt."""
    submission = await read_json(request)
    if not isinstance(submission, dict):
        raise MalformedJson("send one notice statement object")
    receipt = await run_in_threadpool(append_notice, services.ledger, submission)
    body = receipt.to_json()
    body["inclusion_url"] = f"/v1/log/proof/inclusion?index={receipt.index}"
    return JSONResponse(body, status_code=201)


@router.get("/v1/agencies/{code}/notices", response_model=AgencyNotices,
            responses=problems.responses(400, 401, 403, 404, 503),
            summary="An agency's notices with delivery counts")
def agency_notices(code: Annotated[str, Path(max_length=64)], caller: AgencyOrAuditorDep,
                   services: ServicesDep) -> dict[str, Any]:
    """A signed request by the agency itself, or by an auditor."""
    _own_agency(services, caller, code, write=False)
    return dict(_notices(services).for_agency(code))


@router.put("/v1/agencies/{code}/residents/{link_code}/attributes",
            response_model=AttributesOut, responses=problems.responses(400, 401, 403, 404, 422),
            summary="Keep what the agency holds about one of its residents (for group notices)")
def put_attributes(code: Annotated[str, Path(max_length=64)],
                   link_code: Annotated[str, Path(max_length=64,
                                                  description="The agency's own link code")],
                   body: Attributes, caller: AgencyOrAuditorDep, services: ServicesDep
                   ) -> dict[str, Any]:
    """Only the agency itself, by its own link code for the resident: a code issued to another
    agency is refused (``link-code-of-another-agency``), an unknown one too
    (``unknown-link-code``). The attributes never enter the log or the export."""
    _own_agency(services, caller, code, write=True)
    return set_attributes(services.ledger, code, link_code, body.model_dump())


# Residents -----------------------------------------------------------------------------------
@router.get("/v1/me/notices", response_model=NoticeList,
            responses=problems.responses(400, 401, 403, 503),
            summary="My notices: unread first, then newest")
def my_notices(resident: ResidentDep, services: ServicesDep) -> dict[str, Any]:
    """Individual notices addressed to me and group notices whose criteria my attributes at the
    issuing agency match, while they are valid."""
    return dict(_notices(services).list(resident.subject))


@router.get("/v1/me/notices/{notice_id}", response_model=NoticeOut,
            responses=problems.responses(400, 401, 403, 404, 503), summary="One of my notices")
def my_notice(notice_id: UUID, resident: ResidentDep, services: ServicesDep) -> dict[str, Any]:
    found = _notices(services).get(resident.subject, notice_id)
    if found is None:
        raise ResourceNotFound("no such notice for you now")
    return dict(found)


@router.post("/v1/me/notices/{notice_id}/read", response_model=NoticeOut,
             responses=problems.responses(400, 401, 403, 404, 503),
             summary="Mark one of my notices read (idempotent)")
def read_my_notice(notice_id: UUID, resident: ResidentDep, services: ServicesDep
                   ) -> dict[str, Any]:
    found = _notices(services).mark_read(resident.subject, notice_id)
    if found is None:
        raise ResourceNotFound("no such notice for you now")
    return dict(found)


# Proxies -------------------------------------------------------------------------------------
def _principal(services: Services, holder: str, handle: str) -> str:
    """As api.routers.proxies: one 404 for a cancelled, missing or another proxy's handle."""
    try:
        handle = str(UUID(handle))
    except ValueError:
        raise ResourceNotFound("you act for no principal with this handle") from None
    found = get_for_holder(services.ledger, holder, handle)
    if found is None:
        raise ResourceNotFound("you act for no principal with this handle")
    return found.principal


@router.get("/v1/proxy/principals/{handle}/notices", response_model=NoticeList,
            responses=problems.responses(400, 401, 403, 404, 503),
            summary="A principal's notices, as they see them")
def principal_notices(handle: Handle, holder: HolderDep, services: ServicesDep
                      ) -> dict[str, Any]:
    return dict(_notices(services).list(_principal(services, holder, handle)))


@router.post("/v1/proxy/principals/{handle}/notices/{notice_id}/read",
             response_model=NoticeOut, responses=problems.responses(400, 401, 403, 404, 503),
             summary="Mark a principal's notice read, for them (idempotent)")
def read_principal_notice(handle: Handle, notice_id: UUID, holder: HolderDep,
                          services: ServicesDep) -> dict[str, Any]:
    found = _notices(services).mark_read(_principal(services, holder, handle), notice_id)
    if found is None:
        raise ResourceNotFound("no such notice of this principal now")
    return dict(found)
