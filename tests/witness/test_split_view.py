"""Split view: a log that shows two different trees of one size to different parties.

Two real witness servers (``kiroku witness serve``, uvicorn on 127.0.0.1) watch a log whose
operator signs two forks with one key and origin (two databases that diverge). The witnesses
cosign the first fork they are shown and never the second; the monitor reports a fork given
either checkpoint; nothing the witnesses did not cosign is published as witnessed. A witness
killed (SIGKILL) after it persisted a cosigned size but before it answered still refuses the
other fork after a restart (tests/witness/stalling_witness.py holds it at that point). On SQLite and PostgreSQL for the log side.
"""

from __future__ import annotations

import base64
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from api.settings import parse_witnesses
from api.witnessing import Witnessing, witnessed_note
from ledger.application import Ledger
from ledger.catalog import load_catalog
from ledger.config import Settings
from ledger.keys import SigningKey
from ledger.tlogproof import entry_proof
from ledger.witnessed import WitnessRecords
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.witness.servers import WitnessProcess
from verifier.cosignature import CosignatureVerifier, QuorumNotMet, require_quorum
from verifier.errors import MonitorError
from verifier.monitor import check_once
from verifier.note import NoteVerifier
from verifier.proofs import ConsistencyProof
from verifier.tlogproof import EntryMismatch, verify_tlog_proof

ORIGIN = "split.test/log"


class NoteSource:
    """A monitor source that serves one given checkpoint."""

    def __init__(self, note: str) -> None:
        self.note = note.encode()

    def checkpoint(self) -> bytes:
        return self.note

    def consistency(self, old: int, new: int) -> ConsistencyProof:
        raise AssertionError("a fork of one size needs no consistency proof")


def _ledger(url: str, home: Path, key: SigningKey, agency: str) -> Ledger:
    settings = Settings(home=home, database_url=url, key_dir=home / "keys", origin=ORIGIN)
    ledger = Ledger(settings, key)
    ledger.load_catalog(load_catalog())
    ledger.register_agency(agency, name_ja="分岐", name_en=f"Fork {agency}", kind="ministry",
                           roles=["法務大臣"])
    return ledger


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def forks(request: pytest.FixtureRequest) -> Iterator[tuple[Ledger, Ledger]]:
    if request.param == "postgres" and not postgres_available():
        pytest.skip(PG_SKIP_REASON)
    database = postgres_database if request.param == "postgres" else sqlite_database
    key = SigningKey.generate()
    home = Path(tempfile.mkdtemp(prefix="kiroku-fork-"))
    with ExitStack() as stack:
        first = _ledger(stack.enter_context(database()), home / "a", key, "FORKA")
        second = _ledger(stack.enter_context(database()), home / "b", key, "FORKB")
        yield first, second
        first.close()
        second.close()


@pytest.fixture
def witnesses(tmp_path: Path, forks: tuple[Ledger, Ledger]) -> Iterator[list[WitnessProcess]]:
    started = [WitnessProcess(tmp_path / f"w{i}", f"witness.test/w{i}", {ORIGIN: forks[0].vkey})
               for i in (1, 2)]
    try:
        for witness in started:
            witness.start()
        yield started
    finally:
        for witness in started:
            witness.stop()


def _witnessing(ledger: Ledger, processes: list[WitnessProcess], quorum: int) -> Witnessing:
    endpoints = parse_witnesses(",".join(p.endpoint for p in processes))
    return Witnessing(ledger, endpoints, quorum, timeout=10)


def _submit_all(witnessing: Witnessing) -> list[bool]:
    with httpx.Client(timeout=10) as http:
        return [witnessing.submit(w, http) for w in witnessing.witnesses]


def test_witnesses_cosign_one_fork_and_refuse_the_other(
        forks: tuple[Ledger, Ledger], witnesses: list[WitnessProcess]) -> None:
    first, second = forks
    a, b = first.checkpoint(), second.checkpoint()
    assert a.size == b.size and a.root != b.root  # a split view: two trees of one size
    on_first, on_second = _witnessing(first, witnesses, 2), _witnessing(second, witnesses, 2)
    assert _submit_all(on_first) == [True, True]
    assert _submit_all(on_second) == [False, False]
    assert WitnessRecords(second).candidates([p.vkey for p in witnesses], 1) == []

    trusted = [CosignatureVerifier.from_vkey(p.vkey) for p in witnesses]
    published = witnessed_note(first, on_first.witnesses, 2)
    assert published is not None and published.startswith(a.note)
    assert require_quorum(published, trusted, 2).witnesses == ["witness.test/w1",
                                                                "witness.test/w2"]
    # Nothing is acknowledged as witnessed that was not: the second fork has no cosignature.
    assert witnessed_note(second, on_second.witnesses, 1) is None
    with pytest.raises(QuorumNotMet, match="0 valid"):
        require_quorum(b.note, trusted, 1)

    # The monitor reports a fork given either checkpoint, whichever it saw first.
    log_key = NoteVerifier.from_vkey(first.vkey)
    for seen, shown in ((published, b.note), (b.note, published)):
        state = tempfile.mkdtemp(prefix="kiroku-monitor-")
        check_once(NoteSource(seen), log_key, state)
        with pytest.raises(MonitorError) as caught:
            check_once(NoteSource(shown), log_key, state)
        assert caught.value.kind == "fork"

    # The first fork grows: the witnesses cosign it with a proof from the size they cosigned.
    first.register_agency("FORKC", name_ja="続き", name_en="Next", kind="ministry",
                          roles=["法務大臣"])
    grown = first.checkpoint()
    assert _submit_all(on_first) == [True, True]
    later = witnessed_note(first, on_first.witnesses, 2)
    assert later is not None and later.startswith(grown.note)

    # An offline proof of an entry carries the cosigned checkpoint and checks with no network.
    proof = entry_proof(first, grown.size - 1, later, grown.size)
    result = verify_tlog_proof(proof, log_key, witnesses=trusted, quorum=2)
    assert result.entry is not None and result.entry["kind"] == "agency.registered"
    assert result.payload["code"] == "FORKC"
    lines = proof.split("\n")
    extra = base64.b64decode(lines[1][len("extra "):]).replace(b"FORKC", b"FORKD")
    lines[1] = "extra " + base64.b64encode(extra).decode()
    with pytest.raises(EntryMismatch):
        verify_tlog_proof("\n".join(lines), log_key, witnesses=trusted, quorum=2)


def test_a_witness_that_crashed_after_persisting_still_refuses_the_other_fork(
        tmp_path: Path, forks: tuple[Ledger, Ledger]) -> None:
    first, second = forks
    a, b = first.checkpoint(), second.checkpoint()
    witness = WitnessProcess(tmp_path / "w", "witness.test/crashy", {ORIGIN: first.vkey})
    try:
        # It persists the first fork's size and stalls before answering; it is killed there.
        witness.start(stall_after_persist=True)
        on_first = _witnessing(first, [witness], 1)
        with ThreadPoolExecutor(1) as pool:
            answered = pool.submit(_submit_all, on_first)
            deadline = time.monotonic() + 60
            while not witness.persisted_marker.exists():
                assert time.monotonic() < deadline, "the witness never persisted the request"
                assert not answered.done(), answered.result()
                time.sleep(0.05)
            witness.kill()
            assert answered.result(timeout=60) == [False]  # it died before answering
        assert WitnessRecords(first).candidates([witness.vkey], 1) == []
        witness.start()
        on_second = _witnessing(second, [witness], 1)
        assert _submit_all(on_second) == [False]
        assert witnessed_note(second, on_second.witnesses, 1) is None
        # The size it persisted was the first fork's: re-sent, that one is cosigned.
        assert _submit_all(on_first) == [True]
        note = witnessed_note(first, on_first.witnesses, 1)
        assert note is not None and note.startswith(a.note) and b.root != a.root
    finally:
        witness.stop()
