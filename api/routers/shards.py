"""Every log of the deployment (docs/shards.md): the list of shards and, per shard, what
``/v1/log/…`` serves for the open one: origin and vkey, checkpoints, proofs and entries.

Public, like ``/v1/log``: checkpoints, proofs and the list carry hashes, sizes and signatures
only. Entries carry payloads (pseudonyms), so they are for auditors only, as ``/v1/log/entries``.
A frozen shard serves its final checkpoint and proofs against it for ever; it takes no appends.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

from api import problems
from api.deps import AuditorDep, ServicesDep
from api.errors import ResourceNotFound
from api.models import CheckpointList, ConsistencyProof, InclusionProof, LogInfo
from api.routers import log
from ledger.application import Ledger
from ledger.shards import slug_of, state_of

router = APIRouter(prefix="/v1/shards", tags=["log"])

Slug = Annotated[str, Path(max_length=200, description="The shard's slug (its origin with "
                                                        "'/' as '-'), as GET /v1/shards lists it")]


class PreviousShard(BaseModel):
    origin: str
    size: int
    root: str


class ShardInfo(BaseModel):
    origin: str
    slug: str
    state: str
    tree_size: int
    vkey: str
    previous: PreviousShard | None
    final_checkpoint: str | None
    url: str


class ShardList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {
        "open": "kiroku.example/2027", "shards": [
            {"origin": "kiroku.example/2026", "slug": "kiroku.example-2026", "state": "frozen",
             "tree_size": 1042, "vkey": "kiroku.example/2026+7a1b2c3d+AbC…", "previous": None,
             "final_checkpoint": "kiroku.example/2026\n1042\nbase64root=\n\n— …\n",
             "url": "/v1/shards/kiroku.example-2026/log"},
            {"origin": "kiroku.example/2027", "slug": "kiroku.example-2027", "state": "open",
             "tree_size": 77, "vkey": "kiroku.example/2027+4e5f6a7b+XyZ…",
             "previous": {"origin": "kiroku.example/2026", "size": 1042, "root": "base64root="},
             "final_checkpoint": None, "url": "/v1/shards/kiroku.example-2027/log"}]}})

    open: str
    shards: list[ShardInfo]


def _ledgers(request: Request, services: Any) -> list[Ledger]:
    shard_set = getattr(request.app.state, "shards", None)
    if shard_set is None:
        return [services.ledger]
    return [shard.ledger for shard in shard_set.shards]


def _shard(request: Request, services: Any, slug: str) -> Ledger:
    for ledger in _ledgers(request, services):
        if slug_of(ledger.origin) == slug:
            return ledger
    raise ResourceNotFound(f"this deployment has no shard {slug!r}; GET /v1/shards lists them")


@router.get("", response_model=ShardList, summary="The deployment's logs, oldest first")
def list_shards(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Each log's origin, state (``open`` takes appends, ``frozen`` ended with a final
    checkpoint), size, vkey, the previous shard it continues, and its final checkpoint."""
    found = []
    for ledger in _ledgers(request, services):
        state = state_of(ledger).to_json()
        found.append({**state, "vkey": ledger.vkey,
                      "url": f"/v1/shards/{state['slug']}/log"})
    return {"open": services.ledger.origin, "shards": found}


@router.get("/{slug}/log", response_model=LogInfo, responses=problems.responses(404),
            summary="A shard's origin, operator vkey and size")
async def info(slug: Slug, request: Request, services: ServicesDep) -> Response:
    ledger = _shard(request, services, slug)
    return await log.public_read(ledger, log.log_info, ledger)


@router.get("/{slug}/log/checkpoint", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"example": "kiroku.example/2026\n1042\n"
                                                          "base64root=\n\n— kiroku.example/2026"
                                                          " sig\n"}}},
                       **problems.responses(404)},
            summary="A shard's latest signed checkpoint (its final one once frozen)")
def checkpoint(slug: Slug, request: Request, services: ServicesDep) -> PlainTextResponse:
    return log.checkpoint(_shard(request, services, slug))


@router.get("/{slug}/log/checkpoints", response_model=CheckpointList,
            responses=problems.responses(404), summary="A shard's checkpoints, newest first")
def checkpoints(slug: Slug, request: Request, services: ServicesDep,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    return log.checkpoints(_shard(request, services, slug), limit)


@router.get("/{slug}/log/proof/inclusion", response_model=InclusionProof,
            responses=problems.responses(400, 404), summary="RFC 9162 inclusion proof in a shard")
async def proof_inclusion(slug: Slug, request: Request, services: ServicesDep,
                          index: Annotated[int, Query(ge=0, le=2**62)],
                          size: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> Response:
    ledger = _shard(request, services, slug)
    return await log.public_read(ledger, ledger.prove_inclusion, index, size)


@router.get("/{slug}/log/proof/consistency", response_model=ConsistencyProof,
            responses=problems.responses(400, 404),
            summary="RFC 9162 consistency proof in a shard")
async def proof_consistency(slug: Slug, request: Request, services: ServicesDep,
                            old: Annotated[int, Query(ge=1, le=2**62)],
                            new: Annotated[int | None, Query(ge=1, le=2**62)] = None
                            ) -> Response:
    ledger = _shard(request, services, slug)
    return await log.public_read(ledger, ledger.prove_consistency, old, new)


@router.get("/{slug}/log/entries", response_class=StreamingResponse,
            responses={200: {"description": "JSON Lines, one export line per entry",
                             "content": {"application/jsonl": {"example":
                                         '{"index":0,"leaf":"…","leaf_hash":"…","payload":{…},'
                                         '"salt":"…","erased":false}\n'}}},
                       **problems.responses(400, 401, 403, 404)},
            summary="A shard's entries start..end (exclusive), for auditors")
def entries(slug: Slug, request: Request, services: ServicesDep, auditor: AuditorDep,
            start: Annotated[int, Query(ge=0, le=2**62)] = 0,
            end: Annotated[int | None, Query(ge=0, le=2**62)] = None) -> StreamingResponse:
    return log.entries(_shard(request, services, slug), auditor, start, end)
