"""The add-checkpoint request and the witness's decision (c2sp.org/tlog-witness).

``Witness.add_checkpoint(body)`` returns the cosignature lines or raises a ``Refused`` subclass
whose ``status`` is the HTTP status code the spec assigns to that case.
"""

from __future__ import annotations

import binascii
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from verifier.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint_body
from verifier.errors import (
    CheckpointSignatureError,
    ConsistencyProofError,
    MalformedCheckpoint,
    MalformedNote,
)
from verifier.merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency
from verifier.note import NoteVerifier, parse_note
from witness.keys import WitnessKey
from witness.state import Latest, WitnessState

log = logging.getLogger("kiroku.witness")

MAX_PROOF_LINES = 63  # tlog-witness: the client MUST NOT send more than 63 proof lines
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,19})")


class Refused(Exception):
    """The witness will not cosign; ``status`` is the spec's HTTP status code for the case."""

    status = 400
    code = "bad-request"


class BadRequest(Refused):
    status, code = 400, "bad-request"


class Forbidden(Refused):
    status, code = 403, "forbidden"


class UnknownLog(Refused):
    status, code = 404, "unknown-log"


class Conflict(Refused):
    """The old size is not the size last cosigned; ``size`` is that size (body of the 409)."""

    status, code = 409, "conflict"

    def __init__(self, size: int) -> None:
        super().__init__(f"the latest cosigned checkpoint has size {size}")
        self.size = size


class Unprocessable(Refused):
    status, code = 422, "unprocessable"


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    note: str


def parse_request(body: bytes) -> AddCheckpoint:
    """tlog-witness "add-checkpoint": ``old N``, proof lines, an empty line, the checkpoint."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise BadRequest("request has no empty line before the checkpoint")
    lines = head.split("\n")
    match = _OLD_LINE.fullmatch(lines[0])
    if match is None:
        raise BadRequest("first line is not 'old <size>' (decimal, no leading zeroes)")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise BadRequest(f"request has {len(lines) - 1} proof lines, at most {MAX_PROOF_LINES}")
    proof = []
    for line in lines[1:]:
        try:
            digest = binascii.a2b_base64(line.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise BadRequest("a consistency proof line is not base64") from None
        if len(digest) != HASH_SIZE:
            raise BadRequest(f"a consistency proof hash is {len(digest)} bytes, expected 32")
        proof.append(digest)
    return AddCheckpoint(int(match.group(1)), tuple(proof), note)


class Witness:
    """Verifies checkpoints of the configured logs and cosigns the consistent ones.

    ``logs`` maps each origin to the log keys trusted for it. Requests for one origin are
    serialised (a lock per origin here, and the state's write transaction across processes), so
    the check of the old size and the update happen as one step (tlog-witness race example).
    """

    def __init__(self, key: WitnessKey, state: WitnessState,
                 logs: Mapping[str, Sequence[NoteVerifier]], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.state = state
        self.logs = {origin: tuple(keys) for origin, keys in logs.items()}
        self._clock = clock
        self._locks: dict[str, threading.Lock] = {origin: threading.Lock() for origin in logs}

    def add_checkpoint(self, body: bytes) -> str:
        request = parse_request(body)
        checkpoint, text = self._open(request.note)
        # The empty tree's root is fixed (RFC 6962 §2.1); checked before any state is read.
        if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
            raise Unprocessable("a checkpoint of size 0 must have the empty tree's root")
        if request.old_size > checkpoint.size:
            raise BadRequest(f"old size {request.old_size} exceeds the checkpoint size "
                             f"{checkpoint.size}")
        with self._locks[checkpoint.origin]:
            _, _, cosigned = self.state.advance(
                checkpoint.origin, lambda latest: self._decide(latest, request, checkpoint, text))
        return cosigned[len(request.note):]

    def _open(self, note: str) -> tuple[Checkpoint, str]:
        """The verified checkpoint and its exact note text (what the cosignature covers)."""
        try:
            text = parse_note(note).text
            origin = parse_checkpoint_body(text).origin
        except (MalformedNote, MalformedCheckpoint) as exc:
            raise BadRequest(f"checkpoint: {exc}") from None
        keys = self.logs.get(origin)
        if keys is None:
            raise UnknownLog("this witness does not know the checkpoint's origin")
        try:
            # Signatures by unknown keys (e.g. other witnesses) are ignored; a line naming a
            # trusted key that does not verify is refused, as signed-note requires.
            return open_checkpoint(note, keys, origin=origin), text
        except CheckpointSignatureError as exc:
            raise Forbidden(str(exc)) from None

    def _decide(self, latest: Latest | None, request: AddCheckpoint, checkpoint: Checkpoint,
                text: str) -> tuple[int, bytes, str]:
        stored = latest.size if latest is not None else 0
        if request.old_size != stored:
            raise Conflict(stored)
        try:
            if request.old_size == 0:
                # The empty tree is consistent with every tree: no proof is needed or allowed.
                if request.proof:
                    raise Unprocessable("the consistency proof from size 0 must be empty")
            elif latest is not None:
                verify_consistency(latest.size, checkpoint.size, request.proof, latest.root,
                                   checkpoint.root)
        except ConsistencyProofError as exc:
            # tlog-witness: the witness MAY log a refused but validly signed checkpoint, as it
            # might be evidence of log misbehaviour (hashes and sizes only: no personal data).
            log.warning("refused %s size %d (cosigned %d): %s", checkpoint.origin,
                        checkpoint.size, stored, exc)
            raise Unprocessable(str(exc)) from None
        timestamp = max(1, int(self._clock()))
        line = self.key.cosign(text, timestamp)
        return checkpoint.size, checkpoint.root, request.note + line

    def latest_note(self, origin_hash: str) -> str | None:
        """tlog-witness "Monitor Retrieval": the cosigned checkpoint for SHA-256(origin)."""
        import hashlib

        for origin in self.logs:
            if hashlib.sha256(origin.encode()).hexdigest() == origin_hash:
                latest = self.state.latest(origin)
                return latest.note if latest is not None else None
        return None
