"""The verifier's one error family.

Every check either returns ``None`` or raises a :class:`VerificationError` subclass whose message
says what was found and what was expected ("got X, expected Y"). Failures found in an export also
carry the log ``index`` of the first bad entry and a stable ``kind`` (see ``docs/verifier.md``);
scripts rely on those two, not on the wording of the message.
"""

from __future__ import annotations


class VerificationError(Exception):
    """Base of every verification failure. ``kind`` is stable; the message is for humans."""

    kind: str = "verification-failed"

    def __init__(self, message: str, *, index: int | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        if kind is not None:
            self.kind = kind


class UnusableInput(VerificationError):
    """The input cannot be checked at all (unreadable, not the expected format): exit code 2."""

    kind = "unusable-input"


class MalformedVkey(UnusableInput):
    """A verifier key is not ``name+hex(keyid)+base64(0x01 || pubkey)`` (C2SP signed-note)."""

    kind = "malformed-vkey"


class MalformedNote(UnusableInput):
    """A signed note is not well formed (C2SP signed-note)."""

    kind = "malformed-note"


class MalformedCheckpoint(UnusableInput):
    """A checkpoint body is not ``origin\\nsize\\nroot\\n[extensions]`` (C2SP tlog-checkpoint)."""

    kind = "malformed-checkpoint"


class MalformedProof(UnusableInput):
    """A proof JSON document does not have the shape of docs/log-format.md "Proofs"."""

    kind = "malformed-proof"


class CheckpointSignatureError(VerificationError):
    """No trusted key signed the note, or a trusted key's signature line does not verify."""

    kind = "checkpoint-signature-invalid"


class InclusionProofError(VerificationError):
    """An inclusion proof does not lead to the expected root (RFC 9162 §2.1.3.2)."""

    kind = "inclusion-proof-invalid"


class ConsistencyProofError(VerificationError):
    """A consistency proof does not link the two roots (RFC 9162 §2.1.4.2)."""

    kind = "inconsistent"


class RootMismatch(VerificationError):
    """The root rebuilt from the export's leaves differs from the checkpoint's root."""

    kind = "root-mismatch"


class EntryError(VerificationError):
    """An export entry failed a check; ``index`` is the first bad log index, ``kind`` says how.

    ``kind`` is one of :data:`ENTRY_KINDS`.
    """

    kind = "malformed-entry"

    def __init__(self, message: str, *, index: int | None, kind: str) -> None:
        if kind not in ENTRY_KINDS:
            raise ValueError(f"unknown entry failure kind {kind!r}")
        super().__init__(message, index=index, kind=kind)


class MonitorError(VerificationError):
    """A monitored log misbehaved: ``kind`` is rollback, fork, inconsistent or stale."""

    kind = "monitor-failed"


# The failure kinds an export check reports (docs/verifier.md explains each one).
ENTRY_KINDS = frozenset(
    {
        "malformed-entry",
        "payload-altered",
        "chain-broken",
        "entry-missing",
        "entries-reordered",
        "entry-inserted",
        "bad-signature",
        "key-not-valid",
        "root-mismatch",
        "export-too-short",
        "export-too-long",
        "checkpoint-signature-invalid",
    }
)
