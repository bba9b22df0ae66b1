"""The witness over HTTP (c2sp.org/tlog-witness), as a small Starlette application.

- ``POST /add-checkpoint``: 200 with the cosignature line(s); 400, 403, 404, 409 (body: the
  latest cosigned size and a newline, ``Content-Type: text/x.tlog.size``) or 422 as the spec
  says. Other refusals carry an RFC 9457 ``application/problem+json`` body.
- ``GET /<hex SHA-256 of origin>/checkpoint``: the latest checkpoint it cosigned for that log,
  with the log's signature and its own cosignature (the spec's monitor retrieval), or 404.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from verifier.note import NoteVerifier
from witness.keys import WitnessKey
from witness.protocol import Conflict, Refused, Witness
from witness.state import WitnessState

MAX_REQUEST_BYTES = 64 * 1024  # 63 proof lines and a checkpoint with many cosignatures fit
TEXT = "text/plain; charset=utf-8"


def _problem(status: int, code: str, detail: str) -> Response:
    body = {"type": f"urn:kiroku:problem:witness-{code}", "title": code.replace("-", " "),
            "status": status, "detail": detail, "code": f"witness-{code}"}
    return Response(json.dumps(body), status_code=status, media_type="application/problem+json")


def create_witness_app(witness: Witness) -> Starlette:
    async def add_checkpoint(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return _problem(413, "too-large", f"request exceeds {MAX_REQUEST_BYTES} bytes")
        try:
            # Signature checks and the durable write block: keep them off the event loop.
            lines = await run_in_threadpool(witness.add_checkpoint, body)
        except Conflict as exc:
            return Response(f"{exc.size}\n", status_code=409, media_type="text/x.tlog.size")
        except Refused as exc:
            return _problem(exc.status, exc.code, str(exc))
        return Response(lines, media_type=TEXT)

    async def latest(request: Request) -> Response:
        note = await run_in_threadpool(witness.latest_note, request.path_params["origin_hash"])
        if note is None:
            return _problem(404, "not-found", "this witness has cosigned no checkpoint of that log")
        return Response(note, media_type=TEXT)

    return Starlette(routes=[
        Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
        Route("/{origin_hash:str}/checkpoint", latest, methods=["GET"]),
    ])


def parse_log_option(value: str) -> tuple[str, NoteVerifier]:
    """``ORIGIN=VKEY`` (the vkey may itself contain '=': split at the first one only)."""
    origin, sep, vkey = value.partition("=")
    if not sep or not origin:
        raise ValueError(f"--log {value[:60]!r} is not ORIGIN=VKEY")
    return origin, NoteVerifier.from_vkey(vkey)


def open_witness(state_dir: Path, key_file: Path, logs: Sequence[str]) -> Witness:
    trusted: dict[str, list[NoteVerifier]] = {}
    for value in logs:
        origin, verifier = parse_log_option(value)
        trusted.setdefault(origin, []).append(verifier)
    return Witness(WitnessKey.load(key_file), WitnessState(state_dir), trusted)


def serve(witness: Witness, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_witness_app(witness), host=host, port=port, access_log=False,
                log_level="warning")
