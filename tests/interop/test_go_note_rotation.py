"""Go's golang.org/x/mod/sumdb/note accepts kiroku's checkpoints through an operator key rotation.

During the rotation window a checkpoint carries two signature lines under the log's origin, one
per key (docs/key-rotation.md). C2SP signed-note tells them apart by key ID, and Go's note.Open
matches signatures to verifiers by name and key hash, ignoring lines by keys it was not given
(they end up in Note.UnverifiedSigs). So a Go client holding only the old vkey, or only the new
one, opens the note. tests/interop/note_cosigned.go does the opening (note.NewVerifier for
``log=`` keys).
"""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from ledger.keys import SigningKey, vkey
from tests.dbutil import sqlite_database
from tests.interop.gobuild import build, requires_go
from tests.ledger.fixtures import make_world

SOURCE = Path(__file__).with_name("note_cosigned.go")


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(SOURCE, tmp_path_factory.mktemp("go"))


def _rotated(home: Path, window: timedelta) -> tuple[str, str, str]:
    """A real ledger's checkpoint after an operator key rotation with ``window``:
    (note, old vkey, new vkey)."""
    with sqlite_database() as url:
        world = make_world(url, home)
        ledger = world.ledger
        try:
            ledger.append(world.statement())
            old_vkey = ledger.vkey
            new = SigningKey.generate()
            ledger.rotate_operator_key(new, window=window)
            ledger.append(world.statement())
            return ledger.checkpoint().note, old_vkey, vkey(ledger.origin, new.public_bytes)
        finally:
            ledger.close()


def _open(program: Path, tmp_path: Path, note: str, *keys: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "checkpoint.note"
    path.write_text(note, encoding="utf-8")
    return subprocess.run([str(program), str(path), *(f"log={k}" for k in keys)], check=False,
                          capture_output=True, text=True, timeout=60)


@requires_go
def test_go_opens_the_dual_signed_checkpoint_with_either_vkey_alone(
        program: Path, tmp_path: Path) -> None:
    dual, old_vkey, new_vkey = _rotated(tmp_path / "home", timedelta(days=30))
    origin = old_vkey.split("+")[0]
    assert dual.count(f"\u2014 {origin} ") == 2
    for key in (old_vkey, new_vkey):
        done = _open(program, tmp_path, dual, key)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.splitlines() == [f"verified {origin}"]
    both = _open(program, tmp_path, dual, old_vkey, new_vkey)
    assert both.returncode == 0 and both.stdout.splitlines() == [f"verified {origin}"] * 2


@requires_go
def test_go_refuses_the_checkpoint_after_the_window_with_the_old_vkey(
        program: Path, tmp_path: Path) -> None:
    after, old_vkey, new_vkey = _rotated(tmp_path / "home", timedelta(0))
    assert _open(program, tmp_path, after, new_vkey).returncode == 0
    refused = _open(program, tmp_path, after, old_vkey)
    assert refused.returncode == 1 and "refused" in refused.stdout
