"""The views honour flags: withheld records leave the resident's view, come back when lifted or
when their disclose_after passes (no job, no further entry), auditors see the history, rebuilt
views digest like incremental ones, and as-of reads apply only the flags logged up to then."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from ledger.application import Receipt
from ledger.flags import KIND, flag_payload
from ledger.signing import sign_statement
from projections.report import AgencyReport
from projections.resident import ResidentRecords
from projections.runner import catch_up, runner_for
from tests.ledger.fixtures import World

ME = "subj-FLAGFLAGFLAGFLAGFLAG"


def _flag(world: World, agency: str, provision: UUID, *, set: bool = True,
          reason: str = "dv_support_measure", flag: str = "non_disclosure",
          disclose_after: datetime | None = None) -> Receipt:
    payload = flag_payload(provision, flag, set=set, reason=reason, disclose_after=disclose_after)
    return world.ledger.append_flag(sign_statement(payload, kind=KIND, agency=agency,
                                                   key=world.keys[agency]))


def _shown(world: World, **kwargs: Any) -> set[UUID]:
    catch_up(world.ledger)
    records = ResidentRecords.for_ledger(world.ledger)
    page = records.list(ME, limit=100, **kwargs)
    assert records.count(ME) == len(records.list(ME, limit=100).items)
    return {r.id for r in page.items}


def test_flags_hide_and_lifts_show_records(world: World) -> None:
    a = world.ledger.append(world.statement(subject=ME))
    b = world.ledger.append(world.statement(subject=ME))
    assert _shown(world) == {a.id, b.id}
    _flag(world, world.provider, a.id)
    _flag(world, world.requester, b.id, flag="self_information_block", reason="resident_request")
    assert _shown(world) == set()
    records = ResidentRecords.for_ledger(world.ledger)
    assert records.get(ME, a.id) is None
    assert records.facets(ME) == ([], [])
    _flag(world, world.provider, a.id, set=False, reason="grounds_ceased")
    assert _shown(world) == {a.id}
    assert records.get(ME, a.id) is not None


def test_delayed_disclosure_in_the_payload_and_in_a_flag(world: World) -> None:
    world.version = 2  # disclose_after is a key of the version-2 provision payload
    now = datetime.now(UTC)
    past = world.ledger.append(world.statement(subject=ME,
                                               disclose_after=_rfc3339(now - timedelta(1))))
    later = world.ledger.append(world.statement(subject=ME,
                                                disclose_after=_rfc3339(now + timedelta(30))))
    soon = world.ledger.append(world.statement(subject=ME))
    _flag(world, world.provider, soon.id, reason="criminal_investigation",
          disclose_after=datetime.now(UTC) + timedelta(seconds=1.5))
    assert _shown(world) == {past.id}
    # No entry and no job: the query compares disclose_after with the clock.
    deadline = time.monotonic() + 5
    while soon.id not in _shown(world) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _shown(world) == {past.id, soon.id}
    assert later.id not in _shown(world)


def test_auditors_see_the_history_and_rebuilds_digest_alike(world: World) -> None:
    a = world.ledger.append(world.statement(subject=ME))
    hidden = world.ledger.append(world.statement(subject=ME, non_disclosure=True))
    set_ = _flag(world, world.provider, a.id, reason="criminal_investigation")
    lift = _flag(world, world.requester, a.id, set=False, reason="grounds_ceased")
    catch_up(world.ledger)
    report = AgencyReport.for_ledger(world.ledger).get(world.provider)
    assert [(f["index"], f["provision"], f["agency"], f["role"], f["set"], f["reason"])
            for f in report["flags"]] == [
        (hidden.index, str(hidden.id), world.provider, "provider", True, "recorded"),
        (set_.index, str(a.id), world.provider, "provider", True, "criminal_investigation"),
        (lift.index, str(a.id), world.requester, "requester", False, "grounds_ceased"),
    ]
    assert report["withheld"] == 1
    as_of = AgencyReport.for_ledger(world.ledger).get(world.provider, as_of=set_.index)
    assert as_of["withheld"] == 2 and len(as_of["flags"]) == 2
    result = runner_for(world.ledger).rebuild()
    assert result.identical, result.mismatched()


def test_as_of_applies_only_the_flags_logged_until_then(world: World) -> None:
    a = world.ledger.append(world.statement(subject=ME))
    before = world.ledger.tree_size() - 1
    flagged = _flag(world, world.provider, a.id)
    assert _shown(world, as_of=before) == {a.id}
    assert _shown(world, as_of=flagged.index) == set()
    assert _shown(world) == set()
    runner = runner_for(world.ledger)
    from projections.history import notification_of

    runner.rebuild(stop=notification_of(runner.store, before))
    records = ResidentRecords.for_ledger(world.ledger)
    assert {r.id for r in records.list(ME).items} == {a.id}
    runner.catch_up()
    assert records.list(ME).items == []


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
