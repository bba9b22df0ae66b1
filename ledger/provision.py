"""The provision payload (My Number Act Art. 23 items), parsed and checked once at the boundary."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ledger.encoding import parse_time
from ledger.errors import (
    MalformedStatement,
    SubjectInVersion2,
    TimeBeforeRegistration,
    TimeInFuture,
)

PAYLOAD_KEYS = frozenset(
    {
        "request_id", "subject", "requester", "provider", "basis", "affair", "items",
        "requested_at", "provided_at", "outcome", "reason", "non_disclosure", "operator",
    }
)
#: Version 2 (docs/log-format.md): each agency's own link code (符号) instead of the shared
#: ``subject``, and optionally ``disclose_after``.
PAYLOAD_KEYS_V2 = (PAYLOAD_KEYS - {"subject"}) | {"requester_code", "provider_code"}
OPTIONAL_KEYS_V2 = frozenset({"disclose_after"})
#: Either version (docs/applications.md): the id of the application that caused the provision
#: (the agency asks others for the data instead of the resident attaching certificates).
OPTIONAL_KEYS = frozenset({"application"})
_APPLICATION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LINK_CODE = re.compile(r"[A-Z2-7]{26}")
OUTCOMES = frozenset({"provided", "not_provided"})
#: Clocks of agency systems may run a little ahead of the log's.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class ProvisionPayload:
    request_id: str
    subject: str | None  # version 1 only; version 2 names link codes (ledger.linkcodes)
    requester: str
    provider: str
    basis: str
    affair: str
    items: tuple[str, ...]
    requested_at: datetime
    provided_at: datetime | None
    outcome: str
    reason: str | None
    non_disclosure: bool
    operator: str
    version: int = 1
    requester_code: str | None = None
    provider_code: str | None = None
    disclose_after: datetime | None = None
    application: str | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any], version: int = 1) -> ProvisionPayload:
        """``version``: the statement's ``v`` (1: ``subject``; 2: link codes)."""
        keys = raw.keys()
        if version == 2 and "subject" in keys:
            raise SubjectInVersion2(
                "a version-2 payload names each agency's link code (requester_code, "
                "provider_code), never the shared 'subject'; drop it, or sign version 1")
        required = PAYLOAD_KEYS_V2 if version == 2 else PAYLOAD_KEYS
        allowed = (required | OPTIONAL_KEYS_V2 if version == 2 else required) | OPTIONAL_KEYS
        if not required <= keys <= allowed:
            missing, extra = required - keys, keys - allowed
            parts = []
            if missing:
                parts.append(f"missing {sorted(missing)}")
            if extra:
                parts.append(f"unknown {sorted(extra)}")
            raise MalformedStatement(f"provision payload (version {version}): {'; '.join(parts)}")
        names = ("subject",) if version == 1 else ()
        for name in ("request_id", *names, "requester", "provider", "basis", "affair",
                     "operator", "outcome"):
            value = raw[name]
            if not isinstance(value, str) or not value or len(value) > 256:
                raise MalformedStatement(f"payload.{name} must be a non-empty string (≤256 chars)")
        items = raw["items"]
        if not isinstance(items, list) or not items or not all(
            isinstance(i, str) and i for i in items
        ):
            raise MalformedStatement("payload.items must be a non-empty list of item names")
        if len(set(items)) != len(items):
            raise MalformedStatement("payload.items lists an item twice")
        if not isinstance(raw["non_disclosure"], bool):
            raise MalformedStatement("payload.non_disclosure must be true or false")
        outcome = raw["outcome"]
        if outcome not in OUTCOMES:
            raise MalformedStatement(f"payload.outcome must be one of {sorted(OUTCOMES)}")
        requested_at = parse_time(raw["requested_at"], field="payload.requested_at")
        provided_raw, reason = raw["provided_at"], raw["reason"]
        provided_at = None
        if outcome == "provided":
            if provided_raw is None:
                raise MalformedStatement("payload.provided_at is required when outcome is provided")
            provided_at = parse_time(provided_raw, field="payload.provided_at")
            if provided_at < requested_at:
                raise MalformedStatement("payload.provided_at is before payload.requested_at")
            if reason is not None:
                raise MalformedStatement("payload.reason must be null when outcome is provided")
        else:
            if provided_raw is not None:
                raise MalformedStatement("payload.provided_at must be null when not provided")
            if not isinstance(reason, str) or not reason:
                raise MalformedStatement("payload.reason (a code) is required when not provided")
        codes: dict[str, Any] = {}
        if version == 2:
            for name in ("requester_code", "provider_code"):
                if not isinstance(raw[name], str) or not LINK_CODE.fullmatch(raw[name]):
                    raise MalformedStatement(
                        f"payload.{name} must be a link code: 26 characters of A–Z and 2–7")
                codes[name] = raw[name]
            disclose = raw.get("disclose_after")
            # Delayed disclosure: the record stays out of the resident's view until then.
            codes["disclose_after"] = None if disclose is None else parse_time(
                disclose, field="payload.disclose_after")
        application = raw.get("application")
        if application is not None and (not isinstance(application, str)
                                        or not _APPLICATION_ID.fullmatch(application)):
            raise MalformedStatement("payload.application must be an application id (a lowercase "
                                     "UUID, as in its receipt)")
        if application is not None:
            codes["application"] = application
        return cls(
            request_id=raw["request_id"], subject=raw.get("subject"), requester=raw["requester"],
            provider=raw["provider"], basis=raw["basis"], affair=raw["affair"],
            items=tuple(items), requested_at=requested_at, provided_at=provided_at,
            outcome=outcome, reason=reason, non_disclosure=raw["non_disclosure"],
            operator=raw["operator"], version=version, **codes,
        )

    def check_times(self, statement_time: datetime, now: datetime, registered_at: datetime) -> None:
        latest = now + CLOCK_SKEW
        for name, moment in (("statement.time", statement_time),
                             ("payload.requested_at", self.requested_at),
                             ("payload.provided_at", self.provided_at)):
            if moment is not None and moment > latest:
                raise TimeInFuture(
                    f"{name} {moment.isoformat()} is in the future (log time {now.isoformat()})"
                )
        for name, moment in (("statement.time", statement_time),
                             ("payload.requested_at", self.requested_at)):
            if moment < registered_at:
                raise TimeBeforeRegistration(
                    f"{name} {moment.isoformat()} is before the agency's registration at "
                    f"{registered_at.isoformat()}"
                )
