"""kiroku serve answers the C2SP tlog-tiles paths with exactly the bytes `kiroku log tiles`
writes, the spec's content types and cache headers, and problem+json beyond the signed tree."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from ledger.tiles import write_tiles
from tests.api.conftest import Env


def _served_equals_written(env: Env, out: Path) -> int:
    write_tiles(env.world.ledger, out)
    checked = 0
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        relative = path.relative_to(out).as_posix()
        response = env.client.get("/" + relative, headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200, (relative, response.text)
        assert response.content == path.read_bytes(), relative
        if relative == "checkpoint":
            assert response.headers["content-type"] == "text/plain; charset=utf-8"
            assert response.headers["cache-control"] == "public, max-age=5"
        else:
            assert response.headers["content-type"] == "application/octet-stream"
            assert "immutable" in response.headers["cache-control"]
            assert "content-encoding" not in response.headers
        checked += 1
    return checked


def test_routes_serve_the_written_files(env: Env, tmp_path: Path) -> None:
    # The fixture's log: catalog, agencies, keys and provisions, fewer than 256 entries, so a
    # checkpoint, one partial level-0 tile and one partial entry bundle.
    assert _served_equals_written(env, tmp_path / "tiles") == 3
    size = env.world.ledger.latest_checkpoint().size  # type: ignore[union-attr]
    assert (tmp_path / "tiles" / f"tile/0/000.p/{size}").stat().st_size == 32 * size
    assert env.client.get("/checkpoint").text == env.client.get("/v1/log/checkpoint").text


def test_entry_bundles_are_gzipped_for_clients_that_accept_it(env: Env, tmp_path: Path) -> None:
    write_tiles(env.world.ledger, tmp_path)
    size = env.world.ledger.latest_checkpoint().size  # type: ignore[union-attr]
    path = f"tile/entries/000.p/{size}"
    response = env.client.get("/" + path, headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["vary"]
    # httpx undoes the encoding: the body is the bundle itself, and it was smaller on the wire.
    assert response.content == (tmp_path / path).read_bytes()
    assert int(response.headers["content-length"]) < len(response.content)
    assert gzip.decompress(gzip.compress(response.content)) == response.content


def test_tiles_beyond_the_signed_tree_are_not_found(env: Env) -> None:
    size = env.world.ledger.latest_checkpoint().size  # type: ignore[union-attr]
    # Growth without a checkpoint is not published.
    assert env.client.post("/v1/provisions", json=env.world.statement()).status_code == 201
    assert env.world.ledger.tree_size() == size + 1
    for path in (f"/tile/0/000.p/{size + 1}", f"/tile/entries/000.p/{size + 1}", "/tile/0/000",
                 "/tile/entries/001.p/3", "/tile/1/000.p/1"):
        response = env.client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "not-found"
    assert env.client.get(f"/tile/0/000.p/{size - 1}").status_code == 200
    env.settle()
    assert env.client.get(f"/tile/0/000.p/{size + 1}").status_code == 200


@pytest.mark.parametrize("path", ["/tile/0/5", "/tile/0/x000/005", "/tile/64/000",
                                  "/tile/01/000", "/tile/0/000.p/256", "/tile/entries/000.p/0",
                                  "/tile/entries/abc", "/tile/x/000"])
def test_malformed_tile_paths_are_refused(env: Env, path: str) -> None:
    response = env.client.get(path)
    assert response.status_code == 400, path
    assert response.headers["content-type"].startswith("application/problem+json")


def test_routes_serve_the_written_files_postgresql(pg_env: Env, tmp_path: Path) -> None:
    assert _served_equals_written(pg_env, tmp_path / "tiles") == 3


def test_the_verifier_reads_the_served_routes_with_gzip(env: Env) -> None:
    """The independent verifier, given kiroku serve's URL, reads /checkpoint and the tiles
    (bundles gzip-encoded, as it asks for) and verifies the log."""
    import socket
    import threading
    import time

    import uvicorn

    from verifier.cli import main as verify

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(env.client.app, host="127.0.0.1", port=port,
                                           lifespan="off", log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert verify(["--tiles", f"http://127.0.0.1:{port}", "--vkey",
                       env.world.ledger.vkey]) == 0
    finally:
        server.should_exit = True
        thread.join(timeout=10)
