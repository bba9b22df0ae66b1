"""Flags in the views: who may see a record, and the flag history auditors read.

Two tables, each a pure function of the log (so incremental and rebuilt views digest alike):

- ``kiroku_resident_flag`` (resident view): the flags in force per record, with their
  ``disclose_after`` (NULL: until lifted). Whether a record is shown is decided at query time
  against the current time (``disclosed``), so a delayed disclosure needs no job: once the time
  has passed, the record is in the resident's next page.
- ``kiroku_record_flag`` (audit view): every change, in log order: the flag a provision payload
  set itself (reason ``recorded``) and each ``provision.flagged`` entry.

The rule is ledger.flags': a record is withheld while a flag is set whose ``disclose_after`` is
absent or still in the future.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BindParameter, ColumnElement, delete, exists, or_, select, true
from sqlalchemy.orm import Session, aliased

from ledger.encoding import now_utc
from ledger.flags import FLAGGED_TOPIC, RECORDED_REASON
from projections.decode import ProvisionFact, format_micros, micros
from projections.schema import record_flag, resident_flag
from projections.schema import resident_record as rr

__all__ = ["FLAGGED_TOPIC", "FlagFact", "decode_flag", "disclosed", "disclosed_as_of"]


@dataclass(frozen=True, slots=True)
class FlagFact:
    """What a ``provision.flagged`` entry says, with its log position (times in µs, UTC)."""

    index: int
    notification_id: int
    provision: UUID
    agency: str
    flag: str
    set: bool
    reason: str
    disclose_after: int | None
    logged_at: int


def decode_flag(notification_id: int, index: int, state: bytes) -> FlagFact | None:
    fields = json.loads(state)
    return flag_fact(notification_id, index, fields["statement"], fields["payload"],
                     fields["logged_at"])


def flag_fact(notification_id: int, index: int, statement: dict[str, Any],
              payload: dict[str, Any] | None, logged_at: str) -> FlagFact | None:
    if payload is None:
        return None
    after = payload.get("disclose_after")
    return FlagFact(index, notification_id, UUID(payload["provision"]), statement["agency"],
                    payload["flag"], bool(payload["set"]), payload["reason"],
                    micros(after) if after else None, micros(logged_at))


def _initial(f: ProvisionFact) -> tuple[bool, int | None]:
    """(set, disclose_after) of the non-disclosure flag a provision payload sets itself."""
    after = getattr(f, "disclose_after", None)
    return bool(f.non_disclosure or after is not None), after


# Writing --------------------------------------------------------------------------------------
def write_resident_flags(session: Session, facts: Sequence[Any]) -> None:
    """Flags in force per record, after the batch's provision rows were inserted."""
    from projections.views import insert_rows

    initial = []
    for f in facts:
        if isinstance(f, ProvisionFact):
            is_set, after = _initial(f)
            if is_set:
                initial.append((f.index, "non_disclosure", after))
    insert_rows(session, resident_flag, initial)
    for f in facts:
        if not isinstance(f, FlagFact):
            continue
        record = session.execute(select(rr.c.idx).where(rr.c.id == f.provision)).scalar()
        if record is None:
            continue  # erased at the end of retention: nothing left to show
        session.execute(delete(resident_flag).where(resident_flag.c.idx == record,
                                                    resident_flag.c.flag == f.flag))
        if f.set:
            insert_rows(session, resident_flag, [(int(record), f.flag, f.disclose_after)])


def write_flag_history(session: Session, facts: Sequence[Any]) -> None:
    """Every flag change, in log order, for auditors."""
    from projections.views import insert_rows

    rows = []
    for f in facts:
        if isinstance(f, ProvisionFact):
            is_set, after = _initial(f)
            if is_set:
                rows.append((f.index, f.id, f.submitter, "non_disclosure", True, RECORDED_REASON,
                             after, f.logged_at))
        elif isinstance(f, FlagFact):
            rows.append((f.index, f.provision, f.agency, f.flag, f.set, f.reason,
                         f.disclose_after, f.logged_at))
    insert_rows(session, record_flag, rows)


# Reading --------------------------------------------------------------------------------------
def now_micros(now: datetime | None = None) -> int:
    return micros((now or now_utc()).isoformat())


#: A time or log index: a value, or a bound parameter of a statement built once
#: (projections.resident prepares its queries).
Bound = int | BindParameter[Any]


def disclosed(now: Bound) -> ColumnElement[bool]:
    """The resident-view row is shown at ``now`` (µs): no flag in force on it."""
    return ~exists().where(resident_flag.c.idx == rr.c.idx,
                           or_(resident_flag.c.disclose_after.is_(None),
                               resident_flag.c.disclose_after > now))


def disclosed_as_of(now: Bound, as_of: Bound) -> ColumnElement[bool]:
    """As ``disclosed``, with only the flag changes up to log index ``as_of`` applied (the
    history table): a flag is in force if its last change up to then set it, with no
    ``disclose_after`` or one after ``now``."""
    h, later = aliased(record_flag), aliased(record_flag)
    superseded = exists().where(later.c.provision == h.c.provision, later.c.flag == h.c.flag,
                                later.c.idx > h.c.idx, later.c.idx <= as_of)
    return ~exists().where(h.c.provision == rr.c.id, h.c.idx <= as_of, h.c.is_set == true(),
                           or_(h.c.disclose_after.is_(None), h.c.disclose_after > now),
                           ~superseded)


def agency_flags(session: Session, code: str, as_of: int | None, now: int
                 ) -> tuple[list[dict[str, Any]], int]:
    """The flag history of the provisions agency ``code`` requested or provided, and of the
    flags it set as an authority (up to ``as_of``), and how many of its records are withheld."""
    h = record_flag.c
    query = (select(h.idx, h.provision, h.agency, h.flag, h.is_set, h.reason, h.disclose_after,
                    h.logged_at, rr.c.idx.label("record_index"), rr.c.requester, rr.c.provider)
             .join(rr, rr.c.id == h.provision)
             .where(or_(rr.c.requester == code, rr.c.provider == code, h.agency == code))
             .order_by(h.idx))
    if as_of is not None:
        query = query.where(h.idx <= as_of)
    rows = session.execute(query).all()
    changes: list[dict[str, Any]] = []
    state: dict[UUID, dict[str, int | None]] = {}
    for row in rows:
        role = ("requester" if row.agency == row.requester else
                "provider" if row.agency == row.provider else "authority")
        changes.append({
            "index": int(row.idx), "record_index": int(row.record_index),
            "provision": str(row.provision), "flag": row.flag, "set": bool(row.is_set),
            "reason": row.reason, "agency": row.agency, "role": role,
            "disclose_after": None if row.disclose_after is None
            else format_micros(int(row.disclose_after)),
            "logged_at": format_micros(int(row.logged_at))})
        if code in (row.requester, row.provider):
            flags = state.setdefault(row.provision, {})
            if row.is_set:
                flags[row.flag] = row.disclose_after
            else:
                flags.pop(row.flag, None)
    withheld = sum(1 for flags in state.values()
                   if any(until is None or int(until) > now for until in flags.values()))
    return changes, withheld


def visible_condition(as_of: Bound | None, now: Bound) -> ColumnElement[bool]:
    return disclosed(now) if as_of is None else disclosed_as_of(now, as_of)
