"""C2SP tlog-checkpoint bodies inside signed notes.

https://c2sp.org/tlog-checkpoint: ``<origin>\\n<tree size>\\n<base64 root>\\n`` then optional
non-empty extension lines, signed as a C2SP signed-note.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field

from verifier.errors import MalformedCheckpoint
from verifier.merkle import HASH_SIZE
from verifier.note import NoteVerifier, open_note

_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_MAX_SIZE = (1 << 64) - 1


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = field(default=())

    def body(self) -> str:
        lines = [self.origin, str(self.size), binascii.b2a_base64(self.root, newline=False).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"


def parse_checkpoint_body(text: str) -> Checkpoint:
    """Parse a checkpoint body (the note text); raises MalformedCheckpoint."""
    if not text.endswith("\n"):
        raise MalformedCheckpoint("checkpoint body does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpoint(f"checkpoint body has {len(lines)} lines, expected at least 3")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise MalformedCheckpoint("checkpoint origin line is empty")
    if _SIZE.fullmatch(size_text) is None or int(size_text) > _MAX_SIZE:
        raise MalformedCheckpoint(f"checkpoint tree size {size_text[:30]!r} is not a decimal uint64")
    try:
        root = binascii.a2b_base64(root_text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedCheckpoint(f"checkpoint root {root_text[:60]!r} is not base64") from None
    if len(root) != HASH_SIZE:
        raise MalformedCheckpoint(f"checkpoint root is {len(root)} bytes, expected {HASH_SIZE}")
    if any(not line for line in extensions):
        raise MalformedCheckpoint("checkpoint has an empty extension line")
    return Checkpoint(origin=origin, size=int(size_text), root=root, extensions=tuple(extensions))


def open_checkpoint(
    text: str | bytes,
    vkeys: list[NoteVerifier] | tuple[NoteVerifier, ...] | NoteVerifier,
    *,
    origin: str | None = None,
) -> Checkpoint:
    """Verify a signed checkpoint and return its body.

    At least one of ``vkeys`` must have signed it (other signers, such as witnesses, are ignored).
    When ``origin`` is given the checkpoint must name it: tlog-checkpoint says the origin must be
    checked so one log's checkpoint cannot be passed off as another's. Raises
    CheckpointSignatureError, MalformedNote or MalformedCheckpoint.
    """
    if isinstance(vkeys, NoteVerifier):
        vkeys = (vkeys,)
    note = open_note(text, vkeys)
    checkpoint = parse_checkpoint_body(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise MalformedCheckpoint(
            f"checkpoint origin is {checkpoint.origin!r}, expected {origin!r}"
        )
    return checkpoint
