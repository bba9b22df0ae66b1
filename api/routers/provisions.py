"""Agencies append signed provision statements (docs/api.md, "Appending").

The statement's own Ed25519 signature, by a key registered to the submitting agency, is the
authentication: no other credential is needed, and none would add anything. Replays are harmless
by construction: a statement's id is derived from (agency, request_id), so the same statement
again appends nothing and gets the same receipt, and a different statement under a used request
id is refused (409). Statement times may not lie in the future (5 min skew) nor before the key's
validity or after its revocation.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api import problems
from api.bodies import read_json
from api.deps import AgencyOrAuditorDep, ServicesDep
from api.errors import MalformedJson, ProofPending, ResourceNotFound
from api.models import STATEMENT_EXAMPLE, STATEMENT_SCHEMA, BatchReceipt, Receipt
from api.receipts import receipt_json
from ledger.application import MAX_BATCH
from ledger.errors import BatchTooLarge

router = APIRouter(prefix="/v1/provisions", tags=["agencies"])

_REFUSALS = problems.responses(400, 403, 409, 413, 422, 503)


@router.post(
    "", status_code=201, response_model=Receipt, responses=_REFUSALS,
    summary="Append one signed provision statement",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": STATEMENT_SCHEMA, "example": STATEMENT_EXAMPLE}}}},
)
async def append_one(
    request: Request, services: ServicesDep,
    wait: Annotated[bool, Query(description="Hold the answer until a signed checkpoint covers "
                                "the entry (at most about KIROKU_CHECKPOINT_INTERVAL), so the "
                                "receipt carries its inclusion proof")] = False,
) -> JSONResponse:
    """Validates the statement (shape, agency, key, signature, commitment, legal basis) and
    appends it. Re-submitting the same statement returns the same receipt (200 instead of 201
    is not signalled: the receipt is identical)."""
    submission = await read_json(request)
    if isinstance(submission, list):
        raise MalformedJson("send one statement object here; arrays go to /v1/provisions/batch")
    receipt = await run_in_threadpool(services.appender.one, submission)
    ledger = services.ledger
    if not wait:
        # A fresh entry is never under an existing checkpoint: answer at once, proof later.
        return JSONResponse(receipt_json(ledger, receipt, None), status_code=201)
    checkpoint = await run_in_threadpool(ledger.latest_checkpoint)
    if checkpoint is None or checkpoint.size <= receipt.index:
        deadline = time.monotonic() + 2 * services.settings.checkpoint_interval + 1
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.05, services.settings.checkpoint_interval / 4))
            checkpoint = await run_in_threadpool(ledger.latest_checkpoint)
            if checkpoint is not None and checkpoint.size > receipt.index:
                break
    body = await run_in_threadpool(receipt_json, ledger, receipt, checkpoint)
    return JSONResponse(body, status_code=201)


@router.post(
    "/batch", status_code=201, response_model=BatchReceipt, responses=_REFUSALS,
    summary=f"Append up to {MAX_BATCH} statements, all or nothing",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "array", "maxItems": MAX_BATCH, "items": STATEMENT_SCHEMA},
        "example": [STATEMENT_EXAMPLE]}}}},
)
async def append_batch(request: Request, services: ServicesDep) -> JSONResponse:
    """Either every statement is appended, in order, or none is: a refusal answers 422 with
    ``errors`` listing each refused statement (``index`` = its position here) and its problem
    type. A checkpoint is signed right after the batch and returned with the receipts."""
    submissions = await read_json(request)
    if not isinstance(submissions, list):
        raise MalformedJson("the body must be a JSON array of statements")
    if len(submissions) > MAX_BATCH:
        raise BatchTooLarge(f"a batch holds at most {MAX_BATCH} statements, got "
                            f"{len(submissions)}")
    receipts = await run_in_threadpool(services.appender.batch, submissions)
    ledger = services.ledger
    checkpoint = await run_in_threadpool(ledger.latest_checkpoint)
    items = [receipt_json(ledger, r, checkpoint, with_proof=False) for r in receipts]
    body: dict[str, Any] = {"count": len(items), "tree_size": checkpoint.size if checkpoint else 0,
                            "checkpoint": checkpoint.note if checkpoint else None,
                            "receipts": items}
    return JSONResponse(body, status_code=201)


@router.get(
    "/{provision_id}/receipt", response_model=Receipt,
    responses=problems.responses(401, 403, 404),
    summary="A statement's receipt with its inclusion proof",
)
def get_receipt(provision_id: UUID, services: ServicesDep, caller: AgencyOrAuditorDep
                ) -> dict[str, Any]:
    """For the agency that submitted the statement, or an auditor. Answers 404 with problem
    type ``proof-pending`` (and ``Retry-After``) while no checkpoint covers the entry yet."""
    receipt = services.receipt_by_id(provision_id)
    # Another agency's statement answers exactly like a missing one: ids are derived from
    # (agency, request id), so a distinct answer would confirm another agency's request ids.
    if receipt is None or (caller.kind == "agency" and receipt.entry.get("agency") != caller.name):
        raise ResourceNotFound(f"no provision statement {provision_id} of yours")
    checkpoint = services.ledger.latest_checkpoint()
    if checkpoint is None or checkpoint.size <= receipt.index:
        raise ProofPending(f"entry {receipt.index} is logged; a checkpoint covering it is "
                           "signed within KIROKU_CHECKPOINT_INTERVAL",
                           services.settings.checkpoint_interval)
    return receipt_json(services.ledger, receipt, checkpoint)
