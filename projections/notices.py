"""The notices view (お知らせ, docs/notices.md): which notices apply to whom, read marks, and the
agencies' delivery counts.

- ``kiroku_notice`` is a pure function of the log (rebuilt with identical digests): one row per
  ``notice.issued`` entry, an individual notice with the pseudonym its link code stands for
  (resolved through the registry, as provisions of version 2 are), a group notice with its
  criteria as columns.
- Group membership is not stored: it is decided when read, against the attributes the issuing
  agency holds (``kiroku_resident_attribute``), so a resident who moves or has a birthday sees
  the notices that apply to them now, and the view never lists a group's members.
- ``kiroku_notice_read`` holds the residents' read marks. It is not derived from the log, so a
  rebuild keeps it; agencies read only its counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.encoding import format_time, now_utc
from ledger.linkcodes import lookup_codes
from ledger.notices import NOTICE_TOPIC, age_band, birth_bounds, matches, resident_attribute
from projections.decode import format_micros, micros

__all__ = ["NOTICE_TOPIC", "NoticeFact", "Notices", "decode_notices", "notice", "notice_read"]

NOTICE_TRACKING = "kiroku_notice_tracking"
_BigInt = BigInteger().with_variant(Integer(), "sqlite")
metadata = MetaData()

#: One row per notice entry (migration 0010). ``subject`` is set for an individual notice only.
notice = Table(
    "kiroku_notice",
    metadata,
    Column("idx", _BigInt, primary_key=True, autoincrement=False),
    Column("id", Uuid(), nullable=False, unique=True),
    Column("agency", Text, nullable=False),
    Column("notice_id", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("title_ja", Text, nullable=False),
    Column("title_en", Text, nullable=True),
    Column("body_ja", Text, nullable=False),
    Column("body_en", Text, nullable=True),
    Column("valid_from", _BigInt, nullable=False),
    Column("valid_until", _BigInt, nullable=False),
    Column("subject", Text, nullable=True),
    Column("age_min", Integer, nullable=True),
    Column("age_max", Integer, nullable=True),
    Column("municipality", Text, nullable=True),
    Column("district", Text, nullable=True),
    Column("household_type", Text, nullable=True),
    Column("form", Text, nullable=True),  # JSON, as in the payload
    Column("issued_at", _BigInt, nullable=False),
    Index("kiroku_notice_subject", "subject", "idx"),
    Index("kiroku_notice_agency", "agency", "idx"),
)

#: A resident's read mark on a notice (not in the log; kept across rebuilds).
notice_read = Table(
    "kiroku_notice_read",
    metadata,
    Column("notice", Uuid(), primary_key=True),
    Column("subject", Text, primary_key=True),
    Column("read_at", Text, nullable=False),
)


@dataclass(frozen=True, slots=True)
class NoticeFact:
    """What a ``notice.issued`` entry says, with its log position (times in µs, UTC)."""

    index: int
    notification_id: int
    row: tuple[Any, ...]  # in kiroku_notice's column order


def decode_notices(session: Session, rows: Iterable[tuple[int, int, UUID, bytes]]
                   ) -> list[NoticeFact]:
    """Facts of (notification id, index, aggregate id, state) rows; individual targets resolve
    through the link-code registry in one read. Erased payloads leave nothing to show."""
    decoded = []
    for notification_id, index, ident, state in rows:
        fields = json.loads(state)
        if fields["payload"] is not None:
            decoded.append((notification_id, index, ident, fields))
    codes = [f["payload"]["target"]["code"] for *_, f in decoded
             if f["payload"]["target"]["type"] == "individual"]
    found = lookup_codes(session, codes) if codes else {}
    facts = []
    for notification_id, index, ident, fields in decoded:
        payload, statement = fields["payload"], fields["statement"]
        target = payload["target"]
        subject = None
        criteria: dict[str, Any] = {}
        if target["type"] == "individual":
            hit = found.get(target["code"])
            subject = hit[1] if hit is not None and hit[0] == statement["agency"] else None
            if subject is None:
                continue  # accepted only after resolving: a registry restored without the code
        else:
            criteria = dict(target["criteria"])
        low, high = age_band(criteria["age_band"]) if "age_band" in criteria else (None, None)
        form = payload.get("form")
        facts.append(NoticeFact(index, notification_id, (
            index, ident, statement["agency"], payload["notice_id"], payload["category"],
            payload["title"]["ja"], payload["title"].get("en"), payload["body"]["ja"],
            payload["body"].get("en"), micros(payload["valid_from"]),
            micros(payload["valid_until"]), subject, low, high, criteria.get("municipality"),
            criteria.get("district"), criteria.get("household_type"),
            None if form is None else json.dumps(form, ensure_ascii=False, sort_keys=True),
            micros(statement["time"]))))
    return facts


def write_notices(session: Session, facts: Sequence[Any]) -> None:
    from projections.views import insert_rows

    insert_rows(session, notice, [f.row for f in facts if isinstance(f, NoticeFact)])


# Reading --------------------------------------------------------------------------------------
def today_jst(now: datetime) -> date:
    """Ages are counted on the resident's calendar day (Japan Standard Time, UTC+9)."""
    return (now + timedelta(hours=9)).date()


def _criteria(row: Any) -> dict[str, Any]:
    return {"age_min": row.age_min, "age_max": row.age_max, "municipality": row.municipality,
            "district": row.district, "household_type": row.household_type}


def _notice_json(row: Any, *, criteria: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(row.id), "index": int(row.idx), "agency": row.agency,
        "notice_id": row.notice_id, "category": row.category,
        "title": {"ja": row.title_ja, **({"en": row.title_en} if row.title_en else {})},
        "body": {"ja": row.body_ja, **({"en": row.body_en} if row.body_en else {})},
        "valid_from": format_micros(int(row.valid_from)),
        "valid_until": format_micros(int(row.valid_until)),
        "target": "individual" if row.subject is not None else "group",
        "form": None if row.form is None else json.loads(row.form),
        "issued_at": format_micros(int(row.issued_at)),
    }
    if criteria and row.subject is None:
        found = {k: v for k, v in _criteria(row).items()
                 if v is not None and k not in ("age_min", "age_max")}
        if row.age_min is not None:
            found["age_band"] = f"{row.age_min}-{row.age_max}"
        out["criteria"] = found
    return out


def _same_place(agency: str, attributes: dict[str, Any]) -> Any:
    """SQL: a group notice of ``agency`` whose municipality, district and household type are
    each unset or the resident's (``ledger.notices.matches``' equality part)."""
    condition = [notice.c.agency == agency]
    for name in ("municipality", "district", "household_type"):
        column, value = notice.c[name], attributes.get(name)
        condition.append(column.is_(None) if value is None
                         else or_(column.is_(None), column == value))
    return and_(*condition)


class Notices:
    """Queries over the notices view: a resident's notices, read marks, agencies' counts."""

    def __init__(self, store: Any) -> None:
        self.store = store

    @classmethod
    def for_ledger(cls, ledger: Any) -> Notices:
        from projections.runner import runner_for

        return cls(runner_for(ledger).store)

    def _applicable(self, session: Session, subject: str, now: datetime,
                    ident: UUID | None = None) -> list[Any]:
        """Rows of the notices in their validity period that apply to ``subject`` now, each
        with the resident's ``read_at`` (None: unread). Two queries: the resident's attributes,
        then their own notices and the group notices of their place, with the read marks."""
        moment = micros(format_time(now))
        live = and_(notice.c.valid_from <= moment, notice.c.valid_until > moment)
        if ident is not None:
            live = and_(live, notice.c.id == ident)
        attributes = {row.agency: dict(row._mapping) for row in session.execute(
            select(resident_attribute).where(resident_attribute.c.subject == subject))}
        # The place and household criteria are compared in the query (a notice for another
        # district is never read); ages, judged on today's date, in ``matches`` below.
        addressed = or_(notice.c.subject == subject, *(
            and_(notice.c.subject.is_(None), _same_place(agency, found))
            for agency, found in attributes.items()))
        rows = session.execute(
            select(notice, notice_read.c.read_at)
            .outerjoin(notice_read, and_(notice_read.c.notice == notice.c.id,
                                         notice_read.c.subject == subject))
            .where(live, addressed)).all()
        today = today_jst(now)
        return [row for row in rows if row.subject is not None
                or matches(_criteria(row), attributes[row.agency], today)]

    def list(self, subject: str, now: datetime | None = None) -> dict[str, Any]:
        """Unread first, then newest first (log order)."""
        now = now or now_utc()
        with self.store.read() as session:
            rows = self._applicable(session, subject, now)
        items = []
        for row in rows:
            item = _notice_json(row, criteria=False)
            item["read_at"] = row.read_at
            items.append(item)
        items.sort(key=lambda i: (i["read_at"] is not None, -i["index"]))
        return {"items": items, "unread": sum(1 for i in items if i["read_at"] is None)}

    def get(self, subject: str, ident: UUID, now: datetime | None = None
            ) -> dict[str, Any] | None:
        now = now or now_utc()
        with self.store.read() as session:
            rows = self._applicable(session, subject, now, ident)
        if not rows:
            return None
        item = _notice_json(rows[0], criteria=False)
        item["read_at"] = rows[0].read_at
        return item

    def mark_read(self, subject: str, ident: UUID, now: datetime | None = None
                  ) -> dict[str, Any] | None:
        """Mark the notice read (idempotent: the first time is kept). None when it does not
        apply to ``subject`` now."""
        now = now or now_utc()
        if self.get(subject, ident, now) is None:
            return None
        try:
            with self.store.write() as session:
                if not self._marks(session, subject, [ident]):
                    session.execute(notice_read.insert().values(
                        notice=ident, subject=subject, read_at=format_time(now)))
        except IntegrityError:
            pass  # a concurrent mark of the same notice: the first one stands
        return self.get(subject, ident, now)

    @staticmethod
    def _marks(session: Session, subject: str, ids: Sequence[UUID]) -> dict[UUID, str]:
        if not ids:
            return {}
        return {row.notice: row.read_at for row in session.execute(
            select(notice_read.c.notice, notice_read.c.read_at)
            .where(notice_read.c.subject == subject, notice_read.c.notice.in_(list(ids))))}

    def for_agency(self, agency: str, now: datetime | None = None) -> dict[str, Any]:
        """The agency's notices, newest first, each with how many residents it applies to now
        and how many of them marked it read: counts only, never who."""
        now = now or now_utc()
        today = today_jst(now)
        a = resident_attribute.c
        with self.store.read() as session:
            rows = session.execute(select(notice).where(notice.c.agency == agency)
                                   .order_by(notice.c.idx.desc())).all()
            reads = dict(session.execute(
                select(notice_read.c.notice, func.count())
                .where(notice_read.c.notice.in_([row.id for row in rows]))
                .group_by(notice_read.c.notice)).all()) if rows else {}
            out = []
            for row in rows:
                if row.subject is not None:
                    applies = 1
                else:
                    query = select(func.count()).select_from(resident_attribute).where(
                        a.agency == agency)
                    for name in ("municipality", "district", "household_type"):
                        if getattr(row, name) is not None:
                            query = query.where(a[name] == getattr(row, name))
                    if row.age_min is not None:
                        after, until = birth_bounds(row.age_min, row.age_max, today)
                        query = query.where(a.birth_date > after, a.birth_date <= until)
                    applies = int(session.execute(query).scalar() or 0)
                item = _notice_json(row, criteria=True)
                item["delivery"] = {"applies_to": applies, "read": int(reads.get(row.id, 0))}
                out.append(item)
        return {"agency": agency, "notices": out}
