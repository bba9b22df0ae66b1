"""Key rotation and revocation (docs/key-rotation.md), on SQLite and PostgreSQL.

Agency keys: a rotation adds the new key and revokes the old one at the end of an overlap; a
revocation has an effective time. Operator key: an ``operator.key_rotated`` entry signed by the
old key brings in the new one; checkpoints carry both signatures during the window. Each test
checks the ledger, ``fsck`` and the independent verifier agree.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger import errors
from ledger.application import Ledger
from ledger.fsck import fsck
from ledger.keys import SigningKey, vkey
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import World, make_world
from verifier.checkpoint import open_checkpoint
from verifier.errors import CheckpointSignatureError
from verifier.export import ExportReport, verify_export_file
from verifier.note import NoteVerifier

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres",
                 marks=pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON)),
]


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    database = sqlite_database if request.param == "sqlite" else postgres_database
    with database() as url:
        w = make_world(url, tmp_path / "home")
        yield w
        w.ledger.close()


def refused(world: World, submission: object, error: type[errors.LedgerError]) -> str:
    with pytest.raises(error) as caught:
        world.ledger.append(submission)
    return str(caught.value)


def verify(world: World, tmp_path: Path, *vkeys: str) -> ExportReport:
    """Export the whole log, sign a checkpoint and run the independent verifier on both."""
    ledger = world.ledger
    note = ledger.checkpoint().note
    path = tmp_path / "export.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for line in ledger.export():
            handle.write(json.dumps(line, ensure_ascii=False, sort_keys=True,
                                    separators=(",", ":")) + "\n")
    keys = [NoteVerifier.from_vkey(v) for v in (vkeys or (ledger.vkey,))]
    return verify_export_file(str(path), note, keys, workers=0)


def wait_until(moment: datetime) -> None:
    delay = (moment - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay + 0.05)


# -- agency keys --------------------------------------------------------------------------------
def test_during_the_overlap_both_keys_are_accepted(world: World, tmp_path: Path) -> None:
    old = world.keys[world.provider]
    new = SigningKey.generate()
    added, revoked = world.ledger.rotate_agency_key(world.provider, new.public_bytes,
                                                    overlap=timedelta(days=7))
    assert (added.entry["kind"], revoked.entry["kind"]) == ("agency.key_added",
                                                            "agency.key_revoked")
    assert revoked.index == added.index + 1  # one transaction, consecutive entries
    world.ledger.append(world.statement(key=old))
    world.ledger.append(world.statement(key=new))
    world.ledger.refresh_registry()
    state = world.ledger.registry.keys
    valid_from = state[new.key_id].valid_from
    assert state[old.key_id].revoked_at == valid_from + timedelta(days=7)
    assert fsck(world.ledger) == []
    assert verify(world, tmp_path).entries == world.ledger.tree_size()


def test_after_the_effective_time_the_old_key_is_refused_and_its_entries_stay_valid(
        world: World, tmp_path: Path) -> None:
    old = world.keys[world.provider]
    new = SigningKey.generate()
    world.ledger.rotate_agency_key(world.provider, new.public_bytes, overlap=timedelta(seconds=2))
    signed_by_old = world.ledger.append(world.statement(key=old))
    world.ledger.refresh_registry()
    revoked_at = world.ledger.registry.keys[old.key_id].revoked_at
    assert revoked_at is not None
    wait_until(revoked_at)

    message = refused(world, world.statement(key=old), errors.KeyRevoked)
    assert old.key_id in message and "sign with a current key" in message
    # Rule 4: dated before the revocation but arriving after it is refused as well.
    late = world.statement(key=old, time=revoked_at - timedelta(seconds=1))
    refused(world, late, errors.KeyRevoked)
    world.ledger.append(world.statement(key=new))

    assert fsck(world.ledger) == []
    report = verify(world, tmp_path)
    assert report.entries == world.ledger.tree_size() > signed_by_old.index


def test_a_future_revocation_is_judged_at_each_statements_own_time(world: World) -> None:
    key = world.keys[world.provider]
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    world.ledger.revoke_agency_key(world.provider, key.key_id, revoked_at=at)
    world.ledger.refresh_registry()
    registry = world.ledger.registry
    before = at - timedelta(seconds=1)
    assert registry.key_for(world.provider, key.key_id, before, before).key_id == key.key_id
    with pytest.raises(errors.KeyRevoked):
        registry.key_for(world.provider, key.key_id, at, before)  # dated at the effective time
    with pytest.raises(errors.KeyRevoked):
        registry.key_for(world.provider, key.key_id, before, at)  # logged at it
    world.ledger.append(world.statement())  # now is well before it


def test_revocation_times_the_log_refuses(world: World) -> None:
    from ledger.provision import CLOCK_SKEW

    ledger, code = world.ledger, world.provider
    planned = SigningKey.generate()
    start = datetime.now(UTC) + timedelta(days=1)
    ledger.add_agency_key(code, planned.public_bytes, valid_from=start)
    with pytest.raises(errors.InvalidRevocation, match="would precede it"):
        ledger.revoke_agency_key(code, planned.key_id, revoked_at=start - timedelta(hours=1))
    key = world.keys[code]
    with pytest.raises(errors.InvalidRevocation, match="in the past"):
        ledger.revoke_agency_key(code, key.key_id, past_limit=CLOCK_SKEW,
                                 revoked_at=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(errors.UnknownKey):
        ledger.revoke_agency_key(world.requester, key.key_id)
    size = ledger.tree_size()
    ledger.revoke_agency_key(code, key.key_id, revoked_at=start)
    with pytest.raises(errors.InvalidRevocation, match="already revoked"):
        ledger.revoke_agency_key(code, key.key_id, revoked_at=start + timedelta(hours=1))
    assert ledger.tree_size() == size + 1  # refusals appended nothing
    # An emergency during a planned end brings it forward.
    ledger.revoke_agency_key(code, key.key_id)
    refused(world, world.statement(), errors.KeyRevoked)


def test_rotation_needs_the_old_key_named_when_there_are_several(world: World) -> None:
    code = world.provider
    world.ledger.add_agency_key(code, SigningKey.generate().public_bytes)
    with pytest.raises(errors.InvalidRequest, match="--old"):
        world.ledger.rotate_agency_key(code, SigningKey.generate().public_bytes)
    old = world.keys[code]
    world.ledger.rotate_agency_key(code, SigningKey.generate().public_bytes,
                                   old_key_id=old.key_id, overlap=timedelta(0))
    refused(world, world.statement(key=old), errors.KeyRevoked)


# -- what agencies log in with ------------------------------------------------------------------
def test_signed_requests_and_the_page_session_end_when_the_overlap_ends(tmp_path: Path) -> None:
    from tests.api.conftest import _build
    from tests.api.test_web_pages import login

    with sqlite_database() as url:
        for env in _build(url, tmp_path):
            target = f"/v1/agencies/{env.x}/report"
            browser = login(env, "X")  # a console session signed in with the old key
            old = env.world.keys[env.x]
            new = SigningKey.generate()
            env.world.ledger.rotate_agency_key(env.x, new.public_bytes,
                                               overlap=timedelta(seconds=2))
            assert env.get("X", target).status_code == 200  # the old key, inside the overlap
            assert browser.get("/agency").status_code == 200
            env.world.ledger.refresh_registry()
            revoked_at = env.world.ledger.registry.keys[old.key_id].revoked_at
            assert revoked_at is not None
            wait_until(revoked_at + timedelta(seconds=1.1))  # pages re-read keys once a second
            refused_request = env.get("X", target)
            assert refused_request.status_code == 401
            assert "revoked" in refused_request.json()["detail"]
            assert browser.get("/agency").status_code == 303  # back to the log-in page
            env.world.keys[env.x] = new
            assert env.get("X", target).status_code == 200


# -- the operator key ---------------------------------------------------------------------------
def _signature_lines(note: str, origin: str) -> list[str]:
    return [line for line in note.split("\n\n", 1)[1].splitlines()
            if line.startswith(f"\u2014 {origin} ")]


def test_operator_rotation_dual_signs_checkpoints_and_old_vkey_still_verifies(
        world: World, tmp_path: Path) -> None:
    ledger = world.ledger
    old, new = ledger.operator_key, SigningKey.generate()
    old_vkey, new_vkey = ledger.vkey, vkey(ledger.origin, new.public_bytes)
    before = ledger.checkpoint()
    receipt = ledger.rotate_operator_key(new, window=timedelta(days=30))
    assert receipt.entry["kind"] == "operator.key_rotated"
    assert receipt.entry["key_id"] == old.key_id  # introduced by the old key
    ledger.register_agency("PENSION", name_ja="日本年金機構", name_en="Japan Pension Service",
                           kind="pension", roles=[world.basis.requester])
    registered = ledger.export_entries([ledger.tree_size() - 1])[0]
    leaf = json.loads(base64.b64decode(registered["leaf"]))
    assert leaf["key_id"] == new.key_id  # registrar entries now signed by the new key
    ledger.append(world.statement())

    checkpoint = ledger.checkpoint()
    assert len(_signature_lines(checkpoint.note, ledger.origin)) == 2
    for key in (old_vkey, new_vkey):  # either key alone opens it
        assert open_checkpoint(checkpoint.note, NoteVerifier.from_vkey(key)).size == checkpoint.size
    assert ledger.vkeys == [new_vkey, old_vkey]
    index_note = ledger.completeness.latest_note()
    assert index_note is not None and len(_signature_lines(index_note.note, ledger.origin)) == 2
    # The checkpoint signed before the rotation (old key only) still counts as the log's own.
    assert ledger.latest_checkpoint() is not None
    assert len(_signature_lines(before.note, ledger.origin)) == 1

    assert fsck(ledger) == []
    assert verify(world, tmp_path, old_vkey).entries == ledger.tree_size()
    assert verify(world, tmp_path, old_vkey, new_vkey).entries == ledger.tree_size()
    with pytest.raises(errors.OperatorKeyError, match="window"):
        ledger.rotate_operator_key(SigningKey.generate(), window=timedelta(days=1))


def test_after_the_window_checkpoints_carry_the_new_key_alone(
        world: World, tmp_path: Path) -> None:
    ledger = world.ledger
    old_vkey = ledger.vkey
    new = SigningKey.generate()
    ledger.rotate_operator_key(new, window=timedelta(0))
    ledger.append(world.statement())
    checkpoint = ledger.checkpoint()
    lines = _signature_lines(checkpoint.note, ledger.origin)
    assert len(lines) == 1
    with pytest.raises(CheckpointSignatureError):
        open_checkpoint(checkpoint.note, NoteVerifier.from_vkey(old_vkey))
    # The export brings the new key in, introduced under the old one: the old vkey suffices.
    assert verify(world, tmp_path, old_vkey).entries == ledger.tree_size()
    assert ledger.vkeys == [vkey(ledger.origin, new.public_bytes)]


def test_a_process_holding_the_old_key_follows_the_key_file(world: World) -> None:
    ledger = world.ledger
    settings, old = ledger.settings, ledger.operator_key
    other = Ledger(settings, old)  # e.g. the service, started before the rotation
    try:
        new = SigningKey.generate()
        ledger.rotate_operator_key(new, window=timedelta(days=30))
        other.refresh_registry()
        with pytest.raises(errors.OperatorKeyError, match="restart it with the new key"):
            other.register_agency("PENSION", name_ja="日本年金機構", name_en="Japan Pension",
                                  kind="pension", roles=[world.basis.requester])
        with pytest.raises(errors.OperatorKeyError):
            other.checkpoint()
        new.save(settings.operator_key_path)  # what 'kiroku operator rotate-key' writes
        other.register_agency("PENSION", name_ja="日本年金機構", name_en="Japan Pension",
                              kind="pension", roles=[world.basis.requester])
        assert other.operator_key.key_id == new.key_id
        assert other.co_signing_keys() and other.co_signing_keys()[0].key_id == old.key_id
        assert len(_signature_lines(other.checkpoint().note, ledger.origin)) == 2
    finally:
        other.close()


def test_a_rotation_to_a_former_key_is_refused(world: World) -> None:
    ledger = world.ledger
    first = ledger.operator_key
    ledger.rotate_operator_key(SigningKey.generate(), window=timedelta(0))
    with pytest.raises(errors.OperatorKeyError, match="operator key already"):
        ledger.rotate_operator_key(first, window=timedelta(0))


def test_witness_configured_with_the_old_vkey_cosigns_during_the_window(
        world: World, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.settings import parse_witnesses
    from api.witnessing import Witnessing, witnessed_note
    from witness.keys import WitnessKey
    from witness.protocol import Witness
    from witness.server import create_witness_app
    from witness.state import WitnessState

    ledger = world.ledger
    old_vkey = ledger.vkey
    ledger.append(world.statement())
    ledger.checkpoint()
    key = WitnessKey.generate("witness.test/rotation")
    witnessing = Witnessing(ledger, parse_witnesses(f"{key.name} http://w0 {key.vkey}"), 1)
    witness = Witness(key, WitnessState(tmp_path / "witness"),
                      {ledger.origin: [NoteVerifier.from_vkey(old_vkey)]})
    endpoint = witnessing.witnesses[0]
    with TestClient(create_witness_app(witness), base_url=endpoint.url) as http:
        assert witnessing.submit(endpoint, http)  # type: ignore[arg-type]
        ledger.rotate_operator_key(SigningKey.generate(), window=timedelta(days=30))
        ledger.append(world.statement())
        dual = ledger.checkpoint()
        assert len(_signature_lines(dual.note, ledger.origin)) == 2
        assert witnessing.submit(endpoint, http)  # type: ignore[arg-type]
    note = witnessed_note(ledger, witnessing.witnesses, 1)
    assert note is not None and note.startswith(dual.note.split("\n\n")[0])


# -- the commands ---------------------------------------------------------------------------------
def test_the_operator_runs_both_rotations_from_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from kiroku.cli import main
    from ledger.catalog import load_catalog

    monkeypatch.setenv("KIROKU_HOME", str(tmp_path / "var"))
    monkeypatch.delenv("KIROKU_DATABASE_URL", raising=False)

    def kiroku(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    assert kiroku("init")[0] == 0
    role = load_catalog().bases["2-4"].provider
    assert kiroku("agency", "register", "131121", "--name-ja", "世田谷区", "--name-en",
                  "Setagaya City", "--kind", "municipality", "--role", role)[0] == 0
    code, out = kiroku("agency", "add-key", "131121", "--generate", str(tmp_path / "a1.pem"))
    first = json.loads(out)["key_id"]
    code, out = kiroku("agency", "rotate-key", "131121", "--generate", str(tmp_path / "a2.pem"),
                       "--overlap", "7d")
    assert code == 0 and json.loads(out)["retired_key_id"] == first
    assert kiroku("agency", "rotate-key", "131121", "--key", str(tmp_path / "a2.pem"),
                  "--overlap", "soon")[0] == 2  # not a duration
    code, out = kiroku("agency", "revoke-key", "131121", first, "--at", "2001-01-01T00:00:00Z")
    assert code == 1 and "invalid-revocation" in out

    code, old_vkey = kiroku("log", "key")
    code, out = kiroku("operator", "rotate-key", "--generate", str(tmp_path / "op2.pem"),
                       "--window", "30d")
    assert code == 0, out
    code, keys = kiroku("log", "key")
    new_vkey = keys.splitlines()[0]
    assert keys.splitlines() == [new_vkey, old_vkey.strip()] and new_vkey != old_vkey.strip()
    assert (tmp_path / "var" / "keys" / "operator.retiring.pem").exists()
    code, note = kiroku("log", "checkpoint")
    assert note.count("\u2014 kiroku.local/log ") == 2
    code, out = kiroku("operator", "finish-rotation", "--yes")
    assert code == 1 and "window is open" in out
    assert (tmp_path / "var" / "keys" / "operator.retiring.pem").exists()
    export, checkpoint = tmp_path / "export.jsonl", tmp_path / "checkpoint"
    checkpoint.write_text(note)
    assert kiroku("log", "export", "--out", str(export))[0] == 0
    code, out = kiroku("verify", str(export), "--checkpoint", str(checkpoint), "--vkey",
                       old_vkey.strip(), "--workers", "0")
    assert code == 0, out
    assert kiroku("log", "fsck")[0] == 0
