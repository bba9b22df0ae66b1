"""The witness's add-checkpoint endpoint: every status code of c2sp.org/tlog-witness, durable
state, and one cosignature per size even under concurrent requests."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.witness.treegen import FakeLog, consistency, leaves, request
from verifier.cosignature import CosignatureVerifier, require_quorum
from verifier.note import NoteVerifier
from witness.keys import WitnessKey
from witness.protocol import Witness
from witness.server import create_witness_app
from witness.state import WitnessState


class Setup:
    def __init__(self, state_dir: Path) -> None:
        self.log = FakeLog()
        self.key = WitnessKey.generate("witness.test/w1")
        self.state_dir = state_dir
        self.client = self.open()

    def open(self) -> TestClient:
        witness = Witness(self.key, WitnessState(self.state_dir),
                          {self.log.origin: [NoteVerifier.from_vkey(self.log.vkey)]})
        return TestClient(create_witness_app(witness))

    def add(self, old: int, proof: list[bytes], note: str):  # type: ignore[no-untyped-def]
        return self.client.post("/add-checkpoint", content=request(old, proof, note))


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path / "state")


def test_cosigns_a_first_checkpoint_and_then_consistent_growth(setup: Setup) -> None:
    tree = leaves(13)
    first = setup.log.checkpoint(tree[:5])
    response = setup.add(0, [], first)
    assert response.status_code == 200, response.text
    assert response.text.startswith("\u2014 witness.test/w1 ") and response.text.endswith("\n")
    witness = CosignatureVerifier.from_vkey(setup.key.vkey)
    assert require_quorum(first + response.text, [witness], 1).witnesses == ["witness.test/w1"]
    second = setup.log.checkpoint(tree)
    response = setup.add(5, consistency(5, tree), second)
    assert response.status_code == 200, response.text
    require_quorum(second + response.text, [witness], 1)
    # Monitor retrieval: the latest cosigned checkpoint, log signature and cosignature included.
    origin_hash = hashlib.sha256(setup.log.origin.encode()).hexdigest()
    latest = setup.client.get(f"/{origin_hash}/checkpoint")
    assert latest.status_code == 200 and latest.text == second + response.text


def test_stale_old_size_gets_409_with_the_cosigned_size(setup: Setup) -> None:
    tree = leaves(8)
    assert setup.add(0, [], setup.log.checkpoint(tree[:6])).status_code == 200
    response = setup.add(0, [], setup.log.checkpoint(tree))
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("text/x.tlog.size")
    assert response.text == "6\n"
    assert setup.add(6, consistency(6, tree), setup.log.checkpoint(tree)).status_code == 200


def test_a_second_tree_of_the_same_size_is_never_cosigned(setup: Setup) -> None:
    assert setup.add(0, [], setup.log.checkpoint(leaves(4))).status_code == 200
    fork = setup.log.checkpoint(leaves(4, tag="fork"))
    response = setup.add(4, [], fork)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    # ...nor a larger tree that does not extend the cosigned one.
    other = leaves(9, tag="fork")
    assert setup.add(4, consistency(4, other), setup.log.checkpoint(other)).status_code == 422


def test_refusals_have_the_spec_status_codes(setup: Setup) -> None:
    tree = leaves(3)
    note = setup.log.checkpoint(tree)
    stranger = FakeLog(origin=setup.log.origin)  # same origin, another key
    impostor = FakeLog(origin="log.test/unknown")
    cases = {
        "unknown origin": (impostor.checkpoint(tree), 0, [], 404),
        "untrusted key": (stranger.checkpoint(tree), 0, [], 403),
        "old above size": (note, 4, [], 400),
        "proof from 0": (note, 0, [tree[0]], 422),
    }
    for name, (checkpoint, old, proof, status) in cases.items():
        response = setup.add(old, proof, checkpoint)
        assert response.status_code == status, (name, response.text)
    # A trusted key's line whose signature fails: 403 (the note is malformed, signed-note).
    text, sig = note.split("\n\n")
    broken = text + "\n\n" + sig[:-10] + ("A" if sig[-10] != "A" else "B") + sig[-9:]
    assert setup.add(0, [], broken).status_code == 403
    for body in (b"old 01\n\n" + note.encode(), b"new 0\n\n" + note.encode(),
                 b"old 0\n" + note.encode(), b"old 0\nnot base64!\n\n" + note.encode()):
        assert setup.client.post("/add-checkpoint", content=body).status_code == 400
    # Nothing was cosigned: the first valid request still starts from 0.
    assert setup.add(0, [], note).status_code == 200


def test_an_empty_tree_must_have_the_empty_root(setup: Setup) -> None:
    import base64

    from tests.verifier.exportgen import sign_note

    text = f"{setup.log.origin}\n0\n{base64.b64encode(b'x' * 32).decode()}\n"
    response = setup.add(0, [], sign_note(text, setup.log.origin, setup.log.key))
    assert response.status_code == 422
    assert setup.add(0, [], setup.log.checkpoint([])).status_code == 200


def test_state_survives_a_restart(setup: Setup) -> None:
    assert setup.add(0, [], setup.log.checkpoint(leaves(7))).status_code == 200
    setup.client = setup.open()
    assert setup.add(0, [], setup.log.checkpoint(leaves(7, tag="fork"))).text == "7\n"
    assert setup.add(7, [], setup.log.checkpoint(leaves(7, tag="fork"))).status_code == 422


def test_concurrent_forks_of_one_size_get_one_cosignature(setup: Setup) -> None:
    forks = [setup.log.checkpoint(leaves(10, tag=f"fork{i}")) for i in range(8)]
    statuses: list[int] = []

    def send(note: str) -> None:
        statuses.append(setup.add(0, [], note).status_code)

    threads = [threading.Thread(target=send, args=(note,)) for note in forks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [409] * 7
