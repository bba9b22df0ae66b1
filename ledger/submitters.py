"""The checks every agency-signed entry other than a provision passes (flags, notices): the
submitting agency is registered, its key valid at the statement's time, the time neither in the
future nor before the agency's registration, the signature and the commitment good."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ledger.errors import StatementRejected, TimeBeforeRegistration, TimeInFuture
from ledger.provision import CLOCK_SKEW
from ledger.signing import verify_commitment, verify_signature

if TYPE_CHECKING:
    from ledger.application import Ledger
    from ledger.registry import AgencyState


def check_agency_statement(ledger: Ledger, submission: dict[str, Any], moment: datetime,
                           now: datetime) -> AgencyState:
    """Raise the statement's refusal, or return the submitting agency's registry state."""
    statement = submission["statement"]
    submitter = statement["agency"]
    ledger.refresh_registry(force=False)
    try:
        agency = ledger.registry.agency(submitter)
    except StatementRejected:  # registered within the last second: read the registry again
        ledger.refresh_registry()
        agency = ledger.registry.agency(submitter)
    key = ledger.registry.key_for(submitter, statement["key_id"], moment, now)
    if moment > now + CLOCK_SKEW:
        raise TimeInFuture(f"statement.time {moment.isoformat()} is in the future "
                           f"(log time {now.isoformat()})")
    if moment < agency.registered_at:
        raise TimeBeforeRegistration(
            f"statement.time {moment.isoformat()} is before the agency's registration at "
            f"{agency.registered_at.isoformat()}")
    verify_signature(statement, submission["signature"], key.public_key)
    verify_commitment(statement, submission["payload"], submission["salt"])
    return agency
