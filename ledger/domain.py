"""Domain model: aggregates whose every event is one signed log entry.

Each event carries the statement that justified it (``statement``, ``signature``) and the
committed ``payload`` with its ``salt``; ``ledger.storage`` turns the statement into the leaf.
Names follow the library's conventions: singular nouns, past-tense events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

NAMESPACE = uuid.UUID("5b0c7a8e-1f0e-4c1d-9a55-6b69726f6b75")  # fixed: ids are part of the data

OPERATOR = "operator"


def agency_id(code: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"agency:{code}")


def catalog_id() -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, "catalog")


def operator_key_id(key_id: str) -> uuid.UUID:
    """One aggregate per operator key brought in by a rotation (its statement key id)."""
    return uuid.uuid5(NAMESPACE, f"operator-key:{key_id}")


def provision_id(agency: str, request_id: str) -> uuid.UUID:
    """One provision record per (submitting agency, the agency's own request id)."""
    return uuid.uuid5(NAMESPACE, f"provision:{agency}:{request_id}")


class Logged(Aggregate.Event):
    """Fields every log-entry event carries."""

    statement: dict[str, Any]
    signature: str
    payload: dict[str, Any] | None
    salt: str | None
    logged_at: str

    def log_entry(self) -> dict[str, Any]:
        return {**self.statement, "signature": self.signature, "logged_at": self.logged_at}


class LoggedAggregate(Aggregate):
    """An aggregate created by a log entry: it keeps the statement that created it."""

    def __init__(
        self,
        statement: dict[str, Any],
        signature: str,
        payload: dict[str, Any] | None,
        salt: str | None,
        logged_at: str,
    ) -> None:
        self.statement = statement
        self.signature = signature
        self.payload = payload
        self.salt = salt
        self.logged_at = logged_at


class Provision(LoggedAggregate):
    """An information provision between agencies, as one agency stated it (Act Art. 23)."""

    class Recorded(Aggregate.Created, Logged):
        pass


class Agency(LoggedAggregate):
    """A registered agency and its statement keys."""

    class Registered(Aggregate.Created, Logged):
        pass

    class KeyAdded(Logged):
        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Agency) and self.payload is not None
            aggregate.keys[self.payload["key_id"]] = dict(self.payload)

    class KeyRevoked(Logged):
        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Agency) and self.payload is not None
            aggregate.keys[self.payload["key_id"]]["revoked_at"] = self.payload["revoked_at"]

    def __init__(self, statement: dict[str, Any], signature: str, payload: dict[str, Any] | None,
                 salt: str | None, logged_at: str) -> None:
        super().__init__(statement, signature, payload, salt, logged_at)
        assert payload is not None
        self.code: str = payload["code"]
        self.keys: dict[str, dict[str, Any]] = {}


class Catalog(LoggedAggregate):
    """The legal-basis catalog in force (loading or replacing it is a log entry)."""

    class Loaded(Aggregate.Created, Logged):
        pass

    class Replaced(Logged):
        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Catalog)
            aggregate.payload = self.payload


class OperatorKey(LoggedAggregate):
    """An operator key that replaced the previous one (docs/key-rotation.md): the entry that
    brings it in is signed by the previous key and carries the new key's proof of possession."""

    class Rotated(Aggregate.Created, Logged):
        pass


REGISTRATION_EVENTS: dict[str, type[Logged]] = {
    "agency.registered": Agency.Registered,
    "agency.key_added": Agency.KeyAdded,
    "agency.key_revoked": Agency.KeyRevoked,
    "catalog.loaded": Catalog.Loaded,
    "catalog.replaced": Catalog.Replaced,
    "operator.key_rotated": OperatorKey.Rotated,
}


@dataclass
class KeyState:
    agency: str
    key_id: str
    public_key: bytes
    valid_from: datetime
    revoked_at: datetime | None = None


@dataclass
class OperatorKeyState:
    """An operator key the log knows from a rotation entry. ``retired_at``: when it stops
    co-signing checkpoints (None while it is the current key)."""

    key_id: str
    public_key: bytes
    valid_from: datetime | None
    retired_at: datetime | None = None


@dataclass
class AgencyState:
    code: str
    name_ja: str
    name_en: str
    kind: str
    roles: frozenset[str]
    registered_at: datetime
    keys: dict[str, KeyState] = field(default_factory=dict)
