"""Who may sign what: agencies, their keys and roles, and the catalog in force.

Built only from registration entries in the log (docs/log-format.md), in log order, so it is
exactly what an offline verifier rebuilds from an export.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from ledger.catalog import Catalog
from ledger.domain import AgencyState, KeyState, OperatorKeyState
from ledger.encoding import parse_time
from ledger.errors import (
    KeyNotYetValid,
    KeyOfAnotherAgency,
    KeyRevoked,
    UnknownAgency,
    UnknownKey,
)


class Registry:
    def __init__(self) -> None:
        self.agencies: dict[str, AgencyState] = {}
        self.keys: dict[str, KeyState] = {}
        self.catalog: Catalog | None = None
        self.catalog_version: str | None = None
        self.position = 0  # highest notification id applied
        # Operator keys named by operator.key_rotated entries (docs/key-rotation.md), and the
        # statement key id of the current one (None: no rotation yet, the first key signs).
        self.operator_keys: dict[str, OperatorKeyState] = {}
        self.operator_key_id: str | None = None

    def apply(self, kind: str, payload: dict[str, Any], statement_time: str) -> None:
        if kind == "agency.registered":
            self.agencies[payload["code"]] = AgencyState(
                code=payload["code"],
                name_ja=payload["name_ja"],
                name_en=payload["name_en"],
                kind=payload["kind"],
                roles=frozenset(payload["roles"]),
                registered_at=parse_time(statement_time, field="time"),
            )
        elif kind == "agency.key_added":
            key = KeyState(
                agency=payload["agency"],
                key_id=payload["key_id"],
                public_key=base64.b64decode(payload["public_key"]),
                valid_from=parse_time(payload["valid_from"], field="valid_from"),
            )
            self.keys[key.key_id] = key
            self.agencies[key.agency].keys[key.key_id] = key
        elif kind == "agency.key_revoked":
            key = self.keys[payload["key_id"]]
            revoked_at = parse_time(payload["revoked_at"], field="revoked_at")
            # As the verifier does (docs/log-format.md rule 4): a later revocation entry can
            # bring the effective time forward (an emergency during an overlap), never lift it.
            if key.revoked_at is None or revoked_at < key.revoked_at:
                key.revoked_at = revoked_at
        elif kind == "operator.key_rotated":
            self._apply_rotation(payload)
        elif kind in ("catalog.loaded", "catalog.replaced"):
            self.catalog = Catalog.from_payload(payload)
            self.catalog_version = self.catalog.version

    def _apply_rotation(self, payload: dict[str, Any]) -> None:
        from ledger.keys import statement_key_id

        previous = base64.b64decode(payload["previous_public_key"])
        previous_id = statement_key_id(previous)
        retired_at = parse_time(payload["retired_at"], field="retired_at")
        old = self.operator_keys.get(previous_id)
        if old is None:
            old = self.operator_keys[previous_id] = OperatorKeyState(previous_id, previous, None)
        old.retired_at = retired_at
        self.operator_keys[payload["key_id"]] = OperatorKeyState(
            payload["key_id"], base64.b64decode(payload["public_key"]),
            parse_time(payload["valid_from"], field="valid_from"))
        self.operator_key_id = payload["key_id"]

    def co_signing_keys(self, at: datetime) -> list[OperatorKeyState]:
        """Retired operator keys still inside their rotation window at ``at``: checkpoints are
        signed by them too, so verifiers holding only the old vkey keep accepting them."""
        return [k for k in self.operator_keys.values()
                if k.retired_at is not None and at < k.retired_at]

    def agency(self, code: str) -> AgencyState:
        try:
            return self.agencies[code]
        except KeyError:
            # The value is not echoed: a statement may carry a resident's identifier in the
            # wrong field, and problem documents never repeat request values (docs/api.md).
            raise UnknownAgency(
                "an agency named in the statement is not registered in this log; check the "
                "agency codes, or ask the log operator to register it"
            ) from None

    def key_for(self, agency: str, key_id: str, at: datetime, logged_at: datetime) -> KeyState:
        """The agency's key ``key_id`` if it is valid at ``at`` and not revoked by ``logged_at``."""
        key = self.keys.get(key_id)
        if key is None:
            raise UnknownKey(f"key {key_id!r} is not registered for any agency")
        if key.agency != agency:
            raise KeyOfAnotherAgency(
                f"key {key_id!r} belongs to agency {key.agency!r}, not to {agency!r}"
            )
        if at < key.valid_from:
            raise KeyNotYetValid(
                f"key {key_id!r} is valid from {key.valid_from.isoformat()}, "
                f"the statement is dated {at.isoformat()}"
            )
        if key.revoked_at is not None and (at >= key.revoked_at or logged_at >= key.revoked_at):
            raise KeyRevoked(
                f"key {key_id!r} was revoked at {key.revoked_at.isoformat()}; "
                "sign with a current key"
            )
        return key
