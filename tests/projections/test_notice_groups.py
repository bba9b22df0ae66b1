"""Which group notices a resident sees: the query's place and household filter must agree with
``ledger.notices.matches`` (the rule the agencies' delivery counts use) on every combination."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session

from ledger.notices import matches, resident_attribute
from projections.notices import Notices, _criteria, notice, today_jst

NOW = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
VALUES = (None, "a", "b")
PLACES = ("municipality", "district", "household_type")


def test_group_notices_shown_are_exactly_those_matches_accepts() -> None:
    engine = create_engine("sqlite://")
    notice.metadata.create_all(engine)
    resident_attribute.metadata.create_all(engine)
    moment = int(NOW.timestamp() * 1_000_000)
    rows = []
    for k, (place, age) in enumerate(itertools.product(itertools.product(VALUES, repeat=3),
                                                        (None, (0, 5), (30, 60)))):
        rows.append({
            "idx": k, "id": uuid.uuid4(), "agency": "CITY" if k % 4 else "OTHER",
            "notice_id": f"n{k}", "category": "info", "title_ja": f"n{k}", "title_en": None,
            "body_ja": "…", "body_en": None, "valid_from": moment - 1, "valid_until": moment + 1,
            "subject": None, "age_min": age[0] if age else None,
            "age_max": age[1] if age else None, "form": None, "issued_at": moment,
            **dict(zip(PLACES, place))})
    people = [dict(zip(PLACES, place), birth_date=born)
              for place in itertools.product(VALUES[:2], repeat=3)
              for born in (None, "2024-01-01", "1980-06-01")]
    with Session(engine) as session:
        session.execute(insert(notice), rows)
        for n, person in enumerate(people):
            session.execute(insert(resident_attribute), [{
                "agency": "CITY", "subject": f"subj-{n}", "updated_at": "x", **person}])
        session.commit()
        views = Notices(None)
        for n, person in enumerate(people):
            shown = {r.notice_id for r in views._applicable(session, f"subj-{n}", NOW)}
            expected = {r["notice_id"] for r in rows if r["agency"] == "CITY" and matches(
                _criteria(_Row(r)), person, today_jst(NOW))}
            assert shown == expected, person
        assert any(views._applicable(session, f"subj-{n}", NOW) for n in range(len(people)))


class _Row:
    def __init__(self, row: dict[str, object]) -> None:
        self.__dict__.update(row)
