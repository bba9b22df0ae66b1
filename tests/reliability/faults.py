"""Faults the reliability tests inject: a TCP proxy that cuts a database off, a small tmpfs that
fills up, and a service over a fresh ledger to answer through them. Everything made here is
undone on exit (connections closed, mounts unmounted, databases and tablespaces dropped)."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from tests.ledger.fixtures import World, make_world


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``. ``cut()`` resets every connection and stops
    listening (the database is down: connections break, new ones are refused); ``restore()``
    listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop.clear()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()

    def cut(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    # RST, as when the server's host goes away
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    sock.close()

    def close(self) -> None:
        self.cut()


@contextlib.contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` (mount(8) syntax), unmounted and removed on exit."""
    folder = Path(tempfile.mkdtemp(prefix="kiroku-tmpfs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(folder)], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        folder.rmdir()
        raise PermissionError(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill ``folder``'s file system up to ``leave`` bytes with a filler file; returns it."""
    filler = folder / f"filler-{uuid.uuid4().hex[:6]}"
    stat = os.statvfs(folder)
    room = max(0, stat.f_bavail * stat.f_frsize - leave)
    with filler.open("wb") as out:
        chunk = b"\0" * (1 << 20)
        try:
            while room > 0:
                room -= out.write(chunk[:room])
            out.flush()
            os.fsync(out.fileno())
        except OSError:
            pass
    return filler


@dataclass
class Service:
    client: TestClient
    world: World

    def append(self, **overrides: Any) -> Any:
        return self.client.post("/v1/provisions", json=self.world.statement(**overrides))

    def size(self) -> int:
        return int(self.client.get("/v1/log").json()["tree_size"])


@contextlib.contextmanager
def service(url: str, home: Path) -> Iterator[Service]:
    """The API in-process over a fresh ledger at ``url`` (checkpoints signed after batches)."""
    world = make_world(url, home)
    settings = ApiSettings(home=home, database_url=url, log_origin="test.kiroku/log",
                           demo=True, background=False)
    app = create_app(settings, world.ledger)
    try:
        with TestClient(app) as client:
            yield Service(client, world)
    finally:
        world.ledger.close()
        for engine in _engines(app):
            engine.dispose()


def _engines(app: Any) -> list[Any]:
    """Every engine the service's parts opened, so that nothing keeps a file or session open."""
    found = []
    services = app.state.services
    for holder in (services.nonces, services.challenges):
        store = getattr(holder, "_datastore", None)
        engine = getattr(store, "engine", None)
        if engine is not None:
            found.append(engine)
    return found
