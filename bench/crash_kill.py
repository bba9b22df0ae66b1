"""Crash-kill harness: SIGKILL ``kiroku serve`` (and, on PostgreSQL, the database backend serving
it) at random moments while several clients append, then check that nothing acknowledged is lost.

    python bench/crash_kill.py --kills 50 --database sqlite
    python bench/crash_kill.py --kills 50 --database postgres [--backend-kills 10]

Each round: clients (``--clients``, default 4) send single statements (POST /v1/provisions) and
batches of 2..20 (POST /v1/provisions/batch) over loopback; a random 0..1 s after the first
answer the whole server (parent, request workers and housekeeping process) is SIGKILLed and
started again, or, in a backend round on PostgreSQL, the backend process serving one of its
connections (found in ``pg_stat_activity`` by the server's ``application_name``) is SIGKILLed,
which makes the postmaster reset every connection of the cluster and run crash recovery.
Then, with the clients stopped:

- every receipt any client ever got is in the log at its index with its leaf hash (read from a
  ``kiroku log export`` of the whole log), and a sample of them (``--proofs``, per round) gets an
  inclusion proof over HTTP that verifies against the signed checkpoint;
- every batch sent (acknowledged or not) is in the log entirely or not at all;
- ``kiroku log fsck`` and ``kiroku verify export`` pass;
- the checkpoint after the restart is consistent (RFC 9162 proof over HTTP) with every checkpoint
  seen before it in the round, and with the previous round's;
- no answer was a 500 (a database fault answers 503 with Retry-After).

Prints the tally; exits 1 if anything acknowledged was lost or any check failed. PostgreSQL:
the database is created on the server at ``--pg-admin`` (default $KIROKU_TEST_PG or
postgres@127.0.0.1:5432/test) and dropped afterwards. A backend kill resets every connection of
that PostgreSQL cluster, other clients' too: run it on a server of your own.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HOST = "127.0.0.1"
PG_ADMIN = os.environ.get("KIROKU_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@dataclass
class Tally:
    database: str
    rounds: int = 0
    server_kills: int = 0
    backend_kills: int = 0
    requests: int = 0
    receipts: int = 0  # statements acknowledged with a receipt
    unacknowledged: int = 0  # statements sent without a receipt (killed, refused 503)
    unacknowledged_logged: int = 0  # ... of which the log holds anyway (committed, then killed)
    lost: int = 0  # acknowledged but not in the log at the receipt's index: must be 0
    partial_batches: int = 0  # must be 0
    server_errors: int = 0  # 500 answers: must be 0
    unavailable: int = 0  # 503 answers (a database fault, e.g. during PostgreSQL recovery)
    fsck_failures: int = 0
    verify_failures: int = 0
    proofs_checked: int = 0
    proof_failures: int = 0
    checkpoints_checked: int = 0
    inconsistent: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return self.server_kills + self.backend_kills

    @property
    def ok(self) -> bool:
        return not (self.lost or self.partial_batches or self.server_errors or self.fsck_failures
                    or self.verify_failures or self.proof_failures or self.inconsistent)

    def summary(self) -> str:
        return (f"crash-kill {self.database}: {self.kills} kills ({self.server_kills} server, "
                f"{self.backend_kills} database backend) in {self.rounds} rounds; "
                f"{self.requests} requests, {self.receipts} receipts, "
                f"{self.unacknowledged} statements unacknowledged "
                f"({self.unacknowledged_logged} of them logged anyway), "
                f"{self.unavailable} answers 503; acknowledged-but-lost {self.lost}, "
                f"partial batches {self.partial_batches}, 500 answers {self.server_errors}, "
                f"fsck failures {self.fsck_failures}, verify failures {self.verify_failures}, "
                f"inclusion proofs {self.proofs_checked} ({self.proof_failures} failed), "
                f"checkpoints checked for consistency {self.checkpoints_checked} "
                f"({self.inconsistent} inconsistent) -> {'OK' if self.ok else 'FAILED'}")


@dataclass
class Receipt:
    id: str
    index: int
    leaf_hash: bytes


@dataclass
class Round:
    """What the clients saw in one round."""

    receipts: list[Receipt] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)  # provision ids of each request
    acknowledged: set[str] = field(default_factory=set)
    checkpoints: set[str] = field(default_factory=set)  # signed notes seen
    lock: threading.Lock = field(default_factory=threading.Lock)
    answered: threading.Event = field(default_factory=threading.Event)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


class Harness:
    def __init__(self, database: str, *, clients: int = 4, workers: int = 2, seed: int = 1,
                 per_round: int = 400, proofs: int = 20, pg_admin: str = PG_ADMIN,
                 log: Any = None) -> None:
        self.database = database
        self.clients = clients
        self.workers = workers
        self.random = random.Random(seed)
        self.per_round = per_round
        self.proofs = proofs
        self.pg_admin = pg_admin
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.tally = Tally(database)
        self.home = Path(tempfile.mkdtemp(prefix="kiroku-crash-"))
        self.app_name = "kiroku-crash-" + uuid.uuid4().hex[:8]
        self.pg_name: str | None = None
        self.env = dict(os.environ, KIROKU_HOME=str(self.home), KIROKU_DEMO="1",
                        KIROKU_CHECKPOINT_INTERVAL="0.2", KIROKU_PROJECTION_INTERVAL="2",
                        PYTHONPATH=str(ROOT))
        self.env.pop("KIROKU_DATABASE_URL", None)
        self.server: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.statements: list[dict[str, Any]] = []
        self.ids: dict[int, str] = {}  # id(statement) → provision id
        self.vkey = ""
        self.origin = ""
        self.all_receipts: dict[str, Receipt] = {}
        self.last_checkpoint: str | None = None

    # Setup -----------------------------------------------------------------------------------
    def prepare(self, total: int) -> None:
        if self.database == "postgres":
            import psycopg

            self.pg_name = "kiroku_crash_" + uuid.uuid4().hex[:10]
            with psycopg.connect(_libpq(self.pg_admin), autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self.pg_name}"')
            base = self.pg_admin.rsplit("/", 1)[0]
            self.env["KIROKU_DATABASE_URL"] = (f"{base}/{self.pg_name}"
                                               f"?application_name={self.app_name}")
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)
        try:
            self._prepare_ledger(total)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def _prepare_ledger(self, total: int) -> None:
        from ledger.application import Ledger
        from ledger.config import Settings
        from ledger.db import upgrade
        from ledger.demo import ensure_agencies, signed_provisions
        from ledger.demo_data import demo_residents
        from ledger.domain import provision_id
        from ledger.encoding import parse_time
        from ledger.keys import load_or_create
        from ledger.signing import sign_statement

        settings = Settings.from_env()
        key, _ = load_or_create(settings.operator_key_path)
        upgrade(settings.database_url)
        ledger = Ledger(settings, key)
        try:
            agencies, keys = ensure_agencies(ledger)
            ledger.checkpoint()
            made = list(signed_provisions(ledger, agencies, keys, demo_residents("crash", 500),
                                          total, seed=11))
            self.vkey, self.origin = ledger.vkey, ledger.origin
        finally:
            ledger.close()
        for number, made_one in enumerate(made):
            statement = cast(dict[str, Any], made_one)
            payload = dict(statement["payload"])
            payload["request_id"] = f"{payload['request_id']}-crash-{number}"
            agency = statement["statement"]["agency"]
            signed = sign_statement(payload, kind="provision", agency=agency, key=keys[agency],
                                    time=parse_time(statement["statement"]["time"], field="time"))
            self.statements.append(signed)
            self.ids[id(signed)] = str(provision_id(agency, payload["request_id"]))

    # The server ------------------------------------------------------------------------------
    def start(self) -> None:
        port = _free_port()
        self.url = f"http://{HOST}:{port}"
        self.server = subprocess.Popen(
            [sys.executable, "-m", "kiroku", "serve", "--host", HOST, "--port", str(port),
             "--workers", str(self.workers)], env=self.env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready()

    def wait_ready(self, seconds: float = 90.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.server is not None and self.server.poll() is not None:
                raise RuntimeError(f"kiroku serve exited with {self.server.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("kiroku serve did not become ready")

    def kill_server(self) -> None:
        assert self.server is not None
        os.killpg(self.server.pid, signal.SIGKILL)  # parent, workers, housekeeper at once
        self.server.wait()
        self.tally.server_kills += 1

    def kill_backend(self) -> bool:
        """SIGKILL one PostgreSQL backend serving the server (an active one if any)."""
        import psycopg

        with psycopg.connect(_libpq(self.pg_admin), autocommit=True) as admin:
            rows = admin.execute("SELECT pid, state FROM pg_stat_activity WHERE "
                                 "application_name = %s", (self.app_name,)).fetchall()
        if not rows:
            return False
        active = [pid for pid, state in rows if state == "active"]
        pid = self.random.choice(active or [pid for pid, _ in rows])
        os.kill(pid, signal.SIGKILL)
        self.tally.backend_kills += 1
        return True

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()

    def cleanup(self) -> None:
        self.stop()
        if self.pg_name is not None:
            import psycopg

            for _ in range(30):  # the cluster may still be recovering from a backend kill
                try:
                    with psycopg.connect(_libpq(self.pg_admin), autocommit=True) as admin:
                        admin.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
                    break
                except psycopg.OperationalError:
                    time.sleep(1)
        shutil.rmtree(self.home, ignore_errors=True)

    # Load ------------------------------------------------------------------------------------
    def _client(self, queue: list[dict[str, Any]], lock: threading.Lock, stop: threading.Event,
                seen: Round) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not stop.is_set():
                size = 1 if self.random.random() < 0.5 else self.random.randint(2, 20)
                with lock:
                    chunk, queue[:] = queue[:size], queue[size:]
                if not chunk:
                    return
                ids = [self.ids[id(s)] for s in chunk]
                with seen.lock:
                    seen.batches.append(ids)
                    self.tally.requests += 1
                try:
                    if size == 1:
                        response = http.post("/v1/provisions", json=chunk[0])
                    else:
                        response = http.post("/v1/provisions/batch", json=chunk)
                except httpx.HTTPError:
                    continue
                self._answer(response, size == 1, seen)

    def _answer(self, response: httpx.Response, single: bool, seen: Round) -> None:
        seen.answered.set()
        if response.status_code != 201:
            with seen.lock:
                if response.status_code == 503:
                    self.tally.unavailable += 1
                    assert response.headers.get("Retry-After"), "503 without Retry-After"
                elif response.status_code >= 500:
                    self.tally.server_errors += 1
                else:
                    self.tally.notes.append(f"refused {response.status_code}: "
                                            f"{response.text[:200]}")
            return
        body = response.json()
        items = [body] if single else body["receipts"]
        with seen.lock:
            for item in items:
                seen.receipts.append(Receipt(item["id"], int(item["index"]),
                                             base64.b64decode(item["leaf_hash"])))
                seen.acknowledged.add(item["id"])
            if body.get("checkpoint"):
                seen.checkpoints.add(body["checkpoint"])

    def _poll_checkpoints(self, stop: threading.Event, seen: Round) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as http:
            while not stop.wait(0.1):
                with contextlib.suppress(httpx.HTTPError):
                    answer = http.get("/v1/log/checkpoint")
                    if answer.status_code == 200:
                        with seen.lock:
                            seen.checkpoints.add(answer.text)

    def round(self, backend: bool) -> None:
        seen = Round()
        queue = self.statements[:self.per_round]
        del self.statements[:self.per_round]
        lock, stop = threading.Lock(), threading.Event()
        threads = [threading.Thread(target=self._client, args=(queue, lock, stop, seen))
                   for _ in range(self.clients)]
        threads.append(threading.Thread(target=self._poll_checkpoints, args=(stop, seen)))
        for thread in threads:
            thread.start()
        # Kill at a random moment once answers are flowing (a client's first request waits
        # for its connection to be set up).
        deadline = time.monotonic() + 60
        while not seen.answered.is_set() and time.monotonic() < deadline:
            seen.answered.wait(0.05)
        time.sleep(self.random.uniform(0.0, 1.0))
        if backend:
            if not self.kill_backend():
                self.kill_server()
                backend = False
        else:
            self.kill_server()
        if not backend:
            stop.set()
        else:
            time.sleep(0.5)  # clients meet the recovering database, then stop
            stop.set()
        for thread in threads:
            thread.join(timeout=120)
        if not backend:
            self.start()
        else:
            self.wait_ready()
        self.tally.rounds += 1
        self.check(seen)

    # Checks ----------------------------------------------------------------------------------
    def _cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kiroku", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600, check=False)

    def _covering_checkpoint(self) -> tuple[str, Any]:
        from verifier.checkpoint import open_checkpoint
        from verifier.cli import load_vkey

        size = int(httpx.get(self.url + "/v1/log", timeout=30).json()["tree_size"])
        deadline = time.monotonic() + 60
        while True:
            note = httpx.get(self.url + "/v1/log/checkpoint", timeout=30).text
            checkpoint = open_checkpoint(note, [load_vkey(self.vkey)], origin=self.origin)
            if checkpoint.size >= size or time.monotonic() > deadline:
                return note, checkpoint
            time.sleep(0.1)

    def check(self, seen: Round) -> None:
        from verifier.checkpoint import open_checkpoint
        from verifier.cli import load_vkey
        from verifier.merkle import verify_consistency, verify_inclusion

        note, latest = self._covering_checkpoint()
        folder = self.home / "check"
        folder.mkdir(exist_ok=True)
        export, checkpoint_file = folder / "export.jsonl", folder / "checkpoint"
        checkpoint_file.write_text(note, encoding="utf-8")
        done = self._cli("log", "export", "--out", str(export), "--end", str(latest.size))
        if done.returncode != 0:
            raise RuntimeError(f"kiroku log export failed: {done.stderr[-500:]}")
        fscking = threading.Thread(target=lambda: results.append(self._cli("log", "fsck")))
        results: list[subprocess.CompletedProcess[str]] = []
        fscking.start()  # beside the verifier: both only read
        verified = self._cli("verify", "export", str(export), "--checkpoint",
                             str(checkpoint_file), "--vkey", self.vkey, "--workers", "0")
        if verified.returncode != 0:
            self.tally.verify_failures += 1
            self.tally.notes.append(f"kiroku verify: {verified.stdout[-300:]} "
                                    f"{verified.stderr[-300:]}")
        fscking.join()
        fsck = results[0]
        if fsck.returncode != 0:
            self.tally.fsck_failures += 1
            self.tally.notes.append(f"kiroku log fsck: {fsck.stdout[-300:]}")

        # What the log holds: leaf hash per index, provision ids present.
        from ledger.domain import provision_id

        hashes: dict[int, bytes] = {}
        present: set[str] = set()
        with export.open(encoding="utf-8") as lines:
            for line in lines:
                entry = json.loads(line)
                hashes[int(entry["index"])] = base64.b64decode(entry["leaf_hash"])
                leaf = json.loads(base64.b64decode(entry["leaf"]))
                payload = entry.get("payload") or {}
                if leaf.get("kind") == "provision" and "request_id" in payload:
                    present.add(str(provision_id(leaf["agency"], payload["request_id"])))
        for receipt in seen.receipts:
            self.all_receipts[receipt.id] = receipt
        self.tally.receipts += len(seen.receipts)
        for receipt in self.all_receipts.values():
            if hashes.get(receipt.index) != receipt.leaf_hash:
                self.tally.lost += 1
                self.tally.notes.append(f"receipt {receipt.id} at {receipt.index} not in the log")
        for ids in seen.batches:
            found = sum(1 for each in ids if each in present)
            if found not in (0, len(ids)):
                self.tally.partial_batches += 1
                self.tally.notes.append(f"batch of {len(ids)}: {found} in the log")
            missing_ack = [each for each in ids if each not in seen.acknowledged]
            self.tally.unacknowledged += len(missing_ack)
            self.tally.unacknowledged_logged += sum(1 for each in missing_ack if each in present)

        # A sample of this round's receipts, each with its inclusion proof over HTTP.
        sample = self.random.sample(seen.receipts, min(self.proofs, len(seen.receipts)))
        with httpx.Client(base_url=self.url, timeout=30) as http:
            for receipt in sample:
                proof = http.get("/v1/log/proof/inclusion",
                                 params={"index": receipt.index, "size": latest.size}).json()
                try:
                    verify_inclusion(receipt.leaf_hash, receipt.index, latest.size,
                                     [base64.b64decode(h) for h in proof["proof"]], latest.root)
                except Exception as exc:  # noqa: BLE001
                    self.tally.proof_failures += 1
                    self.tally.notes.append(f"inclusion of {receipt.index}: {exc}")
                self.tally.proofs_checked += 1
            # The new checkpoint against every one seen before it.
            earlier = set(seen.checkpoints)
            if self.last_checkpoint is not None:
                earlier.add(self.last_checkpoint)
            by_size: dict[int, Any] = {}
            for text in earlier:
                old = open_checkpoint(text, [load_vkey(self.vkey)], origin=self.origin)
                by_size.setdefault(old.size, []).append(old)
            for size, olds in sorted(by_size.items()):
                for old in olds:
                    self.tally.checkpoints_checked += 1
                    try:
                        if size > latest.size:
                            raise ValueError(f"checkpoint size went back from {size} "
                                             f"to {latest.size}")
                        if size == 0:
                            continue
                        proof = http.get("/v1/log/proof/consistency",
                                         params={"old": size, "new": latest.size}).json()
                        verify_consistency(size, latest.size,
                                           [base64.b64decode(h) for h in proof["proof"]],
                                           old.root, latest.root)
                    except Exception as exc:  # noqa: BLE001
                        self.tally.inconsistent += 1
                        self.tally.notes.append(f"checkpoint {size}: {exc}")
        self.last_checkpoint = note


def run(kills: int, database: str, *, backend_kills: int = 0, clients: int = 4, workers: int = 2,
        seed: int = 1, per_round: int = 400, proofs: int = 20, pg_admin: str = PG_ADMIN,
        log: Any = None) -> Tally:
    """``kills`` rounds, ``backend_kills`` of them (PostgreSQL) killing a database backend."""
    if database not in ("sqlite", "postgres"):
        raise ValueError("database is sqlite or postgres")
    if backend_kills and database != "postgres":
        raise ValueError("backend kills need PostgreSQL")
    harness = Harness(database, clients=clients, workers=workers, seed=seed,
                      per_round=per_round, proofs=proofs, pg_admin=pg_admin, log=log)
    rounds = list(range(kills))
    backend = set(harness.random.sample(rounds, min(backend_kills, kills)))
    try:
        harness.prepare(kills * per_round)
        harness.start()
        for number in rounds:
            harness.round(number in backend)
            harness.log(f"round {number + 1}/{kills}: {harness.tally.summary()}")
    finally:
        harness.cleanup()
    return harness.tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--backend-kills", type=int, default=None,
                        help="PostgreSQL: rounds that kill the database backend instead of the "
                        "server (default: a fifth of --kills)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-round", type=int, default=400,
                        help="statements the clients may send per round")
    parser.add_argument("--proofs", type=int, default=20,
                        help="receipts per round checked with an inclusion proof over HTTP")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pg-admin", default=PG_ADMIN)
    args = parser.parse_args()
    backend = args.backend_kills
    if backend is None:
        backend = args.kills // 5 if args.database == "postgres" else 0
    started = time.monotonic()
    tally = run(args.kills, args.database, backend_kills=backend, clients=args.clients,
                workers=args.workers, seed=args.seed, per_round=args.per_round,
                proofs=args.proofs, pg_admin=args.pg_admin)
    for note in tally.notes[:20]:
        print("  " + note)
    print(tally.summary())
    print(f"({time.monotonic() - started:.0f} s)")
    return 0 if tally.ok else 1


if __name__ == "__main__":
    sys.exit(main())
