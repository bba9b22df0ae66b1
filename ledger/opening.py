"""Opening the ledger of a configuration, with the set-up mistakes a user can make named."""

from __future__ import annotations

from ledger.application import Ledger
from ledger.config import Settings
from ledger.db import current
from ledger.errors import ConfigurationError
from ledger.keys import SigningKey


def open_ledger(settings: Settings, *, check: bool = True) -> Ledger:
    """The ledger at ``settings``; ConfigurationError says what to run when it is not set up.

    ``check``: re-verify the latest checkpoint first (refuse a log whose storage was altered).
    """
    if not settings.operator_key_path.exists():
        raise ConfigurationError(
            f"no operator key at {settings.operator_key_path}; run 'kiroku init' first")
    try:
        revision = current(settings.database_url)
    except Exception as exc:  # noqa: BLE001 -- driver error types vary; all mean "cannot open"
        raise ConfigurationError(f"cannot open database {settings.database_url}: {exc}") from None
    if revision is None:
        raise ConfigurationError(
            f"database {settings.database_url} has no schema; run 'kiroku db upgrade'")
    return Ledger(settings, SigningKey.load(settings.operator_key_path), check=check)
