"""The resident's record: every provision about them, as My Portal shows it (Act Art. 23).

Records withheld by a flag — non-disclosure (不開示), the self-information block
(自己情報提供不可), or a delayed disclosure whose time has not come (projections.flags) — never
appear here: they stay in the view, shown to auditors with their history (projections.report),
and are filtered out of every resident- and proxy-facing query.
Pages are newest first and read the (subject, requested_at, idx) index, so a page costs a few
milliseconds whatever the size of the log.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, func, or_, select

from ledger.application import Ledger
from projections.decode import format_utc, from_micros, micros
from projections.errors import InvalidQuery
from projections.flags import disclosed, now_micros, visible_condition
from projections.labels import AgencyLabel, ItemLabel, Label, Labels
from projections.schema import resident_record as rr
from projections.store import ViewStore

MAX_LIMIT = 500

__all__ = ["AgencyLabel", "ItemLabel", "Label", "Page", "ResidentRecord", "ResidentRecords"]

@dataclass(frozen=True)
class ResidentRecord:
    id: UUID
    index: int
    requested_at: datetime
    provided_at: datetime | None
    requester: AgencyLabel
    provider: AgencyLabel
    affair: Label
    basis: str
    items: list[ItemLabel]
    outcome: str
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "index": self.index,
            "requested_at": _rfc3339(self.requested_at),
            "provided_at": None if self.provided_at is None else _rfc3339(self.provided_at),
            "requester": self.requester.to_json(),
            "provider": self.provider.to_json(),
            "affair": self.affair.to_json(),
            "basis": self.basis,
            "items": [item.to_json() for item in self.items],
            "outcome": self.outcome,
            "reason": self.reason,
        }

@dataclass(frozen=True)
class Page:
    items: list[ResidentRecord] = field(default_factory=list)
    next_cursor: str | None = None
    as_of: int | None = None  # the last log index the view had applied when read

    def to_json(self) -> dict[str, Any]:
        return {"items": [r.to_json() for r in self.items], "next_cursor": self.next_cursor,
                "as_of": self.as_of}

# The columns a record needs, in the order ``_record`` unpacks them.
_COLUMNS = (rr.c.idx, rr.c.id, rr.c.requested_at, rr.c.provided_at, rr.c.requester,
            rr.c.provider, rr.c.basis, rr.c.affair, rr.c["items"], rr.c.outcome, rr.c.reason)


class ResidentRecords:
    """Queries over the resident view. Thread-safe: each call is one read transaction."""

    def __init__(self, store: ViewStore, labels: Labels) -> None:
        self.store = store
        self.labels = labels

    @classmethod
    def for_ledger(cls, ledger: Ledger) -> ResidentRecords:
        from projections.runner import runner_for

        return cls(runner_for(ledger).store, Labels.for_ledger(ledger))

    def list(
        self,
        subject: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        agency: str | None = None,
        affair: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
        as_of: int | None = None,
    ) -> Page:
        """The subject's records, newest first; ``since`` inclusive, ``until`` exclusive
        (request times); ``agency`` matches requester or provider; ``as_of`` is the last log
        index to include (what the record showed once that entry was applied)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        query = _filtered(self._visible(subject, as_of), since, until, agency, affair)
        if cursor is not None:
            at, index = _decode_cursor(cursor)
            query = query.where(rr.c.requested_at <= at,
                                or_(rr.c.requested_at < at, rr.c.idx < index))
        query = query.order_by(rr.c.requested_at.desc(), rr.c.idx.desc()).limit(limit + 1)
        self.store.check_schema()
        with self.store.read() as session:
            rows = session.execute(query).all()
            applied = self.store.applied_index(session, "resident")
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1].requested_at, rows[-1].idx) if more else None
        if as_of is not None and applied is not None:
            applied = min(applied, as_of)
        return Page([self._record(row) for row in rows], next_cursor, applied)

    def count(self, subject: str, *, since: datetime | None = None,
              until: datetime | None = None, agency: str | None = None,
              affair: str | None = None) -> int:
        """How many of the subject's visible records match the filters (as ``list`` takes them):
        the page shows "N records" above the first page."""
        query = select(func.count()).select_from(rr).where(
            rr.c.subject == subject, disclosed(now_micros()))
        query = _filtered(query, since, until, agency, affair)
        self.store.check_schema()
        with self.store.read() as session:
            return int(session.execute(query).scalar_one())

    def facets(self, subject: str) -> tuple[Sequence[AgencyLabel], Sequence[Label]]:
        """The agencies and affairs that occur in the subject's visible records: the choices a
        filter offers, so it never lists an agency that has no record about them."""
        query = (select(rr.c.requester, rr.c.provider, rr.c.affair, rr.c.basis)
                 .where(rr.c.subject == subject, disclosed(now_micros())).distinct())
        self.store.check_schema()
        with self.store.read() as session:
            rows = session.execute(query).all()
        agencies = {code for row in rows for code in (row[0], row[1])}
        affairs = {row[2]: row[3] for row in rows}
        labels = self.labels
        return (sorted((labels.agency(code) for code in agencies), key=lambda a: a.code),
                sorted((labels.affair(a, b) for a, b in affairs.items()), key=lambda a: a.id))

    def get(self, subject: str, provision_id: UUID) -> ResidentRecord | None:
        """One of the subject's records by provision id; None if absent, another resident's,
        or non-disclosed."""
        query = self._visible(subject, None).where(rr.c.id == provision_id)
        self.store.check_schema()
        with self.store.read() as session:
            row = session.execute(query.order_by(rr.c.idx).limit(1)).first()
        return None if row is None else self._record(row)

    @staticmethod
    def _visible(subject: str, as_of: int | None) -> Select[Any]:
        if as_of is not None and as_of < 0:
            raise InvalidQuery(f"as_of must be a log index (≥ 0), got {as_of}")
        # Flags (不開示, 自己情報提供不可, delayed disclosure) are checked against the current
        # time at every read: a record whose disclose_after has passed is simply shown.
        query = select(*_COLUMNS).where(rr.c.subject == subject,
                                        visible_condition(as_of, now_micros()))
        if as_of is not None:
            query = query.where(rr.c.idx <= as_of)
        return query

    def _record(self, row: Any) -> ResidentRecord:
        # Positional: a page builds fifty of these, and Row attribute look-ups by name add up.
        idx, id_, requested_at, provided_at, requester, provider, basis, affair, items, outcome, \
            reason = row
        labels = self.labels
        return ResidentRecord(
            id_, int(idx), from_micros(requested_at),
            None if provided_at is None else from_micros(provided_at),
            labels.agency(requester), labels.agency(provider), labels.affair(affair, basis),
            basis, labels.items(items), outcome, reason,
        )

_rfc3339 = format_utc


def _filtered(query: Select[Any], since: datetime | None, until: datetime | None,
              agency: str | None, affair: str | None) -> Select[Any]:
    if since is not None:
        query = query.where(rr.c.requested_at >= _micros(since, "since"))
    if until is not None:
        query = query.where(rr.c.requested_at < _micros(until, "until"))
    if agency is not None:
        query = query.where(or_(rr.c.requester == agency, rr.c.provider == agency))
    if affair is not None:
        query = query.where(rr.c.affair == affair)
    return query


def _micros(moment: datetime, name: str) -> int:
    if moment.tzinfo is None:
        raise InvalidQuery(f"{name} must carry a time zone (for example 2026-04-01T00:00:00Z)")
    return micros(moment.isoformat())

def _encode_cursor(at: int, index: int) -> str:
    return base64.urlsafe_b64encode(f"{at}:{index}".encode()).decode().rstrip("=")

def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, index = text.split(":")
        return int(at), int(index)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery("cursor is not one this service issued; "
                           "start again without a cursor") from None
