"""The service's witnessed routes over HTTP, with two real witnesses configured.

``GET /v1/log/checkpoint/witnessed`` answers 503 problem+json until k of the n witnesses
cosigned a checkpoint, then the operator's note with their cosignature lines, which verifies with
the log's vkey and with each witness's vkey. A resident's record (``GET /v1/me/provisions/{id}``)
carries the newest witnessed checkpoint that covers it, not the newest signed one; its offline
proof (``…/proof``) carries the quorum of cosignatures, and ``kiroku verify proof`` accepts it with
the witnesses' keys and refuses it with a higher quorum or a key that did not cosign.

The witness threads' work is done one round at a time here (``cosign``: the thread's own
``Witnessing.submit``) so each state is observed exactly; tests/witness/test_housekeeping.py
runs the threads themselves. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kiroku.client import verify_record
from tests.witness.service import (
    DATABASES,
    WitnessedLog,
    cosign,
    login,
    services_of,
    witnessed_log,
)
from verifier.checkpoint import open_checkpoint
from verifier.cosignature import CosignatureVerifier, QuorumNotMet, require_quorum
from verifier.note import NoteVerifier
from verifier.tlogproof import verify_tlog_proof
from witness.keys import WitnessKey

WITNESSED = "/v1/log/checkpoint/witnessed"


@pytest.fixture(params=DATABASES)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WitnessedLog]:
    with witnessed_log(request.param, tmp_path) as found:
        yield found


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code)
    return body


def test_witnessed_checkpoint_503_until_the_quorum_then_the_cosigned_note(
        log: WitnessedLog) -> None:
    log.append(3)
    app = log.app(quorum=2)
    lenient = log.app(quorum=1)  # the same log read by a service whose policy is 1 of 2
    keeper = services_of(app).housekeeper
    log_key = NoteVerifier.from_vkey(log.ledger.vkey)
    trusted = [CosignatureVerifier.from_vkey(w.vkey) for w in log.witnesses]
    with TestClient(app) as client, TestClient(lenient) as one:
        assert "2 of the 2" in _problem(client.get(WITNESSED), 503, "unavailable")["detail"]
        keeper.checkpoint_if_behind()
        signed = client.get("/v1/log/checkpoint").text
        # Signed but cosigned by nobody yet: still no witnessed checkpoint, for either policy.
        _problem(client.get(WITNESSED), 503, "unavailable")
        _problem(one.get(WITNESSED), 503, "unavailable")

        assert cosign(app, 0) == [True]
        _problem(client.get(WITNESSED), 503, "unavailable")  # 1 of 2 is not a quorum of 2
        served = one.get(WITNESSED)
        assert served.status_code == 200 and served.text.startswith(signed)
        assert require_quorum(served.text, trusted, 1).witnesses == ["witness.test/w1"]
        with pytest.raises(QuorumNotMet):
            require_quorum(served.text, trusted, 2)

        assert cosign(app, 1) == [True]
        served = client.get(WITNESSED)
        assert served.status_code == 200, served.text
        assert served.headers["content-type"].startswith("text/plain")
        note = served.text
        assert note.startswith(signed)  # the operator's note, cosignature lines appended
        checkpoint = open_checkpoint(note, log_key, origin=log.ledger.origin)
        assert checkpoint.size == log.ledger.tree_size()
        for witness, verifier in zip(log.witnesses, trusted, strict=True):
            assert require_quorum(note, [verifier], 1).witnesses == [witness.name]
        assert require_quorum(note, trusted, 2).witnesses == ["witness.test/w1",
                                                               "witness.test/w2"]

        # The log grows: the witnessed checkpoint stays the older one until both cosign.
        log.append(1)
        keeper.checkpoint_if_behind()
        grown = log.ledger.latest_checkpoint()
        assert grown is not None and grown.size == checkpoint.size + 1
        assert client.get(WITNESSED).text == note
        assert cosign(app, 0, 1) == [True, True]
        newer = client.get(WITNESSED).text
        assert newer.startswith(grown.note)
        assert open_checkpoint(newer, log_key).size == grown.size
        require_quorum(newer, trusted, 2)


def _verify_proof(path: Path, vkey: str, *witnesses: str, quorum: int
                  ) -> subprocess.CompletedProcess[str]:
    """``kiroku verify proof`` as the resident runs it; its exit code is the verdict."""
    args = [sys.executable, "-m", "kiroku", "verify", "proof", str(path), "--vkey", vkey]
    for witness in witnesses:
        args += ["--witness", witness]
    return subprocess.run([*args, "--quorum", str(quorum)], check=False, capture_output=True,
                          text=True, timeout=120, cwd=path.parent)


def test_resident_record_and_offline_proof_carry_the_newest_witnessed_checkpoint(
        log: WitnessedLog, tmp_path: Path) -> None:
    early = log.append(2)
    app = log.app(quorum=2)
    keeper = services_of(app).housekeeper
    vkey = log.ledger.vkey
    vkeys = [w.vkey for w in log.witnesses]
    trusted = [CosignatureVerifier.from_vkey(v) for v in vkeys]
    with TestClient(app) as client:
        headers = login(client, log.resident)

        def detail(receipt: Any) -> dict[str, Any]:
            response = client.get(f"/v1/me/provisions/{receipt.id}", headers=headers)
            assert response.status_code == 200, response.text
            found: dict[str, Any] = response.json()
            assert found["record"]["index"] == receipt.index
            return found

        def proof(receipt: Any) -> Any:
            return client.get(f"/v1/me/provisions/{receipt.id}/proof", headers=headers)

        keeper.checkpoint_if_behind()
        keeper.project(force=True)
        # Signed, not yet witnessed: the record is shown, without a checkpoint or a proof.
        shown = detail(early[0])
        assert shown["checkpoint"] is None and shown["inclusion"] is None
        pending = proof(early[0])
        _problem(pending, 404, "proof-pending")
        assert int(pending.headers["Retry-After"]) >= 1

        assert cosign(app, 0, 1) == [True, True]
        first = log.ledger.latest_checkpoint()
        assert first is not None
        # The log grows and signs a newer checkpoint that no witness has cosigned yet.
        late = log.append(2)
        keeper.checkpoint_if_behind()
        keeper.project(force=True)
        latest = log.ledger.latest_checkpoint()
        assert latest is not None and latest.size > first.size
        # The older record carries the witnessed checkpoint, not the newer signed one.
        shown = detail(early[0])
        assert shown["checkpoint"].startswith(first.note) and shown["checkpoint"] != first.note
        assert shown["inclusion"]["tree_size"] == first.size
        assert verify_record(shown, vkey, witnesses=vkeys)["index"] == early[0].index
        # The newer record is under no witnessed checkpoint yet.
        shown = detail(late[0])
        assert shown["checkpoint"] is None and shown["inclusion"] is None
        _problem(proof(late[0]), 404, "proof-pending")

        assert cosign(app, 0, 1) == [True, True]
        # Now the newest witnessed checkpoint covers both, and every record carries it.
        for receipt in (*early, *late):
            shown = detail(receipt)
            assert shown["checkpoint"].startswith(latest.note)
            assert shown["inclusion"]["tree_size"] == latest.size
            assert verify_record(shown, vkey, witnesses=vkeys, quorum=2)["index"] == \
                receipt.index
        with pytest.raises(QuorumNotMet):
            verify_record(detail(late[0]), vkey, witnesses=[*vkeys, WitnessKey.generate(
                "witness.test/w3").vkey])

        answer = proof(late[0])
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-disposition"] == \
            f'attachment; filename="{late[0].id}.tlog-proof"'
        text = answer.text
    result = verify_tlog_proof(text, NoteVerifier.from_vkey(vkey), witnesses=trusted, quorum=2)
    assert (result.index, result.checkpoint.size) == (late[0].index, latest.size)
    assert result.cosigned is not None
    assert result.cosigned.witnesses == ["witness.test/w1", "witness.test/w2"]

    # The resident checks the file with no network, as docs/witness.md tells them to.
    path = tmp_path / "record.tlog-proof"
    path.write_text(text)
    accepted = _verify_proof(path, vkey, *vkeys, quorum=2)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "cosigned by witness.test/w1, witness.test/w2" in accepted.stdout
    assert _verify_proof(path, vkey, vkeys[1], quorum=1).returncode == 0
    # A policy asking more cosignatures than the proof carries refuses it.
    stranger = WitnessKey.generate("witness.test/w3").vkey
    higher = _verify_proof(path, vkey, *vkeys, stranger, quorum=3)
    assert higher.returncode == 1, higher.stdout + higher.stderr
    assert "witness-quorum" in higher.stdout and "2 valid" in higher.stdout
    # A key that did not cosign (even under a cosigner's name) is not a cosignature.
    impostor = WitnessKey.generate("witness.test/w1").vkey
    wrong = _verify_proof(path, vkey, impostor, quorum=1)
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert "witness-quorum" in wrong.stdout and "0 valid" in wrong.stdout
