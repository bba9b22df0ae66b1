"""The resident's record: every provision about them, as My Portal shows it (Act Art. 23).

Records withheld by a flag — non-disclosure (不開示), the self-information block
(自己情報提供不可), or a delayed disclosure whose time has not come (projections.flags) — never
appear here: they stay in the view, shown to auditors with their history (projections.report),
and are filtered out of every resident- and proxy-facing query.
Pages are newest first and read the (subject, requested_at, idx) index, so a page costs a few
milliseconds whatever the size of the log. Each query shape is built once with bound parameters
(``_statement``): SQLAlchemy then finds its compiled form by a memoised cache key instead of
rebuilding the statement and walking it for a key on every request, which was most of a
page's time in the driver layer.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BindParameter, Connection, Integer, Select, bindparam, func, or_, select

from ledger.application import Ledger
from ledger.proxies import proxy_table
from projections.decode import format_utc, from_micros, micros
from projections.errors import InvalidQuery
from projections.flags import now_micros, visible_condition
from projections.labels import AgencyLabel, ItemLabel, Label, Labels
from projections.schema import resident_record as rr
from projections.store import ViewStore

MAX_LIMIT = 500

__all__ = ["AgencyLabel", "ItemLabel", "Label", "Overview", "Page", "ResidentRecord",
           "ResidentRecords"]

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


#: ledger.proxies.list_for_holder's condition, counted (registrations in force).
_PRINCIPALS = (select(func.count()).select_from(proxy_table)
               .where(proxy_table.c.holder == bindparam("holder"),
                      proxy_table.c.cancelled_at.is_(None)))


@dataclass(frozen=True)
class Overview:
    """What the resident's list page shows at once, read in one transaction (one snapshot):
    a page of records, how many match the filters, and the filter choices (``facets``)."""

    page: Page
    total: int
    agencies: Sequence[AgencyLabel]
    affairs: Sequence[Label]
    #: registrations in force naming the resident as proxy (asked with ``holder``), else 0
    principals: int = 0


# A group of the subject's visible records: requester, provider, affair, basis, how many.
_Group = tuple[str, str, str, str, int]

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
        query = _Query.of(subject, since, until, agency, affair, cursor, limit, as_of)
        with self._connection() as connection:
            return self._page(connection, query)

    def count(self, subject: str, *, since: datetime | None = None,
              until: datetime | None = None, agency: str | None = None,
              affair: str | None = None) -> int:
        """How many of the subject's visible records match the filters (as ``list`` takes them):
        the page shows "N records" above the first page."""
        query = _Query.of(subject, since, until, agency, affair)
        with self._connection() as connection:
            return self._count(connection, query)

    def facets(self, subject: str) -> tuple[Sequence[AgencyLabel], Sequence[Label]]:
        """The agencies and affairs that occur in the subject's visible records: the choices a
        filter offers, so it never lists an agency that has no record about them."""
        query = _Query.of(subject)
        with self._connection() as connection:
            return self._facets(self._groups(connection, query))

    def overview(self, subject: str, *, since: datetime | None = None,
                 until: datetime | None = None, agency: str | None = None,
                 affair: str | None = None, cursor: str | None = None,
                 limit: int = 50, holder: str | None = None) -> Overview:
        """``list``, ``count`` and ``facets`` together, from one snapshot: the page's records,
        the number matching the filters and the filter choices. One grouped query gives the
        choices and, unless a date filter is set, the count too (a record matches ``agency``
        and ``affair`` by its group's columns). With ``holder``, also how many residents the
        holder acts for as proxy (the page links to them), in the same transaction."""
        query = _Query.of(subject, since, until, agency, affair, cursor, limit)
        principals = 0
        with self._connection() as connection:
            if holder is not None:
                principals = int(connection.execute(_PRINCIPALS, {"holder": holder}).scalar()
                                 or 0)
            page = self._page(connection, query)
            groups = self._groups(connection, _Query.of(subject))
            if since is not None or until is not None:
                total = self._count(connection, query)
            else:
                total = sum(n for requester, provider, affair_id, _basis, n in groups
                            if (agency is None or agency in (requester, provider))
                            and (affair is None or affair == affair_id))
        agencies, affairs = self._facets(groups)
        return Overview(page, total, agencies, affairs, principals)

    def get(self, subject: str, provision_id: UUID) -> ResidentRecord | None:
        """One of the subject's records by provision id; None if absent, another resident's,
        or non-disclosed."""
        with self._connection() as connection:
            row = connection.execute(_statement("get", False, False, False, False, False, False),
                                     {"subject": subject, "now": now_micros(),
                                      "id": provision_id}).first()
        return None if row is None else self._record(row)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A read-only transaction's connection: Core execution of prepared statements, without
        the ORM session's per-statement work (nothing here loads ORM objects)."""
        self.store.check_schema()
        with self.store.read() as session:
            yield session.connection()

    def _page(self, connection: Connection, query: _Query) -> Page:
        rows = connection.execute(_statement("list", *query.shape), query.params).all()
        applied = self.store.applied_index(connection, "resident")
        limit = query.params["limit"] - 1
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1].requested_at, rows[-1].idx) if more else None
        as_of = query.params.get("as_of")
        if as_of is not None and applied is not None:
            applied = min(applied, as_of)
        return Page([self._record(row) for row in rows], next_cursor, applied)

    @staticmethod
    def _count(connection: Connection, query: _Query) -> int:
        shape = query.shape[:4] + (False, False)  # no cursor, no as_of
        return int(connection.execute(_statement("count", *shape), query.params).scalar_one())

    @staticmethod
    def _groups(connection: Connection, query: _Query) -> Sequence[_Group]:
        rows = connection.execute(_statement("groups", *query.shape), query.params).all()
        return [(row[0], row[1], row[2], row[3], int(row[4])) for row in rows]

    def _facets(self, groups: Sequence[_Group]
                ) -> tuple[Sequence[AgencyLabel], Sequence[Label]]:
        agencies = {code for row in groups for code in (row[0], row[1])}
        affairs = {row[2]: row[3] for row in groups}
        labels = self.labels
        return (sorted((labels.agency(code) for code in agencies), key=lambda a: a.code),
                sorted((labels.affair(a, b) for a, b in affairs.items()), key=lambda a: a.id))

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


@dataclass(frozen=True, slots=True)
class _Query:
    """A read's parameters, checked, and its shape (which optional conditions it has): the key
    of its prepared statement."""

    shape: tuple[bool, bool, bool, bool, bool, bool]  # since, until, agency, affair, cursor, as_of
    params: dict[str, Any]

    @classmethod
    def of(cls, subject: str, since: datetime | None = None, until: datetime | None = None,
           agency: str | None = None, affair: str | None = None, cursor: str | None = None,
           limit: int = 50, as_of: int | None = None) -> _Query:
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        if as_of is not None and as_of < 0:
            raise InvalidQuery(f"as_of must be a log index (≥ 0), got {as_of}")
        # Flags (不開示, 自己情報提供不可, delayed disclosure) are checked against the current
        # time at every read: a record whose disclose_after has passed is simply shown.
        params: dict[str, Any] = {"subject": subject, "now": now_micros(), "limit": limit + 1}
        if since is not None:
            params["since"] = _micros(since, "since")
        if until is not None:
            params["until"] = _micros(until, "until")
        if agency is not None:
            params["agency"] = agency
        if affair is not None:
            params["affair"] = affair
        if cursor is not None:
            params["at"], params["index"] = _decode_cursor(cursor)
        if as_of is not None:
            params["as_of"] = as_of
        shape = (since is not None, until is not None, agency is not None, affair is not None,
                 cursor is not None, as_of is not None)
        return cls(shape, params)


@functools.cache
def _statement(kind: str, since: bool, until: bool, agency: bool, affair: bool, cursor: bool,
               as_of: bool) -> Select[Any]:
    """The statement of one query shape, built once; values travel as bound parameters."""
    now: BindParameter[int] = bindparam("now")
    visible = visible_condition(bindparam("as_of") if as_of else None, now)
    if kind == "count":
        query = select(func.count()).select_from(rr)
    elif kind == "groups":
        query = (select(rr.c.requester, rr.c.provider, rr.c.affair, rr.c.basis, func.count())
                 .group_by(rr.c.requester, rr.c.provider, rr.c.affair, rr.c.basis))
    else:
        query = select(*_COLUMNS)
    query = query.where(rr.c.subject == bindparam("subject"), visible)
    if as_of:
        query = query.where(rr.c.idx <= bindparam("as_of"))
    if kind == "get":
        return query.where(rr.c.id == bindparam("id")).order_by(rr.c.idx).limit(1)
    if since:
        query = query.where(rr.c.requested_at >= bindparam("since"))
    if until:
        query = query.where(rr.c.requested_at < bindparam("until"))
    if agency:
        query = query.where(or_(rr.c.requester == bindparam("agency"),
                                rr.c.provider == bindparam("agency")))
    if affair:
        query = query.where(rr.c.affair == bindparam("affair"))
    if kind != "list":
        return query
    if cursor:
        at: BindParameter[int] = bindparam("at")
        query = query.where(rr.c.requested_at <= at,
                            or_(rr.c.requested_at < at, rr.c.idx < bindparam("index")))
    return (query.order_by(rr.c.requested_at.desc(), rr.c.idx.desc())
            .limit(bindparam("limit", type_=Integer)))


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
