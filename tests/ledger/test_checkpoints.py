"""Checkpoints: signed C2SP notes; never two inconsistent ones; start-up re-verification."""

from __future__ import annotations

import base64
import stat
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text

from ledger import errors
from ledger.application import Ledger
from ledger.fsck import fsck
from ledger.keys import SigningKey, load_or_create, note_key_id
from tests.dbutil import sqlite_database
from tests.ledger.fixtures import World, make_world


@pytest.fixture
def world() -> Iterator[World]:
    with sqlite_database() as url:
        w = make_world(url)
        yield w
        w.ledger.close()


def _execute(world: World, sql: str) -> None:
    with world.ledger.log.write_transaction() as session:
        session.execute(text(sql))


def test_checkpoint_is_a_c2sp_signed_note(world: World) -> None:
    world.ledger.append_batch([world.statement() for _ in range(5)])
    cp = world.ledger.checkpoint()
    head, signature_line = cp.note.split("\n\n")
    body = head + "\n"
    origin, size, root = head.split("\n")
    assert cp.note.endswith("\n") and signature_line.count("\n") == 1
    assert (origin, int(size)) == ("test.kiroku/log", world.ledger.tree_size())
    assert base64.b64decode(root) == world.ledger.get_root()
    assert signature_line.startswith("\u2014 test.kiroku/log ")
    blob = base64.b64decode(signature_line.strip().split(" ")[2])
    public = world.ledger.operator_key.public_bytes
    assert blob[:4] == note_key_id("test.kiroku/log", public)
    Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], body.encode())
    name, key_hash, key = world.ledger.vkey.split("+", 2)
    assert (name, bytes.fromhex(key_hash)) == ("test.kiroku/log", blob[:4])
    assert base64.b64decode(key) == b"\x01" + public


def test_unchanged_tree_reuses_latest_checkpoint(world: World) -> None:
    first = world.ledger.checkpoint()
    assert world.ledger.checkpoint() == first
    world.ledger.append(world.statement())
    second = world.ledger.checkpoint()
    assert second.size == first.size + 1
    assert [c["tree_size"] for c in world.ledger.list_checkpoints()] == [second.size, first.size]


def test_refuses_to_sign_when_stored_tree_no_longer_matches(world: World) -> None:
    world.ledger.append_batch([world.statement() for _ in range(8)])
    world.ledger.checkpoint()
    _execute(world, "UPDATE kiroku_merkle_node SET hash = zeroblob(32) WHERE level = 3 AND idx = 0")
    world.ledger.append(world.statement())
    with pytest.raises(errors.InconsistentCheckpoint):
        world.ledger.checkpoint()
    assert len(world.ledger.list_checkpoints()) == 1


def test_start_up_refuses_a_log_that_no_longer_matches_its_checkpoint(world: World) -> None:
    world.ledger.append_batch([world.statement() for _ in range(8)])
    world.ledger.checkpoint()
    _execute(world, "UPDATE kiroku_merkle_node SET hash = zeroblob(32) WHERE level = 3 AND idx = 0")
    with pytest.raises(errors.IntegrityFailure, match="kiroku log fsck"):
        Ledger(world.ledger.settings, world.ledger.operator_key)


def test_start_up_refuses_a_truncated_log(world: World) -> None:
    world.ledger.append_batch([world.statement() for _ in range(4)])
    world.ledger.checkpoint()
    last = world.ledger.tree_size() - 1
    _execute(world, f"DELETE FROM kiroku_log_entry WHERE idx = {last}")
    with pytest.raises(errors.IntegrityFailure, match="fewer"):
        Ledger(world.ledger.settings, world.ledger.operator_key)


def test_start_up_refuses_a_checkpoint_signed_by_another_key(world: World) -> None:
    world.ledger.checkpoint()
    with pytest.raises(errors.IntegrityFailure, match="no valid signature"):
        Ledger(world.ledger.settings, SigningKey.generate())


def test_fsck_finds_an_edited_leaf(world: World) -> None:
    world.ledger.append_batch([world.statement() for _ in range(10)])
    world.ledger.checkpoint()
    assert fsck(world.ledger) == []
    _execute(world, "UPDATE kiroku_log_entry SET leaf = CAST(REPLACE(CAST(leaf AS TEXT), "
                    "'\"kind\":\"provision\"', '\"kind\":\"provisioN\"') AS BLOB) WHERE idx = 9")
    problems = fsck(world.ledger)
    assert problems and problems[0].startswith("index 9: stored leaf hash")


def test_operator_key_is_private_to_its_owner(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "keys" / "operator.pem"
    key, created = load_or_create(path)
    assert created and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = load_or_create(path)
    assert not created_again and again.key_id == key.key_id


def test_tree_reads_use_the_primary_key_not_a_scan(world: World) -> None:
    """Reading subtree roots must stay O(log n) on a large log: no full scan of the node table."""
    from sqlalchemy import event

    world.ledger.append_batch([world.statement() for _ in range(40)])
    plans: list[str] = []
    engine = world.ledger.log.datastore.engine

    def explain(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "kiroku_merkle_node" in statement and statement.lstrip().upper().startswith("SELECT"):
            rows = cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            plans.extend(str(row[-1]) for row in rows)

    event.listen(engine, "before_cursor_execute", explain)
    try:
        world.ledger.prove_inclusion(3)
        world.ledger.prove_consistency(5)
        world.ledger.append(world.statement())
    finally:
        event.remove(engine, "before_cursor_execute", explain)
    assert plans and not any(p.startswith("SCAN kiroku_merkle_node") for p in plans), plans
