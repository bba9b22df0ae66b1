"""The Go module mirror's own tlog and note packages accept kiroku's tiles and checkpoint: read
from a `kiroku log tiles` directory and from `kiroku serve`'s routes, the root they compute for
the checkpoint's size is the signed one, every record checks, and every tile is byte-exact."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.keys import SigningKey, vkey
from ledger.tiles import write_tiles
from tests.api.conftest import Env, _build
from tests.dbutil import sqlite_database
from tests.interop.gobuild import build, requires_go
from tests.ledger.test_tiles import _bare_ledger, _grow

pytestmark = requires_go
SOURCE = Path(__file__).with_name("tlog_tiles.go")


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(SOURCE, tmp_path_factory.mktemp("go"))


def _run(program: Path, source: str, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(program), source, key], check=False, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def served_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with sqlite_database() as url:
        yield from _build(url, tmp_path_factory.mktemp("api"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_go_reads_a_real_log_from_a_directory_and_from_kiroku_serve(
        program: Path, served_env: Env, tmp_path: Path) -> None:
    import uvicorn

    ledger = served_env.world.ledger
    ledger.append_batch([served_env.world.statement() for _ in range(300)])
    checkpoint = ledger.checkpoint()
    write_tiles(ledger, tmp_path / "tiles")
    done = _run(program, str(tmp_path / "tiles"), ledger.vkey)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"ok size={checkpoint.size} ")
    assert f"records_proved={checkpoint.size} " in done.stdout
    assert "tiles_recomputed=3 paths_parsed=5" in done.stdout

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(served_env.client.app, host="127.0.0.1", port=port,
                                           lifespan="off", log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        done = _run(program, f"http://127.0.0.1:{port}", ledger.vkey)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith(f"ok size={checkpoint.size} ")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_go_reads_three_levels_of_tiles_and_refuses_an_altered_one(program: Path,
                                                                    tmp_path: Path) -> None:
    with sqlite_database() as url:
        ledger = _bare_ledger(url)
        _grow(ledger, 65536 + 3)  # full level-0 and level-1 tiles and a level-2 tile
        checkpoint = ledger.checkpoint()
        out = tmp_path / "tiles"
        write_tiles(ledger, out)
        key = vkey(ledger.origin, ledger.operator_key.public_bytes)
        ledger.close()
    done = _run(program, str(out), key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"ok size={checkpoint.size} ")
    assert "tiles_recomputed=259 " in done.stdout  # 256 + 1 level 0, 1 + 0 level 1, 1 level 2

    tile = out / "tile/1/000"
    data = bytearray(tile.read_bytes())
    data[100] ^= 1
    tile.write_bytes(bytes(data))
    done = _run(program, str(out), key)
    # The root does not need that tile; the first record proof through it fails.
    assert done.returncode == 1
    assert done.stdout.startswith("FAIL record 0: invalid transparency proof"), done.stdout

    impostor = vkey(checkpoint.origin, SigningKey.generate().public_bytes)
    done = _run(program, str(out), impostor)
    assert done.returncode == 1 and done.stdout.startswith("FAIL checkpoint note:")
