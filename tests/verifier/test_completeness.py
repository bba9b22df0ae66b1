"""The verifier's completeness checks against an index that drops, adds or reorders records.

A dishonest operator is played by signing index notes over tampered leaves with the real
operator key: the resident check catches what touches the resident's own records, the
auditor's recomputation from the export catches everything and names the key and indices.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kiroku.cli import main as kiroku_main
from ledger.completeness import secret_path, sign_index_note
from tests.dbutil import sqlite_database
from tests.ledger.fixtures import World, make_world
from verifier import completeness as vc
from verifier.cli import main as verify_main
from verifier.note import NoteVerifier

SUBJECT = "subj-RESIDENTRESIDENT01"


@pytest.fixture
def world() -> Iterator[World]:
    with sqlite_database() as url:
        w = make_world(url)
        w.ledger.append_batch([w.statement(subject=SUBJECT) for _ in range(4)]
                              + [w.statement(subject=f"subj-other-{i}") for i in range(6)]
                              + [w.statement(subject="subj-one")])
        w.ledger.checkpoint()
        yield w
        w.ledger.close()


def _vkey(world: World) -> NoteVerifier:
    return NoteVerifier.from_vkey(world.ledger.vkey)


def _secret(world: World) -> bytes:
    return bytes.fromhex(secret_path(world.ledger.settings.key_dir).read_text())


def _recomputed(world: World) -> vc.RecomputedIndex:
    lines = (json.dumps(line).encode() for line in world.ledger.export())
    return vc.recompute_index(lines, _secret(world), world.ledger.tree_size())


def _tampered(world: World, change: Any) -> tuple[str, list[dict[str, Any]], bytes]:
    """(signed note, dump, tampered key): the honest index with ``change`` applied to the
    resident's record list, re-rooted and signed with the operator key."""
    secret = _secret(world)
    key = vc.index_key(secret, SUBJECT)
    index = _recomputed(world)
    lists = {k: list(v) for k, v in index.records.items()}
    lists[key] = change(lists[key])
    values = {k: vc.leaf_value(index.blinds[k], v) for k, v in lists.items()}
    cp = world.ledger.latest_checkpoint()
    assert cp is not None
    note = sign_index_note(world.ledger.origin, cp.size, cp.root, vc.tree_root(values), 0,
                           world.ledger.operator_key).note
    dump = [{"index_key": base64.b64encode(k).decode(), "value": base64.b64encode(v).decode(),
             "records": [[i, base64.b64encode(h).decode()] for i, h in lists[k]]}
            for k, v in sorted(values.items())]
    return note, dump, key


def _tampered_proof(world: World, note: str, dump: list[dict[str, Any]], key: bytes
                    ) -> vc.ResidentProof:
    """The proof a dishonest operator would serve: the real shape, over its tampered tree."""
    honest = world.ledger.completeness.prove(SUBJECT)
    mine = next(d for d in dump if base64.b64decode(d["index_key"]) == key)
    siblings = _siblings({base64.b64decode(d["index_key"]): base64.b64decode(d["value"])
                          for d in dump}, key)
    return vc.ResidentProof.from_json({
        **honest, "index_note": note, "siblings": [base64.b64encode(s).decode() for s in siblings],
        "records": [{"index": i, "leaf_hash": h} for i, h in mine["records"]]})


def _siblings(values: dict[bytes, bytes], key: bytes) -> list[bytes]:
    """Sibling hashes on ``key``'s path (the verifier's own tree rules, applied to a subset)."""
    siblings, depth, part = [], 0, dict(values)
    while len(part) > 1:
        mine = {k: v for k, v in part.items() if vc._bit(k, depth) == vc._bit(key, depth)}
        other = {k: v for k, v in part.items() if k not in mine}
        siblings.append(vc.tree_root(other, depth + 1))
        part, depth = mine, depth + 1
    return siblings


def _held(world: World) -> list[tuple[int, bytes]]:
    return [(i, h) for i, h in _recomputed(world).records[vc.index_key(_secret(world), SUBJECT)]]


CHANGES = {
    "drops": (lambda rs: rs[:1] + rs[2:], "left out records at log indices \\[{1}\\]"),
    "adds": (lambda rs: sorted([*rs, (0, b"\x07" * 32)]), "added \\[0\\]"),
    "reorders": (lambda rs: [rs[1], rs[0], *rs[2:]], "strictly increasing"),
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_resident_check_detects_a_tampered_list(world: World, name: str) -> None:
    change, message = CHANGES[name]
    note, dump, key = _tampered(world, change)
    held = _held(world)
    proof = _tampered_proof(world, note, dump, key)
    with pytest.raises(vc.CompletenessError, match=message.format(*[i for i, _ in held])):
        vc.verify_resident_proof(proof, _vkey(world), held=held, subject=SUBJECT)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_auditor_recomputation_names_the_key_and_indices(world: World, name: str) -> None:
    change, _ = CHANGES[name]
    note, dump, key = _tampered(world, change)
    parsed = vc.open_index_note(note, _vkey(world))
    with pytest.raises(vc.CompletenessError) as caught:
        vc.compare_index(_recomputed(world), parsed, dump)
    message = str(caught.value)
    assert f"index key {base64.b64encode(key).decode()}" in message
    held = [i for i, _ in _held(world)]
    expected = {"drops": f"left out log indices [{held[1]}]", "adds": "added log indices [0]",
                "reorders": "does not commit to its listed records"}[name]
    assert expected in message
    assert SUBJECT not in message


def test_honest_index_passes_both_checks(world: World) -> None:
    note = vc.open_index_note(world.ledger.completeness.latest_note().note, _vkey(world))  # type: ignore[union-attr]
    assert vc.compare_index(_recomputed(world), note, list(world.ledger.completeness.dump())[1:]) == []
    proof = vc.ResidentProof.from_json(world.ledger.completeness.prove(SUBJECT))
    assert len(vc.verify_resident_proof(proof, _vkey(world), held=_held(world),
                                        subject=SUBJECT).records) == 4


def test_index_note_for_another_size_or_root_is_refused(world: World) -> None:
    first = world.ledger.completeness.prove(SUBJECT)
    world.ledger.append(world.statement(subject="subj-later"))
    later = world.ledger.checkpoint()
    proof = vc.ResidentProof.from_json({**first, "checkpoint": later.note})
    with pytest.raises(vc.CompletenessError, match="refused"):
        vc.verify_resident_proof(proof, _vkey(world))
    cp = world.ledger.latest_checkpoint()
    assert cp is not None
    forged = sign_index_note(world.ledger.origin, cp.size, b"\x09" * 32, b"\x00" * 32, 0,
                             world.ledger.operator_key).note
    proof = vc.ResidentProof.from_json({**first, "index_note": forged, "checkpoint": cp.note})
    with pytest.raises(vc.CompletenessError, match="refused"):
        vc.verify_resident_proof(proof, _vkey(world))


def test_sibling_values_cannot_be_recomputed_without_the_secret(world: World) -> None:
    """A one-record resident's value over the public leaf hashes, without the blind, matches
    no value in the index: a sibling or neighbour value links no entry to a key."""
    values = {base64.b64decode(d["value"]) for d in list(world.ledger.completeness.dump())[1:]}
    guesses = set()
    for line in world.ledger.export():
        digest = base64.b64decode(line["leaf_hash"])
        for blind in (b"", b"\x00" * 32):
            guesses.add(vc.leaf_value(blind, [(line["index"], digest)]))
    assert values and not values & guesses


def test_cli_audit_and_resident_proof(world: World, tmp_path: Path) -> None:
    env = {"KIROKU_HOME": str(world.ledger.settings.home),
           "KIROKU_DATABASE_URL": world.ledger.settings.database_url,
           "KIROKU_KEY_DIR": str(world.ledger.settings.key_dir),
           "KIROKU_LOG_ORIGIN": world.ledger.origin}
    world.ledger.operator_key.save(world.ledger.settings.operator_key_path)
    runner = CliRunner()
    export = tmp_path / "export.jsonl"
    with export.open("w") as handle:
        for line in world.ledger.export():
            handle.write(json.dumps(line) + "\n")
    (tmp_path / "cp.txt").write_text(world.ledger.checkpoint().note)
    got = runner.invoke(kiroku_main, ["log", "completeness-key"], env=env)
    assert got.exit_code == 0, got.output
    (tmp_path / "k.hex").write_text(got.output)
    got = runner.invoke(kiroku_main, ["log", "completeness-note"], env=env)
    (tmp_path / "note.txt").write_text(got.output)
    base = [str(export), "--checkpoint", str(tmp_path / "cp.txt"), "--vkey", world.ledger.vkey,
            "--completeness-key", str(tmp_path / "k.hex")]
    assert verify_main([*base, "--index-note", str(tmp_path / "note.txt")]) == 0
    note, dump, _key = _tampered(world, lambda rs: rs[:-1])
    (tmp_path / "bad.txt").write_text(note)
    (tmp_path / "dump.jsonl").write_text("\n".join(json.dumps(x) for x in [{"index_note": note},
                                                                             *dump]))
    assert verify_main([*base, "--index-note", str(tmp_path / "bad.txt")]) == 1
    assert verify_main([*base, "--index-dump", str(tmp_path / "dump.jsonl")]) == 1
    assert verify_main([*base[:-2], "--index-note", str(tmp_path / "bad.txt")]) == 2
    (tmp_path / "proof.json").write_text(json.dumps(world.ledger.completeness.prove(SUBJECT)))
    assert verify_main(["completeness", str(tmp_path / "proof.json"), "--vkey",
                        world.ledger.vkey, "--subject", SUBJECT]) == 0
    assert verify_main(["completeness", str(tmp_path / "proof.json"), "--vkey",
                        world.ledger.vkey, "--subject", "subj-someone-else"]) == 1
    assert verify_main(["completeness", str(export), "--vkey", world.ledger.vkey]) == 2
