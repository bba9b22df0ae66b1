"""The verifier on logs whose keys change (docs/key-rotation.md), from crafted exports.

Logs come from ``exportgen``, written from docs/log-format.md alone; the ``operator.key_rotated``
entry is built here from the documented payload and proof of possession, sharing no code with
``ledger`` or ``verifier``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.verifier import exportgen as g
from tests.verifier.test_merkle import _subproof
from verifier.cli import main
from verifier.errors import CheckpointSignatureError, EntryError, MonitorError
from verifier.export import verify_export
from verifier.monitor import check_once
from verifier.note import NoteVerifier
from verifier.sources import DirectorySource

POSSESSION_CONTEXT = b"kiroku/operator-key-rotation/v1\n"


def rotate(log: g.Log, new: Ed25519PrivateKey, *, window: float = 30 * 86400,
           tamper: str | None = None) -> int:
    """Append operator.key_rotated signed by the current operator key, then switch to ``new``.
    ``tamper``: "possession" (proved by another key) or "previous" (names another old key)."""
    valid_from = log.tick()
    previous = g.key_from_seed(31) if tamper == "previous" else log.operator
    payload = {"key_id": g.statement_key_id(new), "public_key": g.b64(g.raw_public(new)),
               "previous_public_key": g.b64(g.raw_public(previous)),
               "valid_from": valid_from, "retired_at": g.ts(log.clock + window)}
    prover = Ed25519PrivateKey.generate() if tamper == "possession" else new
    payload["possession"] = g.b64(prover.sign(POSSESSION_CONTEXT + rfc8785.dumps(payload)))
    index = log.append("operator.key_rotated", "operator", log.operator, payload, time=valid_from)
    log.operator = new
    return index


def dual_checkpoint(log: g.Log, old: Ed25519PrivateKey, new: Ed25519PrivateKey) -> str:
    """C2SP signed-note with two signature lines under the same name (the rotation window)."""
    return log.checkpoint(key=new) + log.checkpoint(key=old).split("\n\n")[1]


def keys(*vkeys: str) -> list[NoteVerifier]:
    return [NoteVerifier.from_vkey(v) for v in vkeys]


@pytest.fixture
def rotated() -> tuple[g.Log, Ed25519PrivateKey, Ed25519PrivateKey]:
    log = g.build_log(8)
    old, new = log.operator, g.key_from_seed(4242)
    rotate(log, new)
    log.register_agency("272001", seed=9)  # registrar entries now signed by the new key
    log.provision("272001", g.A, 100, signer="272001")
    return log, old, new


def test_old_vkey_alone_verifies_an_export_across_the_rotation(
        rotated: tuple[g.Log, Ed25519PrivateKey, Ed25519PrivateKey]) -> None:
    log, old, new = rotated
    old_vkey, new_vkey = g.vkey_of(log.origin, old), g.vkey_of(log.origin, new)
    dual = dual_checkpoint(log, old, new)
    for given in ([old_vkey], [old_vkey, new_vkey]):
        assert verify_export(list(log.lines), dual, keys(*given), workers=0).entries == len(
            log.leaves)
    # After the window the checkpoint carries the new key alone: the export introduces it.
    report = verify_export(list(log.lines), log.checkpoint(key=new), keys(old_vkey), workers=0)
    assert report.entries == len(log.leaves)


def test_the_parallel_path_follows_the_rotation_too(
        rotated: tuple[g.Log, Ed25519PrivateKey, Ed25519PrivateKey]) -> None:
    log, old, new = rotated
    for n in range(200):  # several chunks after the one holding the rotation
        log.provision(g.A, g.B, 1000 + n)
    log.register_agency("401000", seed=11)  # a registrar entry by the new key, chunks later
    report = verify_export(list(log.lines), log.checkpoint(key=new),
                           keys(g.vkey_of(log.origin, old)), workers=2, chunk_size=64)
    assert report.entries == len(log.leaves)


def test_a_checkpoint_by_a_key_the_export_does_not_introduce_is_refused(
        rotated: tuple[g.Log, Ed25519PrivateKey, Ed25519PrivateKey]) -> None:
    log, old, _ = rotated
    stranger = log.checkpoint(key=g.key_from_seed(777))
    with pytest.raises(CheckpointSignatureError):
        verify_export(list(log.lines), stranger, keys(g.vkey_of(log.origin, old)), workers=0)


def test_registrar_entries_after_the_rotation_must_use_the_new_key() -> None:
    log = g.build_log(4)
    old = log.operator
    rotate(log, g.key_from_seed(4242))
    late = log.append("agency.registered", "operator", old, {
        "code": "272001", "name_ja": "機関", "name_en": "Agency", "kind": "municipality",
        "roles": ["requester"]})
    with pytest.raises(EntryError) as caught:
        verify_export(list(log.lines), log.checkpoint(key=old), keys(g.vkey_of(log.origin, old)),
                      workers=0)
    assert (caught.value.index, caught.value.kind) == (late, "key-not-valid")
    assert "replaced" in str(caught.value)


@pytest.mark.parametrize("tamper", ["possession", "previous"])
def test_a_rotation_entry_without_a_valid_proof_is_refused(tamper: str) -> None:
    log = g.build_log(4)
    old = log.operator
    index = rotate(log, g.key_from_seed(4242), tamper=tamper)
    with pytest.raises(EntryError) as caught:
        verify_export(list(log.lines), log.checkpoint(key=old), keys(g.vkey_of(log.origin, old)),
                      workers=0)
    assert (caught.value.index, caught.value.kind) == (index, "key-not-valid")


def test_rule_4_a_statement_dated_before_its_keys_revocation_but_logged_after_is_refused(
        ) -> None:
    log = g.build_log(4)
    log.revoke_key(g.B, g.ts(log.clock + 10))  # a future effective time, as an overlap writes
    kept = log.provision(g.B, g.A, 50)  # signed and logged before it: stays valid
    assert verify_export(list(log.lines), log.checkpoint(), keys(log.vkey), workers=0).entries
    key, _ = log.agency_keys[g.B]
    payload = {"request_id": "REQ-late", "subject": "pseud-0000001", "requester": g.B,
               "provider": g.A, "basis": "2-3", "affair": "2", "items": ["地方税関係情報"],
               "requested_at": g.ts(log.clock), "provided_at": g.ts(log.clock),
               "outcome": "provided", "reason": None, "non_disclosure": False, "operator": "op"}
    late = log.append("provision", g.B, key, payload, time=g.ts(log.clock + 5),
                      logged_at=g.ts(log.clock + 20))
    with pytest.raises(EntryError) as caught:
        verify_export(list(log.lines), log.checkpoint(), keys(log.vkey), workers=0)
    assert (caught.value.index, caught.value.kind) == (late, "key-not-valid")
    assert "logged at" in str(caught.value) and late > kept


def _publish(log: g.Log, directory: Path, note: str, old_size: int | None = None) -> None:
    (directory / "proofs").mkdir(parents=True, exist_ok=True)
    (directory / "checkpoint").write_text(note)
    if old_size:
        size = len(log.leaves)
        hashes = [g.leaf_hash(leaf) for leaf in log.leaves]
        proof = {"old_size": old_size, "new_size": size, "old_root": g.b64(log.root(old_size)),
                 "new_root": g.b64(log.root(size)),
                 "proof": [g.b64(h) for h in _subproof(old_size, hashes, True)]}
        (directory / "proofs" / f"consistency-{old_size}-{size}.json").write_text(
            json.dumps(proof))


def test_the_monitor_accepts_either_key_through_the_rotation(tmp_path: Path) -> None:
    log = g.build_log(4)
    old, new = log.operator, g.key_from_seed(4242)
    old_vkey, new_vkey = g.vkey_of(log.origin, old), g.vkey_of(log.origin, new)
    src, state = tmp_path / "log", tmp_path / "state"
    _publish(log, src, log.checkpoint())
    before = len(log.leaves)
    check_once(DirectorySource(str(src)), keys(old_vkey, new_vkey), str(state))
    rotate(log, new)
    _publish(log, src, dual_checkpoint(log, old, new), before)
    for n, given in enumerate((old_vkey, new_vkey)):  # either key alone accepts the window's
        fresh = str(tmp_path / f"state-{n}")
        assert check_once(DirectorySource(str(src)), keys(given), fresh).size == len(log.leaves)
    assert check_once(DirectorySource(str(src)), keys(old_vkey, new_vkey), str(state)).size == (
        len(log.leaves))
    middle = len(log.leaves)
    log.provision(g.A, g.B, 77)
    _publish(log, src, log.checkpoint(key=new), middle)  # after the window: the new key alone
    assert check_once(DirectorySource(str(src)), keys(old_vkey, new_vkey), str(state)).size == (
        len(log.leaves))
    with pytest.raises(CheckpointSignatureError):  # a monitor never given the new key
        check_once(DirectorySource(str(src)), keys(old_vkey), str(tmp_path / "stale-config"))
    _publish(log, src, log.checkpoint(key=g.key_from_seed(5)))
    with pytest.raises((CheckpointSignatureError, MonitorError)):
        check_once(DirectorySource(str(src)), keys(old_vkey, new_vkey), str(state))


def test_cli_takes_repeated_vkeys_and_refuses_keys_of_two_logs(
        tmp_path: Path, rotated: tuple[g.Log, Ed25519PrivateKey, Ed25519PrivateKey],
        capsys: pytest.CaptureFixture[str]) -> None:
    log, old, new = rotated
    export, checkpoint = tmp_path / "export.jsonl", tmp_path / "checkpoint"
    export.write_bytes(log.export())
    checkpoint.write_text(dual_checkpoint(log, old, new))
    old_vkey, new_vkey = g.vkey_of(log.origin, old), g.vkey_of(log.origin, new)
    assert main([str(export), "--checkpoint", str(checkpoint), "--vkey", old_vkey,
                 "--vkey", new_vkey, "--workers", "0"]) == 0
    assert f"size {len(log.leaves)}" in capsys.readouterr().out
    elsewhere = g.vkey_of("other.example/log", new)
    assert main([str(export), "--checkpoint", str(checkpoint), "--vkey", old_vkey,
                 "--vkey", elsewhere, "--workers", "0"]) == 2
    assert "several logs" in capsys.readouterr().err
