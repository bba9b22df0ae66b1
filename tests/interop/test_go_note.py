"""Go's golang.org/x/mod/sumdb/note accepts kiroku's cosigned checkpoints.

tests/interop/note_cosigned.go opens the note published at /v1/log/checkpoint/witnessed with
note.Open: with the log's vkey (note.NewVerifier, type 0x01) and with each witness's
cosignature/v1 key, which Go's package does not parse itself and which the program therefore
supplies as a note.Verifier of its own (Go's note parsing and signature dispatch still decide).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.settings import parse_witnesses
from api.witnessing import Witnessing, witnessed_note
from ledger.application import Ledger
from tests.dbutil import sqlite_database
from tests.interop.gobuild import build, requires_go
from tests.ledger.fixtures import make_world
from witness.keys import WitnessKey
from witness.protocol import Witness
from witness.server import create_witness_app
from witness.state import WitnessState

SOURCE = Path(__file__).with_name("note_cosigned.go")


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SOURCE.exists():
        pytest.fail("note_cosigned.go is missing")
    return build(SOURCE, tmp_path_factory.mktemp("go"))


@pytest.fixture
def cosigned(tmp_path: Path) -> Iterator[tuple[str, str, list[str]]]:
    """A kiroku log's checkpoint cosigned by two in-process witnesses: (note, log vkey,
    witness vkeys)."""
    from fastapi.testclient import TestClient

    from verifier.note import NoteVerifier

    with sqlite_database() as url:
        world = make_world(url, tmp_path / "home")
        ledger: Ledger = world.ledger
        ledger.append(world.statement())
        ledger.checkpoint()
        keys = [WitnessKey.generate(f"witness.test/go{i}") for i in (1, 2)]
        entries = ",".join(f"{k.name} http://w{i} {k.vkey}" for i, k in enumerate(keys))
        witnessing = Witnessing(ledger, parse_witnesses(entries), 2)
        for key, endpoint in zip(keys, witnessing.witnesses, strict=True):
            witness = Witness(key, WitnessState(tmp_path / key.name.replace("/", "_")),
                              {ledger.origin: [NoteVerifier.from_vkey(ledger.vkey)]})
            with TestClient(create_witness_app(witness), base_url=endpoint.url) as http:
                assert witnessing.submit(endpoint, http)  # type: ignore[arg-type]
        note = witnessed_note(ledger, witnessing.witnesses, 2)
        assert note is not None
        yield note, ledger.vkey, [k.vkey for k in keys]
        ledger.close()


def _open(program: Path, note: str, *keys: str) -> subprocess.CompletedProcess[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".note", delete=False) as f:
        f.write(note)
    return subprocess.run([str(program), f.name, *keys], check=False, capture_output=True,
                          text=True,
                          timeout=60)


@requires_go
def test_go_note_accepts_the_cosigned_checkpoint(
        program: Path, cosigned: tuple[str, str, list[str]]) -> None:
    note, log_vkey, witness_vkeys = cosigned
    log_name = log_vkey.split("+")[0]
    done = _open(program, note, f"log={log_vkey}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split("\n")[:-1] == [f"verified {log_name}"]
    for vkey in witness_vkeys:
        done = _open(program, note, f"witness={vkey}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout == f"verified {vkey.split('+')[0]}\n"
    done = _open(program, note, f"log={log_vkey}", *(f"witness={v}" for v in witness_vkeys))
    assert sorted(done.stdout.split("\n")[:-1]) == sorted(
        [f"verified {log_name}", *(f"verified {v.split('+')[0]}" for v in witness_vkeys)])


@requires_go
def test_go_note_refuses_a_cosignature_over_another_tree(
        program: Path, cosigned: tuple[str, str, list[str]]) -> None:
    note, _log_vkey, witness_vkeys = cosigned
    text, signatures = note.split("\n\n")
    lines = text.split("\n")
    lines[1] = str(int(lines[1]) + 1)  # another size: every signature is now over other text
    done = _open(program, "\n".join(lines) + "\n\n" + signatures, f"witness={witness_vkeys[0]}")
    assert done.returncode == 1 and "refused" in done.stdout
