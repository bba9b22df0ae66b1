"""``kiroku serve`` as an operator runs it: request workers plus one housekeeping process that
signs checkpoints and keeps the views current, restarted if it dies, stopped with the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _until(what: str, check, seconds: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _housekeepers(server: subprocess.Popen[bytes]) -> list[int]:
    found = []
    for child in Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split():
        if Path(f"/proc/{child}/comm").read_text().strip() == "kiroku-housekee":
            found.append(int(child))
    return found


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], subprocess.Popen[bytes]]]:
    if not sys.platform.startswith("linux"):
        pytest.skip("SO_REUSEPORT workers and /proc are Linux")
    env = dict(os.environ, KIROKU_HOME=str(tmp_path), KIROKU_DEMO="1",
               KIROKU_CHECKPOINT_INTERVAL="0.2", KIROKU_PROJECTION_INTERVAL="0.2")
    subprocess.run([sys.executable, "-m", "kiroku", "demo", "--no-serve", "-n", "30"], env=env,
                   cwd=ROOT, check=True, capture_output=True)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "kiroku", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "2"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _until("the server", lambda: httpx.get(url + "/healthz", timeout=2).status_code == 200)
        yield url, env, server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _statement(env: dict[str, str]) -> dict:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from ledger.application import Ledger
        from ledger.config import Settings
        from ledger.demo import ensure_agencies, signed_provisions
        from ledger.demo_data import demo_residents
        from ledger.keys import SigningKey

        settings = Settings.from_env()
        ledger = Ledger(settings, SigningKey.load(settings.operator_key_path))
        try:
            agencies, keys = ensure_agencies(ledger)
            statement = next(iter(signed_provisions(ledger, agencies, keys,
                                                    demo_residents("serve", 3), 1, seed=5)))
        finally:
            ledger.close()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return statement


def test_housekeeping_process_checkpoints_projects_and_comes_back(served) -> None:  # type: ignore[no-untyped-def]
    url, env, server = served
    keepers = _until("the housekeeping process", lambda: _housekeepers(server))
    assert len(keepers) == 1
    # A receipt waited for gets its proof from a checkpoint the housekeeping process signed.
    receipt = httpx.post(url + "/v1/provisions?wait=true", json=_statement(env), timeout=30)
    assert receipt.status_code == 201, receipt.text
    assert receipt.json()["inclusion"]["tree_size"] > receipt.json()["index"]

    def views_current() -> bool:
        health = httpx.get(url + "/healthz", timeout=5).json()
        return all(view["lag"] == 0 for view in health["projections"])

    _until("the views to catch up", views_current)
    # Killed, it is started again, and it goes on signing checkpoints.
    os.kill(keepers[0], signal.SIGKILL)
    again = _until("a new housekeeping process",
                   lambda: [p for p in _housekeepers(server) if p != keepers[0]])
    assert len(again) == 1
    receipt = httpx.post(url + "/v1/provisions?wait=true", json=_statement(env), timeout=30)
    assert receipt.status_code == 201 and receipt.json()["inclusion"] is not None
    # SIGTERM stops every process of the server.
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0
    assert not Path(f"/proc/{again[0]}").exists() or \
        Path(f"/proc/{again[0]}/stat").read_text().split()[2] == "Z"


def test_workers_do_not_outlive_a_killed_server(served) -> None:  # type: ignore[no-untyped-def]
    _url, _env, server = served
    keepers = _until("the housekeeping process", lambda: _housekeepers(server))
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    assert len(children) >= 3 and str(keepers[0]) in children  # workers, housekeeper (+ tracker)
    server.kill()  # the parent alone, as the OOM killer would
    server.wait()

    def gone() -> bool:
        return all(not Path(f"/proc/{child}").exists()
                   or Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
                   for child in children)

    _until("the workers to exit", gone)
