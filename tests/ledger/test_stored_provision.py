"""Provisions are stored without building event objects (ledger.application.provision_state):
the bytes must be exactly what eventsourcing's mapper writes for the same Provision.Recorded, so
everything that reads events back (views, exports, erasure) sees the same thing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger.application import provision_state
from ledger.domain import Provision, provision_id
from tests.dbutil import sqlite_database
from tests.ledger.fixtures import World, make_world


@pytest.fixture
def world() -> Iterator[World]:
    with sqlite_database() as url:
        w = make_world(url)
        yield w
        w.ledger.close()


def test_state_is_the_mappers_bytes(world: World) -> None:
    submission = world.statement(request_id="state-1")
    submission["payload"]["items"] = ["地方税関係情報", "住民票関係情報 \"quoted\"\n"]
    timestamp = Provision.Recorded.create_timestamp()
    event = Provision.Recorded(  # type: ignore[call-arg]
        originator_id=provision_id("131121", "state-1"), originator_version=1,
        timestamp=timestamp, originator_topic="ledger.domain:Provision",
        statement=submission["statement"], signature=submission["signature"],
        payload=submission["payload"], salt=submission["salt"], logged_at="2026-01-02T03:04:05Z")
    expected = world.ledger.mapper.to_stored_event(event).state
    assert provision_state(timestamp, submission, "2026-01-02T03:04:05Z") == expected


def test_appended_event_rows_are_the_mappers(world: World) -> None:
    """Topic, id, version and state as the library would have stored them (state decoded and
    re-encoded by the mapper gives the same bytes)."""
    submission = world.statement(request_id="row-1")
    receipt = world.ledger.append_batch([submission])[0]
    table = world.ledger.log.events_record_cls.__table__
    with world.ledger.log.transaction(commit=False) as session:
        row = session.execute(table.select().where(table.c.originator_id == receipt.id)).one()
    assert (row.topic, row.originator_version) == ("ledger.domain:Provision.Recorded", 1)
    from eventsourcing.persistence import StoredEvent

    stored = StoredEvent(originator_id=row.originator_id, originator_version=1, topic=row.topic,
                         state=bytes(row.state))
    event = world.ledger.mapper.to_domain_event(stored)
    assert isinstance(event, Provision.Recorded)
    assert world.ledger.mapper.to_stored_event(event).state == bytes(row.state)


def test_appended_provision_reads_back_as_submitted(world: World) -> None:
    submissions = [world.statement(request_id=f"back-{i}") for i in range(40)]
    receipts = world.ledger.append_batch(submissions)
    lines = world.ledger.export_entries([r.index for r in receipts])
    assert len(lines) == len(receipts)
    for submission, receipt, line in zip(submissions, receipts, lines):
        assert line["index"] == receipt.index
        assert (line["payload"], line["salt"]) == (submission["payload"], submission["salt"])
        entry = receipt.entry
        assert {k: entry[k] for k in submission["statement"]} == submission["statement"]
        assert entry["signature"] == submission["signature"]
