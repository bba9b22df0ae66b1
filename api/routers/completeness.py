"""A resident's proof that their view is complete (docs/completeness.md "Resident proof").

Like every ``/v1/me`` route, the subject comes from the session, never from the request, so no
parameter can ask for another resident's proof.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api import problems
from api.deps import ResidentDep, ServicesDep

router = APIRouter(prefix="/v1/me", tags=["residents"])


@router.get("/completeness", responses=problems.responses(401, 403, 404),
            summary="Proof that my records up to the latest signed size are all the log holds")
async def get_completeness(resident: ResidentDep, services: ServicesDep) -> dict[str, Any]:
    """The signed index note for the latest indexed tree size (bound to the checkpoint of the
    same size and root, which is included), the operator's signed key note, my index key and
    blind, the (log index, leaf hash) of every disclosed record about me that the index lists,
    and the sparse Merkle path from my key to the signed index root. ``kiroku client resident
    … completeness`` checks it against the records and inclusion proofs I was shown; it holds
    no pseudonym. 404 until the first checkpoint was signed."""
    proof = await run_in_threadpool(services.ledger.completeness.prove, resident.subject)
    return {**proof, "vkey": services.ledger.vkey}
