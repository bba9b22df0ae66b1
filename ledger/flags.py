"""Flags set or lifted after a provision was recorded: non-disclosure (不開示) and the
self-information block (自己情報提供不可), with delayed disclosure (docs/log-format.md,
"provision.flagged").

A flag statement is an agency's signed claim like a provision statement: "I set (or lift) flag F
on provision P for reason R, until T". The ledger accepts it from the provision's requester or
provider, or from an *authority* (an agency registered with kind ``authority``), refuses a lift of
a flag that is not in force, and appends it as a further event of the provision's aggregate
(version 2, 3, …), so concurrent flag statements about one provision serialise on the event
table's unique (originator, version) index. Like every entry it carries only a salted commitment
to its payload; the payload names a provision id, a flag and a reason code, never a resident.

What "in force" means (the rule every reader applies, projections included): a record is
withheld from its resident and their proxies while any flag is set and either has no
``disclose_after`` or ``disclose_after`` is still in the future. A provision payload's own
``non_disclosure: true`` or ``disclose_after`` count as the non-disclosure flag set when the record
was appended by its submitter.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic
from sqlalchemy import select

from ledger.domain import Logged, Provision
from ledger.encoding import format_time, now_utc, parse_time
from ledger.errors import (
    MalformedStatement,
    StatementRejected,
    SubmitterNotParty,
)
from ledger.schema import log_entry
from ledger.signing import check_shape
from ledger.storage import AppendedEntry
from ledger.submitters import check_agency_statement

if TYPE_CHECKING:
    from ledger.application import Ledger, Receipt

KIND = "provision.flagged"
#: An agency registered with this kind may set and lift flags on any provision (e.g. the
#: Personal Information Protection Commission, a court, a police authority).
AUTHORITY_KIND = "authority"
FLAGS = frozenset({"non_disclosure", "self_information_block"})
#: Reason codes (docs/log-format.md). Grounds follow the Act on the Protection of Personal
#: Information Art. 78(1) (grounds for non-disclosure) and the DV/stalking support measures of
#: the Basic Resident Registration Act (住民基本台帳事務における支援措置).
REASONS = frozenset({
    "dv_support_measure",      # a victim of DV, stalking or child abuse under support measures
    "life_or_body",            # disclosure would endanger someone's life, body or property
    "criminal_investigation",  # crime prevention or investigation (Art. 78(1)(5))
    "affair_obstruction",      # disclosure would obstruct the affair (Art. 78(1)(7))
    "legal_proceedings",       # court or administrative proceedings under way
    "court_order",
    "resident_request",        # the resident asked for the block
    "grounds_ceased",          # (lift) the grounds no longer apply
    "set_in_error",            # (lift) the flag was set by mistake
})
#: The reason shown for a flag that came with the provision payload itself.
RECORDED_REASON = "recorded"
REQUIRED_KEYS = frozenset({"provision", "flag", "set", "reason"})
OPTIONAL_KEYS = frozenset({"disclose_after"})


class UnknownProvision(StatementRejected):
    """The flag names a provision the log does not hold (or whose payload was erased)."""

    code = "unknown-provision"


class FlagSubmitterNotAllowed(SubmitterNotParty):
    """The submitter is neither the provision's requester or provider nor an authority."""

    code = "flag-submitter-not-allowed"


class UnknownFlag(StatementRejected):
    code = "unknown-flag"


class UnknownReason(StatementRejected):
    code = "unknown-reason"


class FlagNotSet(StatementRejected):
    """A lift of a flag that is not in force on the provision."""

    code = "flag-not-set"


class ProvisionFlagged(Logged):
    """A flag set or lifted on a provision, after it was recorded (kind ``provision.flagged``).
    The aggregate's state does not change: readers fold the flag events (``flag_state``)."""


FLAGGED_TOPIC = get_topic(ProvisionFlagged)
_RECORDED_TOPIC = get_topic(Provision.Recorded)


@dataclass(frozen=True)
class FlagPayload:
    provision: uuid.UUID
    flag: str
    set: bool
    reason: str
    disclose_after: datetime | None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> FlagPayload:
        keys = set(raw)
        missing, extra = REQUIRED_KEYS - keys, keys - REQUIRED_KEYS - OPTIONAL_KEYS
        if missing or extra:
            parts = ([f"missing {sorted(missing)}"] if missing else []) + (
                [f"unknown {sorted(extra)}"] if extra else [])
            raise MalformedStatement(f"flag payload: {'; '.join(parts)}")
        try:
            provision = uuid.UUID(raw["provision"]) if isinstance(raw["provision"], str) else None
        except ValueError:
            provision = None
        if provision is None or str(provision) != raw["provision"]:
            raise MalformedStatement("payload.provision must be a provision id (a lowercase UUID "
                                     "as in the provision's receipt)")
        if not isinstance(raw["set"], bool):
            raise MalformedStatement("payload.set must be true (set the flag) or false (lift it)")
        flag, reason = raw["flag"], raw["reason"]
        if flag not in FLAGS:
            raise UnknownFlag(f"payload.flag must be one of {sorted(FLAGS)}")
        if reason not in REASONS:
            raise UnknownReason(f"payload.reason must be one of {sorted(REASONS)}")
        after_raw = raw.get("disclose_after")
        disclose_after = None
        if after_raw is not None:
            if not raw["set"]:
                raise MalformedStatement("payload.disclose_after only goes with set: true "
                                         "(a lift takes effect at once)")
            disclose_after = parse_time(after_raw, field="payload.disclose_after")
        return cls(provision, flag, raw["set"], reason, disclose_after)


@dataclass(frozen=True)
class FlagChange:
    """One step of a provision's flag history, as auditors see it."""

    index: int  # the log index of the entry that made the change
    flag: str
    set: bool
    reason: str
    disclose_after: str | None
    agency: str  # who signed it
    role: str  # "requester", "provider" or "authority" (as far as the provision tells)
    time: str  # the statement's time
    logged_at: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "flag": self.flag, "set": self.set, "reason": self.reason,
                "disclose_after": self.disclose_after, "agency": self.agency, "role": self.role,
                "time": self.time, "logged_at": self.logged_at}


@dataclass(frozen=True)
class FlagHistory:
    provision: uuid.UUID
    index: int  # the provision's own log index
    requester: str
    provider: str
    changes: list[FlagChange]

    def in_force(self, now: datetime | None = None) -> dict[str, str | None]:
        """The flags in force at ``now``: flag → disclose_after (None: until lifted)."""
        return in_force(self.changes, now or now_utc())

    def withheld(self, now: datetime | None = None) -> bool:
        return bool(self.in_force(now))

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        return {"provision": str(self.provision), "index": self.index,
                "requester": self.requester, "provider": self.provider,
                "in_force": self.in_force(now), "withheld": self.withheld(now),
                "changes": [c.to_json() for c in self.changes]}


def in_force(changes: Sequence[FlagChange], now: datetime) -> dict[str, str | None]:
    """Fold changes in log order; a flag whose disclose_after has passed is no longer in force."""
    state: dict[str, str | None] = {}
    for change in changes:
        if change.set:
            state[change.flag] = change.disclose_after
        else:
            state.pop(change.flag, None)
    return {flag: until for flag, until in state.items()
            if until is None or parse_time(until, field="disclose_after") > now}


def recorded_changes(index: int, statement: dict[str, Any], payload: dict[str, Any],
                     logged_at: str) -> list[FlagChange]:
    """The flag a provision payload sets itself (non_disclosure, or a delayed disclosure)."""
    after = payload.get("disclose_after")
    if not payload.get("non_disclosure") and after is None:
        return []
    agency = statement["agency"]
    return [FlagChange(index, "non_disclosure", True, RECORDED_REASON, after, agency,
                       _role(agency, payload), statement["time"], logged_at)]


def _role(agency: str, payload: dict[str, Any]) -> str:
    if agency == payload.get("requester"):
        return "requester"
    if agency == payload.get("provider"):
        return "provider"
    return "authority"


# Reading --------------------------------------------------------------------------------------
def get_history(ledger: Ledger, provision: uuid.UUID, session: Any = None
                ) -> tuple[FlagHistory | None, int]:
    """The provision's flag history from the log itself, and its aggregate's last version.

    None when the log holds no such provision or its payload was erased (nothing to flag).
    """
    events = ledger.log.events_record_cls.__table__
    query = (select(events.c.originator_version, events.c.topic, events.c.state, log_entry.c.idx)
             .join(log_entry, log_entry.c.notification_id == events.c.id)
             .where(events.c.originator_id == provision).order_by(events.c.originator_version))
    if session is None:
        with ledger.log.transaction(commit=False) as own:
            rows = own.execute(query).all()
    else:
        rows = session.execute(query).all()
    if not rows or rows[0].topic != _RECORDED_TOPIC:
        return None, 0
    first = json.loads(rows[0].state)
    payload = first["payload"]
    if payload is None:
        return None, int(rows[-1].originator_version)
    changes = recorded_changes(int(rows[0].idx), first["statement"], payload, first["logged_at"])
    for row in rows[1:]:
        if row.topic != FLAGGED_TOPIC:
            continue
        fields = json.loads(row.state)
        flagged = fields["payload"]
        if flagged is None:
            continue
        statement = fields["statement"]
        changes.append(FlagChange(
            int(row.idx), flagged["flag"], flagged["set"], flagged["reason"],
            flagged.get("disclose_after"), statement["agency"],
            _role(statement["agency"], payload), statement["time"], fields["logged_at"]))
    history = FlagHistory(provision, int(rows[0].idx), payload["requester"], payload["provider"],
                          changes)
    return history, int(rows[-1].originator_version)


# Appending ------------------------------------------------------------------------------------
def append_flag(ledger: Ledger, submission: Any) -> Receipt:
    """Check and append one signed ``provision.flagged`` statement; the same statement again
    gets the same receipt."""
    from ledger.application import Receipt

    check_shape(submission)
    statement = submission["statement"]
    if statement["kind"] != KIND:
        raise MalformedStatement(f"statement.kind must be {KIND!r} here, got "
                                 f"{statement['kind']!r}")
    payload = FlagPayload.parse(submission["payload"])
    now = now_utc()
    moment = parse_time(statement["time"], field="statement.time")
    agency = check_agency_statement(ledger, submission, moment, now)
    for attempt in range(3):
        try:
            found = _append_checked(ledger, submission, payload, agency.kind, moment, now)
            return Receipt(payload.provision, found.index, found.leaf, found.leaf_hash)
        except IntegrityError:
            # Another flag about the same provision took this version: re-read and re-check.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _append_checked(ledger: Ledger, submission: dict[str, Any], payload: FlagPayload,
                    submitter_kind: str, moment: datetime, now: datetime) -> AppendedEntry:
    statement = submission["statement"]
    submitter = statement["agency"]
    appended: list[AppendedEntry] = []
    with ledger.log.write_transaction() as session:
        history, version = get_history(ledger, payload.provision, session)
        if history is None:
            raise UnknownProvision(
                f"the log holds no provision {payload.provision} with its payload (unknown, or "
                "erased at the end of retention)")
        if submitter not in (history.requester, history.provider) and (
                submitter_kind != AUTHORITY_KIND):
            raise FlagSubmitterNotAllowed(
                f"agency {submitter!r} is neither the requester nor the provider of provision "
                f"{payload.provision}, nor an authority")
        same = _same_statement(ledger, session, payload.provision, submission)
        if same is not None:
            return same
        if not payload.set and payload.flag not in history.in_force(now):
            raise FlagNotSet(f"flag {payload.flag!r} is not in force on provision "
                             f"{payload.provision}: there is nothing to lift")
        event = ProvisionFlagged(  # type: ignore[call-arg]  # fields come from Logged
            originator_id=payload.provision, originator_version=version + 1,
            timestamp=ProvisionFlagged.create_timestamp(), statement=statement,
            signature=submission["signature"], payload=submission["payload"],
            salt=submission["salt"], logged_at=format_time(now))

        def key_still_valid(top: int) -> None:
            ledger.refresh_registry(top=top)
            ledger.registry.key_for(submitter, statement["key_id"], moment, now)

        ledger.log.insert_events([ledger.mapper.to_stored_event(event)], session=session,
                                 log_entries=[event.log_entry()], appended=appended,
                                 precommit=key_still_valid)
    return appended[0]


def _same_statement(ledger: Ledger, session: Any, provision: uuid.UUID,
                    submission: dict[str, Any]) -> AppendedEntry | None:
    """The entry of this very statement if it was appended before (a replay appends nothing)."""
    events = ledger.log.events_record_cls.__table__
    rows = session.execute(
        select(events.c.id, events.c.state, log_entry.c.idx, log_entry.c.leaf,
               log_entry.c.leaf_hash)
        .join(log_entry, log_entry.c.notification_id == events.c.id)
        .where(events.c.originator_id == provision, events.c.topic == FLAGGED_TOPIC)).all()
    for row in rows:
        fields = json.loads(row.state)
        if (fields["statement"], fields["signature"]) == (submission["statement"],
                                                          submission["signature"]):
            return AppendedEntry(int(row.idx), int(row.id), bytes(row.leaf), bytes(row.leaf_hash))
    return None


def flag_payload(provision: uuid.UUID | str, flag: str, *, set: bool, reason: str,
                 disclose_after: datetime | None = None) -> dict[str, Any]:
    """A flag payload ready for ``sign_statement(…, kind=KIND)`` (what ``kiroku sign`` takes)."""
    payload: dict[str, Any] = {"provision": str(provision), "flag": flag, "set": set,
                               "reason": reason}
    if disclose_after is not None:
        payload["disclose_after"] = format_time(disclose_after)
    return cast(dict[str, Any], payload)
