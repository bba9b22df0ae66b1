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


_NOTE = ("kiroku.example/log/completeness/v1\n1050\nb3JpZ2luYWwgcm9vdCBvZiB0aGUgbG9nIHRyZWU=\n"
         "aW5kZXggcm9vdCBvZiB0aGUgc3BhcnNlIHRyZWU=\n\n— kiroku.example/log q2Rl…\n")
_EXAMPLE: dict[str, Any] = {
    "index_note": _NOTE,
    "checkpoint": "kiroku.example/log\n1050\nb3JpZ2luYWwgcm9vdCBvZiB0aGUgbG9nIHRyZWU=\n\n"
                  "— kiroku.example/log q2Rl…\n",
    "key_note": "kiroku.example/log/completeness-key/v1\n…\n\n— kiroku.example/log q2Rl…\n",
    "index_key": "3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w0=",
    "blind": "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=",
    "records": [{"index": 666, "leaf_hash": "p0N1hi/qsmAhlEXxLO9j71YEUtCxBcRsqJ0Mp79Ed9s="}],
    "siblings": ["UgLDo4N7/p/Gm+f+Y1NgeHtHzFROSd97PdryBHHhqcI="],
    "neighbour": None,
    "vkey": "kiroku.example/log+83a1efb7+AaUXv7OZPaeeVPJ/g4j+vzHS+1YWattHRwO8mKPrLRrx",
}


@router.get("/completeness",
            responses={**problems.responses(401, 403, 404),
                       200: {"content": {"application/json": {"example": _EXAMPLE}}}},
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
