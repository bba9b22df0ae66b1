"""The log itself, for auditors, witnesses, monitors and anyone verifying.

Public (no credential): checkpoints, checkpoint history, inclusion and consistency proofs and the
operator's vkey. They carry hashes, sizes and signatures only, never personal data, and a
transparency log is only useful if anyone can check it. Auditors only: entries (the export
format), because export lines carry payloads — residents' pseudonyms and what was provided.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api import problems
from api.deps import AuditorDep, LedgerDep, ServicesDep
from api.errors import InvalidParameter, ResourceNotFound, Unavailable
from api.models import CheckpointList, ConsistencyProof, InclusionProof, LogInfo
from api.witnessing import witnessed_note
from ledger.application import Ledger

router = APIRouter(prefix="/v1/log", tags=["log"])

MAX_EXPORT_SPAN = 1_000_000


async def public_read(ledger: Ledger, read: Callable[..., dict[str, Any]], *args: Any) -> Response:
    """Answer a public log read (size, proofs) as JSON; the routes' response models document it.

    Each is a few hundred microseconds of work. On the embedded SQLite database it runs on the
    event loop itself: in the thread pool, two at once in one worker fought over the interpreter
    lock (sqlite3 gives it up at every step of a query) and each took four times as long
    (bench_api --proofs with one worker and two connections: server p50 2.5 ms and p99 10 ms,
    against 0.6 and 2.5 ms on the loop). A WAL-mode reader never waits for the writer, so this
    does not stall the loop behind appends. On PostgreSQL a read waits on the network and goes
    to the thread pool as before."""
    if ledger.embedded:
        result = read(*args)
    else:
        result = await run_in_threadpool(read, *args)
    return Response(orjson.dumps(result), media_type="application/json")


def log_info(ledger: Ledger) -> dict[str, Any]:
    return {"origin": ledger.origin, "vkey": ledger.vkey, "tree_size": ledger.tree_size()}


@router.get("", response_model=LogInfo, summary="Origin, operator vkey and current size")
async def info(ledger: LedgerDep) -> Response:
    return await public_read(ledger, log_info, ledger)


@router.get("/checkpoint", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"example": "kiroku.local/log\n1042\n"
                                                          "base64root=\n\n— kiroku.local/log "
                                                          "sig\n"}}},
                       **problems.responses(404)},
            summary="The latest signed checkpoint (C2SP tlog-checkpoint signed note)")
def checkpoint(ledger: LedgerDep) -> PlainTextResponse:
    latest = ledger.latest_checkpoint()
    if latest is None:
        raise ResourceNotFound("no checkpoint has been signed yet")
    return PlainTextResponse(latest.note, media_type="text/plain; charset=utf-8")


@router.get("/checkpoint/witnessed", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"example": "kiroku.local/log\n1042\n"
                                                          "base64root=\n\n— kiroku.local/log "
                                                          "sig\n— witness.example/w1 cosig\n"}}},
                       **problems.responses(404, 503)},
            summary="The latest checkpoint cosigned by k of the n configured witnesses")
def witnessed_checkpoint(services: ServicesDep) -> PlainTextResponse:
    """The operator's signed checkpoint with the witnesses' tlog-cosignature/v1 lines appended
    (signed-note allows several signature lines; verifiers ignore keys they do not know). 404
    when the log has no witnesses configured, 503 until k of them cosigned a checkpoint."""
    settings = services.settings
    witnesses = settings.witness_list()
    if not witnesses:
        raise ResourceNotFound("this log has no witnesses configured (KIROKU_WITNESSES)")
    note = witnessed_note(services.ledger, witnesses, settings.quorum)
    if note is None:
        raise Unavailable(f"no checkpoint has been cosigned by {settings.quorum} of the "
                          f"{len(witnesses)} witnesses yet")
    return PlainTextResponse(note, media_type="text/plain; charset=utf-8")


@router.get("/checkpoints", response_model=CheckpointList,
            summary="Checkpoint history, newest first")
def checkpoints(ledger: LedgerDep,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    return {"checkpoints": ledger.list_checkpoints(limit)}


@router.get("/proof/inclusion", response_model=InclusionProof,
            responses=problems.responses(400), summary="RFC 9162 inclusion proof")
async def proof_inclusion(ledger: LedgerDep,
                          index: Annotated[int, Query(ge=0, le=2**62,
                                                      description="0-based leaf index")],
                          size: Annotated[int | None, Query(ge=1, le=2**62, description="Tree "
                                                            "size (default: the current size)")
                                          ] = None,
                          ) -> Response:
    return await public_read(ledger, ledger.prove_inclusion, index, size)


@router.get("/proof/consistency", response_model=ConsistencyProof,
            responses=problems.responses(400), summary="RFC 9162 consistency proof")
async def proof_consistency(ledger: LedgerDep,
                            old: Annotated[int, Query(ge=1, le=2**62)],
                            new: Annotated[int | None, Query(ge=1, le=2**62)] = None,
                            ) -> Response:
    return await public_read(ledger, ledger.prove_consistency, old, new)


@router.get("/entries", response_class=StreamingResponse,
            responses={200: {"description": "JSON Lines, one export line per entry "
                             "(docs/log-format.md, 'Export')",
                             "content": {"application/jsonl": {"example":
                                         '{"index":0,"leaf":"…","leaf_hash":"…","payload":{…},'
                                         '"salt":"…","erased":false}\n'}}},
                       **problems.responses(400, 401, 403)},
            summary="Entries start..end (exclusive), streamed as `kiroku log export` writes them")
def entries(ledger: LedgerDep, _auditor: AuditorDep,
            start: Annotated[int, Query(ge=0, le=2**62)] = 0,
            end: Annotated[int | None, Query(ge=0, le=2**62)] = None) -> StreamingResponse:
    size = ledger.tree_size()
    end = size if end is None else end
    if not start <= end <= size:
        raise InvalidParameter(f"need 0 <= start <= end <= {size}, got start={start} end={end}")
    if end - start > MAX_EXPORT_SPAN:
        raise InvalidParameter(f"at most {MAX_EXPORT_SPAN} entries per request")

    def lines() -> Iterator[bytes]:
        for line in ledger.export(start, end):
            yield (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/jsonl",
                             headers={"X-Kiroku-Tree-Size": str(size)})
