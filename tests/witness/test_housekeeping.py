"""The housekeeper's witness threads, running for real: the service (``create_app`` with its
background housekeeper) and two ``kiroku witness serve`` processes on 127.0.0.1.

Appended records get a witnessed checkpoint published without anyone but the threads doing
anything. One witness then hangs and is killed: appends and checkpoints go on regardless (a
witness never blocks them), the other witness keeps cosigning, and the published witnessed
checkpoint stops advancing under a policy of 2 of 2 and keeps advancing under 1 of 2. Restarted
from its state, the witness catches up with one consistency proof from the size it last cosigned
to the log's latest size. On SQLite and PostgreSQL, for both policies.

Every wait is a poll against a generous deadline (DEADLINE); the witness request timeout is
longer still, so a housekeeper that waited for a hung witness would miss its checkpoints.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.witness.servers import KIROKU, WitnessProcess, free_port
from tests.witness.service import (
    DATABASES,
    SUBJECT,
    WitnessedLog,
    database,
    witnessed_log,
    witnessing_of,
)
from verifier.checkpoint import open_checkpoint
from verifier.cosignature import CosignatureVerifier, verify_cosignatures
from verifier.note import NoteVerifier

T = TypeVar("T")
WITNESSED = "/v1/log/checkpoint/witnessed"
#: Long, so that a design where a hung witness held up checkpoints would miss DEADLINE below.
WITNESS_TIMEOUT = 30.0
DEADLINE = 20.0


def until(what: str, check: Callable[[], T | None], seconds: float = DEADLINE) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


@pytest.fixture(params=DATABASES)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WitnessedLog]:
    with witnessed_log(request.param, tmp_path) as found:
        yield found


def _cosigned_size(witness: WitnessProcess, origin: str) -> int | None:
    """The size the witness itself last cosigned (its tlog-witness monitor retrieval)."""
    path = hashlib.sha256(origin.encode()).hexdigest()
    response = httpx.get(f"{witness.url}/{path}/checkpoint", timeout=5)
    return int(response.text.split("\n")[1]) if response.status_code == 200 else None


@pytest.mark.parametrize("quorum", [2, 1])
def test_witness_threads_publish_survive_an_outage_and_catch_up(log: WitnessedLog,
                                                                 quorum: int) -> None:
    app = log.app(quorum=quorum, background=True, timeout=WITNESS_TIMEOUT)
    records = witnessing_of(app).records
    ledger = log.ledger
    w1, w2 = log.witnesses
    log_key = NoteVerifier.from_vkey(ledger.vkey)
    trusted = [CosignatureVerifier.from_vkey(w.vkey) for w in log.witnesses]

    def published() -> tuple[int, list[str]] | None:
        """The served witnessed checkpoint's size and the witnesses whose cosignatures verify."""
        response = client.get(WITNESSED)
        if response.status_code == 503:
            return None
        assert response.status_code == 200, response.text
        size = open_checkpoint(response.text, log_key, origin=ledger.origin).size
        return size, sorted(verify_cosignatures(response.text, trusted).timestamps)

    def append() -> int:
        """Append one record over HTTP; wait for a signed checkpoint to cover it; its size."""
        answer = client.post("/v1/provisions", json=log.world.statement(subject=SUBJECT))
        assert answer.status_code == 201, answer.text
        index = answer.json()["index"]
        covered = until(f"a checkpoint covering entry {index}",
                        lambda: (cp := ledger.latest_checkpoint()) is not None
                        and cp.size > index and cp)
        return int(covered.size)

    both = [w1.name, w2.name]
    with TestClient(app) as client:
        # 1. Nothing but the threads: the first checkpoint is cosigned by both and published.
        first = append()
        until("the witnessed checkpoint", lambda: published() == (first, both))
        assert _cosigned_size(w1, ledger.origin) == _cosigned_size(w2, ledger.origin) == first

        # 2. The second witness hangs, then is killed: the log goes on without it.
        w2.pause()
        grown = [append() for _ in range(3)]
        assert grown == sorted(set(grown)) and grown[0] > first
        w2.kill()
        grown.append(append())
        latest = grown[-1]
        until("the first witness to cosign the latest checkpoint",
              lambda: records.has(w1.vkey, latest))
        assert _cosigned_size(w1, ledger.origin) == latest
        if quorum == 2:
            # 2 of 2: nothing newer than what both cosigned is published as witnessed.
            assert published() == (first, both)
        else:
            assert published() == (latest, [w1.name])
        assert not any(records.has(w2.vkey, size) for size in grown)

        # 3. Restarted from its state, it catches up: one request from the size it last
        #    cosigned (a consistency proof first → latest), none of the sizes it missed.
        w2.start()
        until("the restarted witness to catch up", lambda: published() == (latest, both))
        assert _cosigned_size(w2, ledger.origin) == latest
        assert [size for size in grown if records.has(w2.vkey, size)] == [latest]
        assert records.known_size(w2.vkey) == latest

        # 4. Both cosign what comes next, as before the outage.
        after = append()
        until("the next witnessed checkpoint", lambda: published() == (after, both))


@pytest.mark.parametrize("kind", DATABASES)
def test_kiroku_serve_housekeeping_process_publishes_the_witnessed_checkpoint(
        kind: str, tmp_path: Path) -> None:
    """``kiroku serve`` as operators run it: KIROKU_WITNESSES and KIROKU_WITNESS_QUORUM read
    from the environment by its housekeeping process, whose threads get the demo's checkpoint
    cosigned by both witnesses and published by the request workers."""
    if not sys.platform.startswith("linux"):
        pytest.skip("kiroku serve's SO_REUSEPORT workers are Linux")
    with ExitStack() as stack:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIROKU_")}
        env.update(KIROKU_HOME=str(tmp_path / "home"), KIROKU_DEMO="1",
                   KIROKU_CHECKPOINT_INTERVAL="0.2", KIROKU_PROJECTION_INTERVAL="0.2")
        if kind == "postgres":
            env["KIROKU_DATABASE_URL"] = stack.enter_context(database(kind, migrate=False))
        subprocess.run([*KIROKU, "demo", "--no-serve", "-n", "5"], env=env, check=True,
                       capture_output=True, timeout=300, cwd=tmp_path)
        vkey = subprocess.run([*KIROKU, "log", "key"], env=env, check=True, capture_output=True,
                              text=True, timeout=120, cwd=tmp_path).stdout.strip()
        origin = vkey.split("+", 1)[0]
        witnesses = [WitnessProcess(tmp_path / f"w{i}", f"witness.test/s{i}", {origin: vkey})
                     for i in (1, 2)]
        for witness in witnesses:
            stack.callback(witness.stop)
            witness.start()
        env.update(KIROKU_WITNESSES=",".join(w.endpoint for w in witnesses),
                   KIROKU_WITNESS_QUORUM="2")
        port = free_port()
        server = subprocess.Popen([*KIROKU, "serve", "--host", "127.0.0.1", "--port", str(port),
                                   "--workers", "1"], env=env, cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        stack.callback(_stop_server, server)
        url = f"http://127.0.0.1:{port}"
        log_key = NoteVerifier.from_vkey(vkey)
        trusted = [CosignatureVerifier.from_vkey(w.vkey) for w in witnesses]

        def fetch(path: str) -> str | None:
            response = httpx.get(f"{url}{path}", timeout=5)
            return response.text if response.status_code == 200 else None

        latest = until("the server", lambda: fetch("/v1/log/checkpoint"), seconds=60)
        note = until("the witnessed checkpoint", lambda: fetch(WITNESSED), seconds=60)
        assert note.startswith(latest)
        assert open_checkpoint(note, log_key).size == open_checkpoint(latest, log_key).size
        assert sorted(verify_cosignatures(note, trusted).timestamps) == [w.name
                                                                         for w in witnesses]


def _stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
