"""The log as C2SP tlog-tiles: ``/checkpoint``, ``/tile/<L>/<N>[.p/<W>]`` and
``/tile/entries/<N>[.p/<W>]`` at the service's root, the same bytes ``kiroku log tiles`` writes.

Public like checkpoints and proofs: tiles are hashes, and entry bundles hold leaf bytes only,
which carry a salted commitment to the payload and never personal data in clear
(docs/log-format.md). Payloads stay behind the auditor credential (``/v1/log/entries``).
Tiles are served up to the latest signed checkpoint's size, never for unsigned growth.
"""

from __future__ import annotations

import gzip
from typing import Annotated

from fastapi import APIRouter, Header, Path
from fastapi.responses import PlainTextResponse, Response

from api import problems
from api.deps import LedgerDep
from api.errors import ResourceNotFound
from ledger.tiles import Tile, covers, parse_index_path, parse_level, read_tile

router = APIRouter(tags=["tiles"])

# tlog-tiles: the checkpoint is mutable, so "its headers SHOULD prevent caching beyond a few
# seconds"; tiles and bundles are immutable (a path's bytes never change), so long-lived.
CHECKPOINT_CACHE = "public, max-age=5"
TILE_CACHE = "public, max-age=31536000, immutable"
OCTETS = "application/octet-stream"
_OCTET_RESPONSE = {200: {"content": {OCTETS: {"schema": {"type": "string", "format": "binary"},
                                               "example": "(W x 32 bytes of SHA-256 hashes)"}},
                         "description": "The tile's bytes"},
                   **problems.responses(400, 404)}
_INDEX_DOC = "<N>[.p/<W>]: the tile index in 3-digit groups (x001/x234/067), '.p/<W>' for a " \
             "partial tile of W (1..255) hashes"


@router.get("/checkpoint", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"example": "kiroku.local/log\n1042\n"
                                                          "base64root=\n\n— kiroku.local/log "
                                                          "sig\n"}}},
                       **problems.responses(404)},
            summary="The latest signed checkpoint (tlog-tiles 'Checkpoints')")
def checkpoint(ledger: LedgerDep) -> Response:
    latest = ledger.latest_checkpoint()
    if latest is None:
        raise ResourceNotFound("no checkpoint has been signed yet")
    return PlainTextResponse(latest.note, media_type="text/plain; charset=utf-8",
                             headers={"Cache-Control": CHECKPOINT_CACHE})


def _serve(ledger: LedgerDep, tile: Tile, accept_encoding: str | None) -> Response:
    latest = ledger.latest_checkpoint()
    size = latest.size if latest is not None else 0
    if not covers(tile, size):
        raise ResourceNotFound(f"{tile.path} lies beyond the latest signed checkpoint "
                               f"(size {size})")
    data = read_tile(ledger, tile)
    headers = {"Cache-Control": TILE_CACHE}
    if tile.level is None:
        # tlog-tiles "Log entries": bundles SHOULD be compressed at the HTTP layer.
        headers["Vary"] = "Accept-Encoding"
        if accept_encoding and "gzip" in accept_encoding.lower():
            data = gzip.compress(data, compresslevel=6, mtime=0)
            headers["Content-Encoding"] = "gzip"
    return Response(data, media_type=OCTETS, headers=headers)


@router.get("/tile/entries/{index:path}", response_class=Response, responses=_OCTET_RESPONSE,
            summary="An entry bundle: each entry's leaf bytes behind a uint16 length")
def entry_bundle(ledger: LedgerDep,
                 index: Annotated[str, Path(max_length=64, description=_INDEX_DOC)],
                 accept_encoding: Annotated[str | None, Header()] = None) -> Response:
    number, width = parse_index_path(index)
    return _serve(ledger, Tile(None, number, width), accept_encoding)


@router.get("/tile/{level}/{index:path}", response_class=Response, responses=_OCTET_RESPONSE,
            summary="A Merkle tree tile: 256 (or W) consecutive hashes at level L")
def level_tile(ledger: LedgerDep,
               level: Annotated[str, Path(max_length=2, description="0..63")],
               index: Annotated[str, Path(max_length=64, description=_INDEX_DOC)]) -> Response:
    number, width = parse_index_path(index)
    return _serve(ledger, Tile(parse_level(level), number, width), None)
