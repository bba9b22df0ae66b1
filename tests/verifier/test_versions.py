"""The verifier accepts log format versions 1 and 2 side by side (docs/log-format.md): a log the
ledger wrote with version-1 and version-2 (link-code) provisions verifies on every path (in
process, parallel chunks, from a file), needs no link-code registry, and a leaf whose version was
edited is named."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dbutil import sqlite_database
from tests.ledger.fixtures import World, make_world
from tests.verifier import exportgen as g
from verifier.entry import _parse_slow, parse_line
from verifier.errors import VerificationError
from verifier.export import verify_export, verify_export_file
from verifier.note import NoteVerifier


@pytest.fixture(scope="module")
def mixed() -> Iterator[tuple[list[bytes], str, str]]:
    """(export lines, checkpoint, vkey) of a log with 6 version-1 then 10 version-2 provisions."""
    with sqlite_database() as url:
        world: World = make_world(url)
        world.ledger.append_batch([world.statement(subject=f"subj-V1-{i}") for i in range(6)])
        world.version = 2
        world.ledger.append_batch([world.statement(subject=f"subj-V2-{i % 3}") for i in range(10)])
        checkpoint = world.ledger.checkpoint().note
        lines = [json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode()
                 for line in world.ledger.export()]
        vkey = world.ledger.vkey
        world.ledger.close()
    yield lines, checkpoint, vkey


def _leaf(line: bytes) -> dict:  # type: ignore[type-arg]
    return json.loads(base64.b64decode(json.loads(line)["leaf"]))  # type: ignore[no-any-return]


def test_both_versions_are_in_the_log(mixed: tuple[list[bytes], str, str]) -> None:
    lines, _, _ = mixed
    versions = [_leaf(line)["v"] for line in lines if _leaf(line)["kind"] == "provision"]
    assert versions == [1] * 6 + [2] * 10


@pytest.mark.parametrize("workers,chunk_size", [(0, 4096), (2, 4)])
def test_a_mixed_log_verifies(mixed: tuple[list[bytes], str, str], workers: int,
                              chunk_size: int, tmp_path: Path) -> None:
    lines, checkpoint, vkey = mixed
    report = verify_export(lines, checkpoint, NoteVerifier.from_vkey(vkey), workers=workers,
                           chunk_size=chunk_size)
    assert report.entries == len(lines)
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = verify_export_file(str(path), checkpoint, NoteVerifier.from_vkey(vkey),
                                workers=workers, chunk_size=chunk_size)
    assert report.entries == len(lines)


def test_the_fast_path_reads_version_2_as_the_slow_path_does(
        mixed: tuple[list[bytes], str, str]) -> None:
    lines, _, _ = mixed
    line = lines[-1]
    assert _leaf(line)["v"] == 2
    assert parse_line(line) == _parse_slow(line)
    assert parse_line(line).statement.endswith(b'"v":2}')


def _failure(lines: list[bytes], checkpoint: str, vkey: str) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify_export(lines, checkpoint, NoteVerifier.from_vkey(vkey), workers=0)
    return info.value


@pytest.mark.parametrize("version,kind", [(1, "bad-signature"), (3, "malformed-entry")])
def test_an_edited_version_is_named(mixed: tuple[list[bytes], str, str], version: int,
                                    kind: str) -> None:
    lines, checkpoint, vkey = mixed
    lines = list(lines)
    at = len(lines) - 2  # a version-2 provision
    g.rewrite_leaf(lines, at, lambda leaf: leaf.update(v=version))
    g.rechain(lines, at + 1, renumber=False)
    error = _failure(lines, checkpoint, vkey)
    assert (error.index, error.kind) == (at, kind), str(error)


def test_version_2_is_for_provisions_only(mixed: tuple[list[bytes], str, str]) -> None:
    lines, checkpoint, vkey = mixed
    lines = list(lines)
    at = next(i for i, line in enumerate(lines) if _leaf(line)["kind"] == "agency.registered")
    g.rewrite_leaf(lines, at, lambda leaf: leaf.update(v=2))
    g.rechain(lines, at + 1, renumber=False)
    error = _failure(lines, checkpoint, vkey)
    assert (error.index, error.kind) == (at, "malformed-entry"), str(error)
    assert "expected 1" in str(error)
