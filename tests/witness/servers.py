"""Real witness processes (``kiroku witness serve`` under uvicorn on 127.0.0.1) for the tests
and the benchmark, and forked logs: two ledgers with one operator key and origin."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from witness.keys import WitnessKey

KIROKU = [sys.executable, "-m", "kiroku"]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WitnessProcess:
    """One witness with its own key and state directory, restartable on the same port."""

    def __init__(self, home: Path, name: str, logs: dict[str, str]) -> None:
        self.home = home
        self.name = name
        self.logs = logs
        self.key_file = home / "witness.key"
        self.key = WitnessKey.generate(name)
        self.key.save(self.key_file)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def vkey(self) -> str:
        return self.key.vkey

    @property
    def endpoint(self) -> str:
        """This witness as one KIROKU_WITNESSES entry."""
        return f"{self.name} {self.url} {self.vkey}"

    @property
    def persisted_marker(self) -> Path:
        """Written by a witness started with ``stall_after_persist`` once it persisted a size."""
        return self.home / "persisted"

    def start(self, *, stall_after_persist: bool = False) -> None:
        """Start ``kiroku witness serve``; with ``stall_after_persist`` through the test-only
        tests/witness/stalling_witness.py, which never answers an add-checkpoint it persisted."""
        env = dict(os.environ)
        command = KIROKU
        if stall_after_persist:
            self.persisted_marker.unlink(missing_ok=True)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                              env.get("PYTHONPATH")]))
            command = [sys.executable, "-m", "tests.witness.stalling_witness",
                       str(self.persisted_marker)]
        args = [*command, "witness", "serve", "--state", str(self.home / "state"), "--key",
                str(self.key_file), "--port", str(self.port)]
        for origin, vkey in self.logs.items():
            args += ["--log", f"{origin}={vkey}"]
        self.process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"witness exited: {self.process.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                httpx.get(f"{self.url}/{'0' * 64}/checkpoint", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("witness did not start within 30 s")

    def pause(self) -> None:
        """SIGSTOP: the witness hangs (connections are accepted by the kernel, never answered)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would; ``start()`` brings it back."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.send_signal(signal.SIGCONT)  # a paused witness gets its SIGTERM
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None
