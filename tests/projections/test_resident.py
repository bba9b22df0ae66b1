"""What a resident sees: their own records, newest first, page by page; never a non-disclosed
record, never another resident's."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from ledger.domain import provision_id
from projections.errors import InvalidQuery
from projections.report import AgencyReport
from projections.resident import ResidentRecords
from projections.runner import catch_up
from tests.ledger.fixtures import World
from tests.projections.logs import WEDNESDAY_10_JST, provision

ME, OTHER = "subj-ME00000000000000", "subj-OTHER0000000000"


def test_non_disclosed_records_are_hidden_from_the_resident_but_counted_for_auditors(
        world: World) -> None:
    shown = world.ledger.append(provision(world, WEDNESDAY_10_JST, subject=ME))
    hidden = world.ledger.append(provision(world, WEDNESDAY_10_JST + timedelta(hours=1),
                                           subject=ME, non_disclosure=True))
    catch_up(world.ledger)
    records = ResidentRecords.for_ledger(world.ledger)

    page = records.list(ME)
    assert [r.index for r in page.items] == [shown.index]
    assert records.get(ME, hidden.id) is None
    assert records.list(ME, as_of=hidden.index).items[0].index == shown.index
    report = AgencyReport.for_ledger(world.ledger).get(world.requester)
    assert report["totals"]["non_disclosed"] == 1
    assert report["totals"]["as_requester"] == 2


def test_a_record_shows_who_asked_whom_for_what_and_why_in_japanese_and_english(
        world: World) -> None:
    receipt = world.ledger.append(provision(world, WEDNESDAY_10_JST, subject=ME))
    catch_up(world.ledger)

    record = ResidentRecords.for_ledger(world.ledger).get(ME, receipt.id)

    assert record is not None
    assert record.id == provision_id(world.provider, f"req-{world.counter}")
    assert record.requested_at == WEDNESDAY_10_JST
    assert record.provided_at == WEDNESDAY_10_JST + timedelta(seconds=30)
    assert (record.requester.code, record.requester.name_ja) == (world.requester, "全国健康保険協会")
    assert record.provider.name_en == "Setagaya City"
    assert record.affair.id == world.basis.affair_id
    assert record.affair.ja == world.basis.affair_ja and record.affair.en == world.basis.affair_en
    assert record.basis == world.basis.id
    assert [i.code for i in record.items] == [world.basis.items[0]]
    assert all(i.en for i in record.items)
    data = record.to_json()
    assert data["requested_at"] == "2025-06-11T01:00:00Z"
    assert data["requester"]["name_en"] == "Kyokai Kenpo"
    assert data["outcome"] == "provided" and data["reason"] is None
    assert "subject" not in data and "operator" not in data


def test_pages_cover_every_record_once_newest_first(world: World) -> None:
    base = WEDNESDAY_10_JST
    # Two records at the same instant: the cursor must still separate them.
    times = [base + timedelta(minutes=m) for m in (5, 1, 9, 9, 3, 7, 2)]
    world.ledger.append_batch([provision(world, t, subject=ME) for t in times])
    world.ledger.append(provision(world, base, subject=OTHER))
    catch_up(world.ledger)
    records = ResidentRecords.for_ledger(world.ledger)

    seen, cursor = [], None
    while True:
        page = records.list(ME, limit=2, cursor=cursor)
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break

    assert len(seen) == 7 and len({r.index for r in seen}) == 7
    keys = [(r.requested_at, r.index) for r in seen]
    assert keys == sorted(keys, reverse=True)


def test_filters_by_time_agency_affair_and_as_of(world: World) -> None:
    base = WEDNESDAY_10_JST
    receipts = world.ledger.append_batch(
        [provision(world, base + timedelta(days=d), subject=ME) for d in range(5)])
    catch_up(world.ledger)
    records = ResidentRecords.for_ledger(world.ledger)

    window = records.list(ME, since=base + timedelta(days=1), until=base + timedelta(days=3))
    assert [r.requested_at for r in window.items] == [base + timedelta(days=2),
                                                      base + timedelta(days=1)]
    assert len(records.list(ME, agency=world.provider).items) == 5
    assert records.list(ME, agency=world.stranger).items == []
    assert len(records.list(ME, affair=world.basis.affair_id).items) == 5
    assert records.list(ME, affair="no-such-affair").items == []
    assert len(records.list(ME, as_of=receipts[1].index).items) == 2


def test_another_residents_record_is_not_found(world: World) -> None:
    theirs = world.ledger.append(provision(world, WEDNESDAY_10_JST, subject=OTHER))
    catch_up(world.ledger)
    records = ResidentRecords.for_ledger(world.ledger)

    assert records.get(ME, theirs.id) is None
    assert records.get(ME, uuid4()) is None
    assert records.list(ME).items == []


def test_bad_arguments_are_refused_with_a_message(world: World) -> None:
    records = ResidentRecords.for_ledger(world.ledger)
    with pytest.raises(InvalidQuery, match="cursor"):
        records.list(ME, cursor="not-a-cursor")
    with pytest.raises(InvalidQuery, match="limit"):
        records.list(ME, limit=0)
    with pytest.raises(InvalidQuery, match="time zone"):
        records.list(ME, since=WEDNESDAY_10_JST.replace(tzinfo=None))
