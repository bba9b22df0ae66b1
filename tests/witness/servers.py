"""Real witness processes (``kiroku witness serve`` under uvicorn on 127.0.0.1) for the tests
and the benchmark, and forked logs: two ledgers with one operator key and origin."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from witness.keys import WitnessKey

KIROKU = [sys.executable, "-m", "kiroku"]


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

    def start(self, *, crash_after_persist: bool = False) -> None:
        env = {k: v for k, v in os.environ.items() if k != "KIROKU_WITNESS_CRASH_AFTER_PERSIST"}
        if crash_after_persist:
            env["KIROKU_WITNESS_CRASH_AFTER_PERSIST"] = "1"
        args = [*KIROKU, "witness", "serve", "--state", str(self.home / "state"), "--key",
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

    def wait_exit(self, timeout: float = 10) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None
