"""The completeness index honours flags set or lifted after a record was appended, and
delayed disclosure (docs/completeness.md "Which records"), on SQLite and PostgreSQL.

Each step compares three things: the resident view (projections), the resident's proof, and
the auditor's recomputation from the export with the verifier's independent code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

import ledger.application
import ledger.storage
import projections.flags
from ledger.application import Receipt
from ledger.completeness import secret_path, sign_index_note
from ledger.flags import KIND, flag_payload
from ledger.signing import sign_statement
from projections.resident import ResidentRecords
from projections.runner import catch_up
from tests.dbutil import postgres_database, sqlite_database
from tests.ledger.fixtures import World, make_world
from tests.ledger.test_completeness import BACKENDS
from verifier import completeness as vc
from verifier.note import NoteVerifier

ME = "subj-FLAGGEDFLAGGEDFLAG01"


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    database = sqlite_database if request.param == "sqlite" else postgres_database
    with database() as url:
        w = make_world(url)
        yield w
        from projections.runner import _runners

        runner = _runners.pop(w.ledger, None)
        if runner is not None:
            runner.close()
        w.ledger.close()


def _record(world: World, **overrides: Any) -> Receipt:
    return world.ledger.append(world.statement(subject=ME, **overrides))


def _flag(world: World, provision: UUID, *, set: bool = True,
          disclose_after: datetime | None = None, flag: str = "non_disclosure") -> None:
    reason = "dv_support_measure" if set else "grounds_ceased"
    payload = flag_payload(provision, flag, set=set, reason=reason,
                           disclose_after=disclose_after)
    world.ledger.append_flag(sign_statement(payload, kind=KIND, agency=world.provider,
                                            key=world.keys[world.provider]))


def _shown(world: World) -> list[int]:
    """The log indices the resident view shows ME (what the resident holds)."""
    catch_up(world.ledger)
    page = ResidentRecords.for_ledger(world.ledger).list(ME, limit=100)
    return sorted(r.index for r in page.items)


def _secret(world: World) -> bytes:
    return bytes.fromhex(secret_path(world.ledger.settings.key_dir).read_text())


def _recomputed(world: World) -> vc.RecomputedIndex:
    lines = (json.dumps(line).encode() for line in world.ledger.export())
    return vc.recompute_index(lines, _secret(world), world.ledger.tree_size(),
                              resolve=world.ledger.link_codes.resident_of)


def _listed(world: World) -> list[int]:
    """Checkpoint, then the log indices the resident's proof lists, checked against the view
    and against the auditor's recomputation."""
    world.ledger.checkpoint()
    vkey = NoteVerifier.from_vkey(world.ledger.vkey)
    shown = _shown(world)
    held = [(line["index"], vc.b64decode(line["leaf_hash"]))
            for line in world.ledger.export_entries(shown)]
    proof = vc.ResidentProof.from_json(world.ledger.completeness.prove(ME))
    result = vc.verify_resident_proof(proof, vkey, held=held, subject=ME)
    note = world.ledger.completeness.latest_note()
    assert note is not None
    assert vc.compare_index(_recomputed(world), vc.open_index_note(note.note, vkey)) == []
    listed = [i for i, _ in result.records]
    assert listed == shown
    return listed


def test_a_flag_set_later_takes_the_record_out_and_a_lift_puts_it_back(world: World) -> None:
    a, b = _record(world), _record(world)
    world.ledger.append(world.statement(subject="subj-someone-else"))
    assert _listed(world) == [a.index, b.index]
    _flag(world, a.id)
    assert _listed(world) == [b.index]
    _flag(world, b.id, flag="self_information_block")
    assert _listed(world) == []  # the resident's leaf is gone, as for someone never recorded
    _flag(world, a.id, set=False)
    assert _listed(world) == [a.index]
    _flag(world, b.id, set=False, flag="self_information_block")
    assert _listed(world) == [a.index, b.index]


def test_a_record_appended_and_flagged_between_two_checkpoints_is_never_listed(
        world: World) -> None:
    a = _record(world)
    _flag(world, a.id)
    b = _record(world, non_disclosure=True)
    assert _listed(world) == []
    _flag(world, b.id, set=False)  # the payload's own 不開示 lifted by a flag entry
    assert _listed(world) == [b.index]


def test_disclose_after_in_the_past_and_in_the_future(world: World) -> None:
    now = datetime.now(UTC)
    past, future = _record(world), _record(world)
    _flag(world, past.id, disclose_after=now - timedelta(seconds=1))
    _flag(world, future.id, disclose_after=now + timedelta(days=30))
    world.version = 2  # disclose_after is also a key of the version-2 provision payload
    v2_past = _record(world, disclose_after=_rfc3339(now - timedelta(days=1)))
    v2_future = _record(world, disclose_after=_rfc3339(now + timedelta(days=30)))
    assert _listed(world) == [past.index, v2_past.index]
    assert future.index not in _listed(world) and v2_future.index not in _listed(world)


def test_a_disclosure_that_falls_due_enters_at_the_first_checkpoint_after_it(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    soon = _record(world)
    _flag(world, soon.id, disclose_after=now + timedelta(hours=1))
    world.version = 2
    later = _record(world, disclose_after=_rfc3339(now + timedelta(hours=2)))
    assert _listed(world) == []
    # The log's clock (logged_at) and the view's clock move on: no entry lifts anything.
    for hours, expected in ((1.5, [soon.index]), (3, [soon.index, later.index])):
        moved = now + timedelta(hours=hours)
        monkeypatch.setattr(ledger.application, "now_utc", lambda moved=moved: moved)
        monkeypatch.setattr(ledger.storage, "now_utc", lambda moved=moved: moved)
        monkeypatch.setattr(projections.flags, "now_utc", lambda moved=moved: moved)
        world.ledger.append(world.statement(subject="subj-someone-else"))
        assert _listed(world) == expected


def test_an_index_that_keeps_a_withheld_record_is_caught_by_the_auditor(world: World) -> None:
    a, b = _record(world), _record(world)
    _flag(world, a.id)
    world.ledger.checkpoint()
    vkey = NoteVerifier.from_vkey(world.ledger.vkey)
    # A dishonest operator signs an index that ignores the flag: a is still listed.
    index = _recomputed(world)
    key = vc.index_key(_secret(world), ME)
    lists = {k: list(v) for k, v in index.records.items()}
    assert [i for i, _ in lists[key]] == [a.index, b.index]
    values = {k: vc.leaf_value(index.blinds[k], v) for k, v in lists.items()}
    cp = world.ledger.latest_checkpoint()
    assert cp is not None
    note = sign_index_note(world.ledger.origin, cp.size, cp.root, vc.tree_root(values), 0,
                           world.ledger.operator_key).note
    dump = [{"index_key": vc._b64(k), "value": vc._b64(v),
             "records": [[i, vc._b64(h)] for i, h in lists[k]]} for k, v in values.items()]
    with pytest.raises(vc.CompletenessError, match=rf"added log indices \[{a.index}\]"):
        vc.compare_index(index, vc.open_index_note(note, vkey), dump)
    honest = world.ledger.completeness.latest_note()
    assert honest is not None
    assert vc.compare_index(index, vc.open_index_note(honest.note, vkey)) == []


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
