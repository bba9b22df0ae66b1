"""The writer and the independent verifier agree: a real ledger export verifies, and edits made
directly in the database are pinpointed by the verifier (first bad index and kind)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from ledger.catalog import load_catalog
from tests.dbutil import sqlite_database
from tests.ledger.fixtures import World, make_world
from verifier.cli import main as verify


@pytest.fixture
def world() -> Iterator[World]:
    with sqlite_database() as url:
        w = make_world(url)
        w.ledger.append_batch([w.statement() for _ in range(20)])
        yield w
        w.ledger.close()


def _export(world: World, folder: Path) -> tuple[Path, Path, str]:
    export = folder / "export.jsonl"
    with export.open("w", encoding="utf-8") as handle:
        for line in world.ledger.export():
            handle.write(json.dumps(line, ensure_ascii=False, sort_keys=True,
                                    separators=(",", ":")) + "\n")
    checkpoint = folder / "checkpoint.txt"
    checkpoint.write_text(world.ledger.checkpoint().note)
    return export, checkpoint, world.ledger.vkey


def _run(export: Path, checkpoint: Path, vkey: str, capsys: pytest.CaptureFixture[str]
         ) -> tuple[int, dict]:
    code = verify(["export", str(export), "--checkpoint", str(checkpoint), "--vkey", vkey,
                   "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip().startswith("{") else {"raw": out}


def test_real_export_verifies_including_catalog_replacement(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world.ledger.load_catalog(dataclasses.replace(load_catalog(), version="ordinance-test@2"))
    world.ledger.append_batch([world.statement() for _ in range(5)])
    code, report = _run(*_export(world, tmp_path), capsys)
    assert code == 0, report


def test_payload_edited_in_the_database_is_pinpointed(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export, checkpoint, vkey = _export(world, tmp_path)
    target = world.ledger.tree_size() - 3
    with world.ledger.log.write_transaction() as session:
        notification = session.execute(text(
            f"SELECT notification_id FROM kiroku_log_entry WHERE idx = {target}")).scalar()
        state = session.execute(text(
            f"SELECT state FROM ledger_events WHERE id = {notification}")).scalar()
        edited = bytes(state).replace(b"subj-AAAABBBBCCCCDDDDEEEE", b"subj-ZZZZBBBBCCCCDDDDEEEE")
        assert edited != bytes(state)
        session.execute(text("UPDATE ledger_events SET state = :s WHERE id = :i"),
                        {"s": edited, "i": notification})
    export, _, _ = _export(world, tmp_path)
    code, report = _run(export, checkpoint, vkey, capsys)
    assert code == 1
    assert (report["failure"]["index"], report["failure"]["kind"]) == (
        target, "payload-altered"), report


def test_deleted_entry_is_pinpointed(world: World, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    export, checkpoint, vkey = _export(world, tmp_path)
    lines = export.read_text().splitlines()
    del lines[12]
    export.write_text("\n".join(lines) + "\n")
    code, report = _run(export, checkpoint, vkey, capsys)
    assert code == 1
    assert (report["failure"]["index"], report["failure"]["kind"]) == (
        12, "entry-missing"), report
