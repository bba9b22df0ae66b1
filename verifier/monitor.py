"""Watching a log: every checkpoint it serves must extend the last one this monitor verified.

The last verified checkpoint is kept in ``STATE/checkpoint`` (the signed note, as served) with
``STATE/state.json`` recording when its content was first seen; both are replaced atomically
(write, fsync, rename), so a crash never leaves a half-written state. Each poll reports one of:

* ``rollback``: the log now serves a smaller tree than one it signed before;
* ``fork``: two different roots signed for the same size;
* ``inconsistent``: a larger tree whose consistency proof does not link it to the old one;
* ``stale``: the served checkpoint has not changed for more than ``--max-age`` seconds (the log
  is expected to publish a fresh checkpoint, e.g. with new cosignatures, at least that often);
* ``checkpoint-signature-invalid``: the checkpoint is not signed by the operator key (any of
  the ``--vkey`` keys: during an operator key rotation, the old and the new one);
* ``witness-quorum``: with ``--witness``/``--quorum K``, the checkpoint lacks K valid witness
  cosignatures (C2SP tlog-cosignature/v1). A log URL is then read at
  ``/v1/log/checkpoint/witnessed``. Rollbacks and forks are reported before the quorum is
  checked: a second root signed by the operator is evidence whether or not witnesses saw it.
  A checkpoint without the quorum is never stored as the last verified one.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from verifier.checkpoint import Checkpoint, open_checkpoint
from verifier.cosignature import CosignatureVerifier, require_quorum
from verifier.errors import MonitorError, UnusableInput, VerificationError
from verifier.note import NoteVerifier
from verifier.prefix import verify_extends
from verifier.sources import HttpSource, Source, open_source

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2


@dataclass(frozen=True)
class MonitorState:
    note: bytes  # the last verified signed checkpoint, exactly as served
    first_seen: float  # when that exact note was first seen


def _write_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_state(directory: str) -> MonitorState | None:
    note_path = os.path.join(directory, "checkpoint")
    if not os.path.exists(note_path):
        return None
    try:
        with open(note_path, "rb") as f:
            note = f.read()
        with open(os.path.join(directory, "state.json"), encoding="utf-8") as f:
            meta = json.load(f)
        return MonitorState(note, float(meta["first_seen"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnusableInput(f"monitor state in {directory!r} is unreadable: {exc}") from None


def save_state(directory: str, state: MonitorState) -> None:
    os.makedirs(directory, exist_ok=True)
    # checkpoint first: a crash between the two writes leaves a newer note with an older
    # first_seen, which can only make the next staleness check stricter.
    _write_atomic(os.path.join(directory, "checkpoint"), state.note)
    meta = {"first_seen": state.first_seen}
    _write_atomic(os.path.join(directory, "state.json"), json.dumps(meta).encode())


class WitnessedHttpSource(HttpSource):
    """A log URL whose cosigned checkpoint is read (GET /v1/log/checkpoint/witnessed)."""

    def checkpoint(self) -> bytes:
        return self._get("/v1/log/checkpoint/witnessed")


def check_once(
    source: Source, vkey: NoteVerifier | Sequence[NoteVerifier], state_dir: str, *,
    max_age: float | None = None,
    now: Callable[[], float] = time.time, witnesses: Sequence[CosignatureVerifier] = (),
    quorum: int = 0,
) -> Checkpoint:
    """One poll: verify the served checkpoint against the stored one and store it.

    Returns the served checkpoint, or raises MonitorError / CheckpointSignatureError /
    ConsistencyProofError (exit 1) or UnusableInput (exit 2).
    """
    keys = [vkey] if isinstance(vkey, NoteVerifier) else list(vkey)
    origin = keys[0].name
    note = source.checkpoint()
    new = open_checkpoint(note, keys, origin=origin)
    previous = load_state(state_dir)
    moment = now()
    if previous is None:
        _require_quorum(note, witnesses, quorum)
        save_state(state_dir, MonitorState(note, moment))
        return new
    old = open_checkpoint(previous.note, keys, origin=origin)
    if new.size < old.size:
        raise MonitorError(
            f"log serves size {new.size}, expected at least {old.size} (verified before)",
            kind="rollback",
        )
    if new.size == old.size and new.root != old.root:
        raise MonitorError(
            f"two roots for size {new.size}: got {new.root.hex()}, expected {old.root.hex()}",
            kind="fork",
        )
    if new.size > old.size:
        proof = source.consistency(old.size, new.size) if old.size else None
        try:
            verify_extends(old, new, proof)
        except VerificationError as exc:
            raise MonitorError(
                f"size {new.size} does not extend size {old.size}: {exc}", kind="inconsistent"
            ) from None
    _require_quorum(note, witnesses, quorum)
    if note != previous.note:
        save_state(state_dir, MonitorState(note, moment))
        return new
    if max_age is not None and moment - previous.first_seen > max_age:
        raise MonitorError(
            f"checkpoint unchanged for {moment - previous.first_seen:.0f}s, expected a fresh one "
            f"within {max_age:.0f}s",
            kind="stale",
        )
    return new


def _require_quorum(note: bytes, witnesses: Sequence[CosignatureVerifier], quorum: int) -> None:
    if quorum:
        require_quorum(note, witnesses, quorum)


def monitor_command(
    source: str, vkey: str | Sequence[str], state: str, *, interval: float = 60.0, once: bool = False,
    max_age: float | None = None, witnesses: Sequence[str] | None = None,
    quorum: int | None = None,
) -> int:
    """Poll ``source`` until a check fails (exit 1), or once with ``once``."""
    from verifier.cli import load_vkeys, load_witnesses

    try:
        verifier = load_vkeys(vkey)
        trusted, k = load_witnesses(witnesses, quorum)
        src = open_source(source)
        if k and isinstance(src, HttpSource):
            src = WitnessedHttpSource(src.url)
    except UnusableInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    while True:
        try:
            cp = check_once(src, verifier, state, max_age=max_age, witnesses=trusted, quorum=k)
        except UnusableInput as exc:
            print(f"error: {exc}", file=sys.stderr)
            if once:
                return EXIT_UNUSABLE
        except VerificationError as exc:
            print(f"FAIL {exc.kind}: {exc}")
            return EXIT_FAILED
        else:
            print(f"OK {cp.origin} size {cp.size} root {cp.root.hex()}", flush=True)
        if once:
            return EXIT_OK
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return EXIT_OK
