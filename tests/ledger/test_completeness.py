"""The completeness index kept by the ledger at each checkpoint (docs/completeness.md).

The writer's index is checked with the verifier's independent code: every resident's proof,
and the whole root recomputed from an export, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ledger.completeness import IndexNote, secret_path
from ledger.retention import erase_payloads
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import World, make_world
from verifier import completeness as vc
from verifier.note import NoteVerifier

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres",
                 marks=pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON)),
]


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    database = sqlite_database if request.param == "sqlite" else postgres_database
    with database() as url:
        w = make_world(url)
        yield w
        w.ledger.close()


def _secret(world: World) -> bytes:
    return bytes.fromhex(secret_path(world.ledger.settings.key_dir).read_text())


def _vkey(world: World) -> NoteVerifier:
    return NoteVerifier.from_vkey(world.ledger.vkey)


def _held(world: World, subject: str) -> list[tuple[int, bytes]]:
    """What the resident view shows the subject: disclosed provisions about them."""
    held = []
    for line in world.ledger.export():
        payload = line["payload"]
        if payload and payload.get("subject") == subject and not payload["non_disclosure"]:
            held.append((line["index"], base64.b64decode(line["leaf_hash"])))
    return held


def _latest(world: World) -> IndexNote:
    note = world.ledger.completeness.latest_note()
    assert note is not None
    return note


def _audit(world: World) -> None:
    """The auditor's recomputation from an export matches the latest signed index note."""
    note = vc.open_index_note(_latest(world).note, _vkey(world))
    lines = (json.dumps(line).encode() for line in world.ledger.export())
    assert vc.compare_index(vc.recompute_index(lines, _secret(world), note.size), note) == []


def _check(world: World, subject: str) -> vc.ResidentResult:
    proof = vc.ResidentProof.from_json(world.ledger.completeness.prove(subject))
    return vc.verify_resident_proof(proof, _vkey(world), held=_held(world, subject),
                                    subject=subject)


def test_proofs_verify_for_residents_with_none_one_and_many_records(world: World) -> None:
    world.ledger.append_batch([world.statement(subject="subj-many") for _ in range(12)]
                              + [world.statement(subject="subj-one")]
                              + [world.statement(subject=f"subj-other-{i}") for i in range(20)])
    world.ledger.checkpoint()
    assert len(_check(world, "subj-many").records) == 12
    assert len(_check(world, "subj-one").records) == 1
    assert _check(world, "subj-nobody").records == ()
    _audit(world)


def test_index_follows_each_checkpoint_incrementally(world: World) -> None:
    for round_ in range(4):
        world.ledger.append_batch([world.statement(subject=f"subj-{(round_ * 7 + i) % 9}")
                                   for i in range(15)])
        cp = world.ledger.checkpoint()
        note = _latest(world)
        assert (note.size, note.log_root) == (cp.size, cp.root)
        _audit(world)
    assert len(_check(world, "subj-3").records) == len(_held(world, "subj-3")) > 0


def test_non_disclosed_records_are_left_out_and_leave_no_trace(world: World) -> None:
    world.ledger.append_batch([world.statement(subject="subj-dv", non_disclosure=True),
                               world.statement(subject="subj-dv"),
                               world.statement(subject="subj-hidden-only", non_disclosure=True),
                               world.statement(subject="subj-x")])
    world.ledger.checkpoint()
    shown = _check(world, "subj-dv")
    assert [i for i, _ in shown.records] == [i for i, _ in _held(world, "subj-dv")]
    assert len(shown.records) == 1
    # A resident whose every record is hidden gets the same kind of proof as one who has none.
    hidden = world.ledger.completeness.prove("subj-hidden-only")
    nobody = world.ledger.completeness.prove("subj-never-seen")
    assert hidden["records"] == nobody["records"] == []
    assert set(hidden) == set(nobody)
    _audit(world)  # the auditor's recomputation applies the same rule to the hidden records


def test_erased_records_leave_the_index_and_the_note_says_from_where(world: World) -> None:
    world.ledger.append_batch([world.statement(subject=f"subj-{i % 3}") for i in range(9)])
    world.ledger.checkpoint()
    before = _latest(world)
    assert before.retained_from == 0
    erase_payloads(world.ledger, datetime.now(UTC) + timedelta(seconds=1))
    world.ledger.append(world.statement(subject="subj-0"))
    world.ledger.checkpoint()
    after = _latest(world)
    assert after.retained_from == after.size - 1  # everything before the new entry was erased
    assert [i for i, _ in _check(world, "subj-0").records] == [after.size - 1]
    assert _check(world, "subj-1").records == ()
    _audit(world)


def test_reopened_ledger_continues_from_stored_nodes(world: World) -> None:
    world.ledger.append_batch([world.statement(subject=f"subj-{i % 5}") for i in range(10)])
    world.ledger.checkpoint()
    settings, key = world.ledger.settings, world.ledger.operator_key
    world.ledger.close()
    from ledger.application import Ledger

    world.ledger = Ledger(settings, key)
    world.ledger.append_batch([world.statement(subject=f"subj-{i % 7}") for i in range(10)])
    world.ledger.checkpoint()
    _audit(world)


def test_secret_is_a_private_file_and_proofs_carry_no_pseudonym(world: World) -> None:
    world.ledger.append_batch([world.statement(subject="subj-AAAAsecretBBBB") for _ in range(3)])
    world.ledger.checkpoint()
    mode = stat.S_IMODE(secret_path(world.ledger.settings.key_dir).stat().st_mode)
    assert mode == 0o600
    proof = world.ledger.completeness.prove("subj-AAAAsecretBBBB")
    text = json.dumps(proof)
    assert "AAAAsecretBBBB" not in text
    for line in world.ledger.completeness.dump():
        assert "AAAAsecretBBBB" not in json.dumps(line)


def test_a_proof_changes_only_in_sibling_hashes_when_others_records_change(world: World) -> None:
    world.ledger.append_batch([world.statement(subject="subj-A") for _ in range(3)]
                              + [world.statement(subject="subj-B")])
    world.ledger.checkpoint()
    first = world.ledger.completeness.prove("subj-A")
    world.ledger.append_batch([world.statement(subject="subj-B") for _ in range(4)])
    world.ledger.checkpoint()
    second = world.ledger.completeness.prove("subj-A")
    same = ("index_key", "blind", "records", "key_note")
    assert {k: first[k] for k in same} == {k: second[k] for k in same}
    assert first["siblings"] != second["siblings"]
    assert _check(world, "subj-A").size == world.ledger.tree_size()
