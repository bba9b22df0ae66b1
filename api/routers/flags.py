"""Flags on provisions after they were recorded: 不開示 (non-disclosure), 自己情報提供不可 (the
self-information block) and delayed disclosure (docs/api.md, "Flags").

Agencies submit ``provision.flagged`` statements as they submit provisions: the statement's own
Ed25519 signature is the authentication, and the ledger decides who may flag (the provision's
requester or provider, or an authority). Auditors read a provision's flag history, because a
withheld record is hidden from its resident and their proxies but never from supervision.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api import problems
from api.bodies import read_json
from api.deps import AuditorDep, ServicesDep
from api.errors import MalformedJson, ResourceNotFound
from api.models import STATEMENT_SCHEMA, Entry
from ledger.application import Receipt

router = APIRouter(tags=["flags"])

FLAG_STATEMENT_EXAMPLE: dict[str, Any] = {
    "statement": {"v": 1, "kind": "provision.flagged", "agency": "131121",
                  "key_id": "9f2c4b1a0d3e5f67", "time": "2026-06-11T00:10:00Z",
                  "commitment": "q1Jm3Yf0m2k8ZL0lX9dKc3o4n5p6r7s8t9u0v1w2x3Y="},
    "signature": "base64 Ed25519 signature of the RFC 8785 JSON of 'statement'",
    "payload": {"provision": "5f0c9e1e-2d7b-5c43-9a51-8d1f6f7d1b2a", "flag": "non_disclosure",
                "set": True, "reason": "criminal_investigation",
                "disclose_after": "2026-12-31T15:00:00Z"},
    "salt": "base64 of 32 random bytes",
}
_FLAG_SCHEMA = {**STATEMENT_SCHEMA, "example": FLAG_STATEMENT_EXAMPLE}


class FlagReceipt(BaseModel):
    """Where the flag statement sits in the log. ``provision`` is the flagged provision's id;
    the entry's inclusion proof: GET ``inclusion_url`` once a checkpoint covers ``index``."""

    provision: str = Field(examples=["5f0c9e1e-2d7b-5c43-9a51-8d1f6f7d1b2a"])
    index: int = Field(examples=[1043])
    leaf_hash: str = Field(examples=["ZmFrZWhhc2hmYWtlaGFzaGZha2VoYXNoZmFrZWhhc2g="])
    leaf: str = Field(description="base64 of the exact leaf bytes (RFC 8785 JSON)")
    entry: Entry
    inclusion_url: str = Field(examples=["/v1/log/proof/inclusion?index=1043"])


class FlagChange(BaseModel):
    index: int = Field(description="Log index of the entry that made the change")
    flag: str = Field(examples=["non_disclosure"])
    set: bool = Field(examples=[True])
    reason: str = Field(examples=["criminal_investigation"])
    disclose_after: str | None = Field(examples=["2026-12-31T15:00:00Z"])
    agency: str = Field(description="Who signed it", examples=["131121"])
    role: str = Field(description="requester, provider or authority", examples=["provider"])
    time: str = Field(examples=["2026-06-11T00:10:00Z"])
    logged_at: str = Field(examples=["2026-06-11T00:10:01Z"])


class FlagHistory(BaseModel):
    """A provision's flags: every change in log order (``recorded``: set by the provision's own
    payload), the flags in force now (flag → ``disclose_after``, null: until lifted), and
    whether the record is withheld from its resident and their proxies now."""

    model_config = ConfigDict(json_schema_extra={"example": {
        "provision": "5f0c9e1e-2d7b-5c43-9a51-8d1f6f7d1b2a", "index": 1041,
        "requester": "KYOKAI", "provider": "131121",
        "in_force": {"non_disclosure": "2026-12-31T15:00:00Z"}, "withheld": True,
        "changes": [{"index": 1043, "flag": "non_disclosure", "set": True,
                     "reason": "criminal_investigation", "disclose_after": "2026-12-31T15:00:00Z",
                     "agency": "131121", "role": "provider", "time": "2026-06-11T00:10:00Z",
                     "logged_at": "2026-06-11T00:10:01Z"}]}})

    provision: str
    index: int
    requester: str
    provider: str
    in_force: dict[str, str | None]
    withheld: bool
    changes: list[FlagChange]


def flag_receipt_json(receipt: Receipt) -> dict[str, Any]:
    body = receipt.to_json()
    return {"provision": body["id"], "index": body["index"], "leaf_hash": body["leaf_hash"],
            "leaf": body["leaf"], "entry": body["entry"],
            "inclusion_url": f"/v1/log/proof/inclusion?index={receipt.index}"}


@router.post(
    "/v1/flags", status_code=201, response_model=FlagReceipt,
    responses=problems.responses(400, 403, 409, 413, 422, 503),
    summary="Set or lift a flag on a provision (one signed provision.flagged statement)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": _FLAG_SCHEMA, "example": FLAG_STATEMENT_EXAMPLE}}}},
)
async def append_flag(request: Request, services: ServicesDep) -> JSONResponse:
    """Refused with ``unknown-provision`` (422), ``flag-submitter-not-allowed`` (403: neither
    the provision's requester or provider nor an authority), ``unknown-flag`` or
    ``unknown-reason`` (422), ``flag-not-set`` (409: a lift of a flag not in force), or any
    statement refusal of POST /v1/provisions. The same statement again gets the same receipt."""
    submission = await read_json(request)
    if not isinstance(submission, dict):
        raise MalformedJson("send one flag statement object")
    receipt = await run_in_threadpool(services.ledger.append_flag, submission)
    return JSONResponse(flag_receipt_json(receipt), status_code=201)


@router.get(
    "/v1/log/provisions/{provision_id}/flags", response_model=FlagHistory,
    responses=problems.responses(400, 401, 403, 404),
    summary="A provision's flag history (auditors)",
)
def flag_history(provision_id: UUID, _auditor: AuditorDep, services: ServicesDep
                 ) -> dict[str, Any]:
    """Who set or lifted which flag, when and why, read from the log itself; 404 for a
    provision the log does not hold or whose payload was erased at the end of retention."""
    history = services.ledger.get_flag_history(provision_id)
    if history is None:
        raise ResourceNotFound(f"no provision {provision_id} with its payload in the log")
    return dict(history.to_json())
