"""The monitor (rollback, fork, inconsistency, staleness, empty log) and the proof commands."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.verifier import exportgen as g
from tests.verifier.test_merkle import _path, _subproof
from verifier.cli import main
from verifier.errors import MonitorError
from verifier.monitor import check_once, load_state
from verifier.note import NoteVerifier
from verifier.sources import DirectorySource


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _hashes(log: g.Log, size: int) -> list[bytes]:
    return [g.leaf_hash(leaf) for leaf in log.leaves[:size]]


def _publish(log: g.Log, directory: Path, size: int, old_sizes: tuple[int, ...] = ()) -> None:
    (directory / "proofs").mkdir(parents=True, exist_ok=True)
    (directory / "checkpoint").write_text(log.checkpoint(size))
    for old in old_sizes:
        proof = {"old_size": old, "new_size": size, "old_root": _b64(log.root(old)),
                 "new_root": _b64(log.root(size)),
                 "proof": [_b64(h) for h in _subproof(old, _hashes(log, size), True)]}
        (directory / "proofs" / f"consistency-{old}-{size}.json").write_text(json.dumps(proof))


def test_monitor_follows_a_growing_log_from_empty(tmp_path: Path, small_log: g.Log) -> None:
    src, state = tmp_path / "log", tmp_path / "state"
    vkey = NoteVerifier.from_vkey(small_log.vkey)
    _publish(small_log, src, 0)
    assert check_once(DirectorySource(str(src)), vkey, str(state)).size == 0
    _publish(small_log, src, 10)  # from size 0: no proof needed (tlog-witness semantics)
    assert check_once(DirectorySource(str(src)), vkey, str(state)).size == 10
    _publish(small_log, src, 31, old_sizes=(10,))
    assert check_once(DirectorySource(str(src)), vkey, str(state)).size == 31
    stored = load_state(str(state))
    assert stored is not None and stored.note == (src / "checkpoint").read_bytes()


def test_monitor_rollback_fork_inconsistent_stale(tmp_path: Path, small_log: g.Log) -> None:
    src, state = tmp_path / "log", tmp_path / "state"
    vkey = NoteVerifier.from_vkey(small_log.vkey)
    _publish(small_log, src, 20)
    check_once(DirectorySource(str(src)), vkey, str(state), now=lambda: 1000.0)

    _publish(small_log, src, 12)
    with pytest.raises(MonitorError) as info:
        check_once(DirectorySource(str(src)), vkey, str(state))
    assert info.value.kind == "rollback"

    (src / "checkpoint").write_text(small_log.checkpoint(20, root=small_log.root(21)))
    with pytest.raises(MonitorError) as info:
        check_once(DirectorySource(str(src)), vkey, str(state))
    assert info.value.kind == "fork"

    forked = g.build_log(seed=2)  # another history under the same operator key and origin
    forked.operator = small_log.operator
    (src / "checkpoint").write_text(small_log.checkpoint(25, root=forked.root(25)))
    _publish(small_log, src / "x", 25, old_sizes=(20,))
    (src / "proofs" / "consistency-20-25.json").write_text((src / "x" / "proofs" / "consistency-20-25.json").read_text())
    with pytest.raises(MonitorError) as info:
        check_once(DirectorySource(str(src)), vkey, str(state))
    assert info.value.kind == "inconsistent"

    _publish(small_log, src, 20)
    check_once(DirectorySource(str(src)), vkey, str(state), max_age=60, now=lambda: 1030.0)
    with pytest.raises(MonitorError) as info:
        check_once(DirectorySource(str(src)), vkey, str(state), max_age=60, now=lambda: 1100.0)
    assert info.value.kind == "stale"


def test_monitor_cli_exit_codes(tmp_path: Path, small_log: g.Log, capsys: pytest.CaptureFixture[str]) -> None:
    src, state = tmp_path / "log", tmp_path / "state"
    _publish(small_log, src, 20)
    args = ["monitor", str(src), "--vkey", small_log.vkey, "--state", str(state), "--once"]
    assert main(args) == 0
    _publish(small_log, src, 5)
    assert main(args) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("FAIL rollback:")
    assert main(["monitor", str(tmp_path / "nowhere"), "--vkey", small_log.vkey, "--state", str(state), "--once"]) == 2
    (src / "checkpoint").write_text(small_log.checkpoint(25, key=g.key_from_seed(5)))
    assert main(args) == 1


def test_inclusion_and_consistency_commands(tmp_path: Path, small_log: g.Log, capsys: pytest.CaptureFixture[str]) -> None:
    hashes = _hashes(small_log, 31)
    (tmp_path / "cp").write_text(small_log.checkpoint())
    (tmp_path / "cp20").write_text(small_log.checkpoint(20))
    (tmp_path / "leaf").write_bytes(small_log.leaves[7])
    (tmp_path / "leaf8").write_bytes(small_log.leaves[8])
    proof = {"leaf_index": 7, "tree_size": 31, "leaf_hash": _b64(hashes[7]),
             "root_hash": _b64(small_log.root()), "proof": [_b64(h) for h in _path(7, hashes)]}
    (tmp_path / "inc.json").write_text(json.dumps(proof))
    base = ["inclusion", str(tmp_path / "inc.json"), "--checkpoint", str(tmp_path / "cp"), "--vkey", small_log.vkey]
    assert main(base) == 0
    assert main(base + ["--leaf", str(tmp_path / "leaf")]) == 0
    assert main(base + ["--leaf", str(tmp_path / "leaf8")]) == 1
    proof["leaf_index"] = 6
    (tmp_path / "inc.json").write_text(json.dumps(proof))
    assert main(base) == 1
    (tmp_path / "inc.json").write_text("{}")
    assert main(base) == 2

    cons = {"old_size": 20, "new_size": 31, "old_root": _b64(small_log.root(20)), "new_root": _b64(small_log.root()),
            "proof": [_b64(h) for h in _subproof(20, hashes, True)]}
    (tmp_path / "cons.json").write_text(json.dumps(cons))
    cargs = ["consistency", str(tmp_path / "cons.json"), "--old", str(tmp_path / "cp20"), "--new", str(tmp_path / "cp"),
             "--vkey", small_log.vkey]
    assert main(cargs) == 0
    cons["proof"] = cons["proof"][:-1]
    (tmp_path / "cons.json").write_text(json.dumps(cons))
    assert main(cargs) == 1
    assert "FAIL" in capsys.readouterr().out
