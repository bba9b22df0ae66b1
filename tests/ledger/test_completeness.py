"""The completeness index kept by the ledger at each checkpoint (docs/completeness.md).

The writer's index is checked with the verifier's independent code: every resident's proof,
and the whole root recomputed from an export, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import random
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, select

from ledger import index_tree
from ledger.application import Ledger
from ledger.completeness import IndexNote, secret_path
from ledger.retention import erase_payloads
from ledger.schema import (
    completeness_note,
    completeness_pending,
    completeness_record,
    completeness_resident,
    completeness_stratum,
)
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


def _stored_strata(world: World) -> dict[bytes, dict[int, bytes]]:
    """Every stratum row, decoded, keyed by its row id."""
    with world.ledger.log.transaction(commit=False) as session:
        rows = session.execute(select(completeness_stratum.c.stratum_id,
                                      completeness_stratum.c.nodes)).all()
    out = {}
    for rid, nodes in rows:
        rid = bytes(rid)
        top = (1 << 8 * rid[0]) | int.from_bytes(rid[1:], "big")
        out[rid] = index_tree.decode_stratum(top, bytes(nodes))
    return out


def _rebuilt_strata(world: World) -> tuple[bytes, dict[bytes, dict[int, bytes]]]:
    """(root, strata) of a tree built from nothing over the stored residents' values."""
    with world.ledger.log.transaction(commit=False) as session:
        values = {bytes(k): bytes(v) for k, v in session.execute(
            select(completeness_resident.c.index_key, completeness_resident.c.value)
            .where(completeness_resident.c.count > 0))}
    fresh = index_tree.TreeUpdate(lambda ids: {})
    root = fresh.apply({k: index_tree.leaf_hash(k, v) for k, v in values.items()})
    assert root == index_tree.compact_root(values)
    strata = {}
    for rid, nodes in fresh.rows().insert.items():
        top = (1 << 8 * rid[0]) | int.from_bytes(rid[1:], "big")
        strata[rid] = index_tree.decode_stratum(top, nodes)
    return root, strata


def _same_as_a_rebuild(world: World) -> None:
    """The incrementally kept index is the one built from scratch: the signed root (also the
    verifier's own recomputation from the export) and every stored row, none left over."""
    _audit(world)
    root, strata = _rebuilt_strata(world)
    assert _latest(world).index_root == root
    assert _stored_strata(world) == strata


def test_many_incremental_updates_equal_a_rebuild_from_scratch(world: World) -> None:
    # 1,500 residents: paths cross three strata levels (two keys share 16 bits ~17 times).
    subjects = [f"subj-{i:06d}" for i in range(1500)]
    rnd = random.Random(11)
    for round_ in range(24):
        world.ledger.append_batch([
            world.statement(subject=rnd.choice(subjects), non_disclosure=rnd.random() < 0.05)
            for _ in range(120)])
        world.ledger.checkpoint()
        if round_ == 12:  # every record so far leaves the index: leaves and strata removed
            erase_payloads(world.ledger, datetime.now(UTC) + timedelta(seconds=1))
        if round_ in (5, 11, 13, 23):
            _same_as_a_rebuild(world)
    assert len(_stored_strata(world)) > 1 + 256 // 2  # the test did reach below the top


def test_ledgers_taking_turns_on_one_database_keep_one_index(world: World) -> None:
    """Another process's checkpoint makes this process's copy of the top strata stale: it is
    not used (the index note it signed last is no longer the latest)."""
    other = Ledger(world.ledger.settings, world.ledger.operator_key)
    try:
        for round_ in range(6):
            ledger = world.ledger if round_ % 2 == 0 else other
            world.ledger.append_batch([world.statement(subject=f"subj-{(round_ * 37 + i) % 300}")
                                       for i in range(80)])
            ledger.checkpoint()
            _same_as_a_rebuild(world)
    finally:
        other.close()


def _schema_differences(url: str) -> list[object]:
    wanted = MetaData()
    for table in (completeness_record, completeness_pending, completeness_resident,
                  completeness_stratum, completeness_note):
        table.to_metadata(wanted)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={
                "include_name": lambda name, kind, _parent: kind != "table"
                or name in wanted.tables})
            return list(compare_metadata(context, wanted))
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_creates_exactly_the_index_tables(backend: str) -> None:
    database = sqlite_database if backend == "sqlite" else postgres_database
    with database() as url:
        assert _schema_differences(url) == []
