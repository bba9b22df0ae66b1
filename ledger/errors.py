"""Errors raised by the ledger: one base class, one subclass per rule.

Each class has a stable ``code`` used in CLI messages and as the suffix of the RFC 9457
problem ``type`` over HTTP. Messages say what was wrong and what to do.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""

    code = "ledger-error"


class StatementRejected(LedgerError):
    """A statement was refused; nothing was appended."""

    code = "statement-rejected"


class MalformedStatement(StatementRejected):
    code = "malformed-statement"


class BadSignature(StatementRejected):
    code = "bad-signature"


class UnknownKey(StatementRejected):
    code = "unknown-key"


class KeyNotYetValid(StatementRejected):
    code = "key-not-yet-valid"


class KeyRevoked(StatementRejected):
    code = "key-revoked"


class KeyOfAnotherAgency(StatementRejected):
    code = "key-of-another-agency"


class UnknownAgency(StatementRejected):
    code = "unknown-agency"


class CommitmentMismatch(StatementRejected):
    code = "commitment-mismatch"


class NotAllowedByLegalBasis(StatementRejected):
    """Base for the catalog checks (My Number Act Art. 19(8) and the ordinance table)."""

    code = "not-allowed-by-legal-basis"


class UnknownBasis(NotAllowedByLegalBasis):
    code = "unknown-basis"


class RequesterNotAllowed(NotAllowedByLegalBasis):
    code = "requester-not-allowed"


class ProviderNotAllowed(NotAllowedByLegalBasis):
    code = "provider-not-allowed"


class AffairNotAllowed(NotAllowedByLegalBasis):
    code = "affair-not-allowed"


class ItemsNotAllowed(NotAllowedByLegalBasis):
    code = "items-not-allowed"


class SubmitterNotParty(StatementRejected):
    """The submitting agency is neither the requester nor the provider."""

    code = "submitter-not-party"


class TimeInFuture(StatementRejected):
    code = "time-in-future"


class TimeBeforeRegistration(StatementRejected):
    code = "time-before-registration"


class DuplicateConflict(StatementRejected):
    """Same agency request id, different statement."""

    code = "duplicate-conflict"


class BatchTooLarge(StatementRejected):
    code = "batch-too-large"


class AlreadyRegistered(LedgerError):
    code = "already-registered"


class CheckpointError(LedgerError):
    code = "checkpoint-error"


class InconsistentCheckpoint(CheckpointError):
    """The log refuses to sign a checkpoint inconsistent with one it signed before."""

    code = "inconsistent-checkpoint"


class IntegrityFailure(LedgerError):
    """Stored data no longer matches the latest signed checkpoint; the log refuses to serve."""

    code = "integrity-failure"


class NotFound(LedgerError):
    code = "not-found"


class ConfigurationError(LedgerError):
    code = "configuration-error"


class InvalidRequest(LedgerError):
    """A query asked for something that cannot exist (e.g. a proof beyond the tree size)."""

    code = "invalid-request"


class BatchRejected(StatementRejected):
    """At least one statement of a batch was refused; nothing of the batch was appended."""

    code = "batch-rejected"

    def __init__(self, errors: list[tuple[int, StatementRejected]]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(
            f"{len(errors)} statement(s) refused, nothing appended; first: #{first[0]}: "
            f"{first[1].code}: {first[1]}"
        )


class InvalidRevocation(LedgerError):
    """A revocation time the log cannot honour (before the key's valid_from, too far in the
    past, or later than a revocation already in force); docs/key-rotation.md."""

    code = "invalid-revocation"


class OperatorKeyError(LedgerError):
    """An operator key rotation the log refuses (one already in its window, a key this process
    does not hold, or the log's current operator key differs from the one held)."""

    code = "operator-key-error"


# Link codes (符号; ledger.linkcodes) ---------------------------------------------------------
class UnknownLinkCode(StatementRejected):
    """A version-2 payload names a link code the registry never issued to that agency."""

    code = "unknown-link-code"


class LinkCodeOfAnotherAgency(StatementRejected):
    """A link code issued to one agency is presented as another agency's."""

    code = "link-code-of-another-agency"


class LinkCodesOfDifferentResidents(StatementRejected):
    """The requester's and the provider's codes resolve to two different residents."""

    code = "link-codes-of-different-residents"


class SubjectInVersion2(MalformedStatement):
    """A version-2 payload names the shared ``subject`` pseudonym, which it must not carry
    (a malformed payload for its version, with a code of its own)."""

    code = "subject-in-version-2"
