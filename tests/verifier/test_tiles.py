"""The verifier reads a log published as C2SP tlog-tiles (a directory, or a URL served by a plain
static web server), rebuilds the tree from the entry bundles, and names the altered tile or entry."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import checkpoints as cps
from ledger.keys import SigningKey, vkey
from ledger.tiles import write_tiles
from tests.dbutil import sqlite_database
from tests.ledger.fixtures import make_world
from tests.ledger.test_tiles import _spec_files
from verifier.cli import main


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, list[bytes], SigningKey]]:
    """A real ledger's log of 307 entries (catalog, 3 agencies, 3 keys, 300 provisions), written as tiles."""
    with sqlite_database() as url:
        world = make_world(url, tmp_path_factory.mktemp("home"))
        world.ledger.append_batch([world.statement() for _ in range(300)])
        world.ledger.checkpoint()
        out = tmp_path_factory.mktemp("tiles")
        write_tiles(world.ledger, out)
        leaves = [base64.b64decode(line["leaf"]) for line in world.ledger.export()]
        yield out, world.ledger.vkey, leaves, world.ledger.operator_key
        world.ledger.close()


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _copy(out: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(out, target)
    return target


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_tile_directory_verifies(published, capsys) -> None:  # type: ignore[no-untyped-def]
    out, key, leaves, _ = published
    code, text = _verify(capsys, "--tiles", str(out), "--vkey", key)
    assert code == 0, text
    assert text.startswith(f"OK {len(leaves)} entries and 5 tiles verified")
    # Operator entries (catalog, agencies, keys) are checked; agency statements need the keys
    # registered in payloads, which tiles do not carry, and the report says so.
    assert "7 operator signatures checked; 300 agency signatures not checkable" in text
    assert main(["tiles", str(out), "--vkey", key, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # with --json, stdout is only the report
    assert report["ok"] and report["entries"] == len(leaves)
    assert report["agency_signatures_unchecked"] == 300


def test_a_tile_url_served_by_a_static_server_verifies(published, capsys) -> None:  # type: ignore[no-untyped-def]
    out, key, leaves, _ = published
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        code, text = _verify(capsys, "--tiles", base + "/", "--vkey", key)
        assert code == 0, text
        assert text.startswith(f"OK {len(leaves)} entries")
        code, text = _verify(capsys, "--tiles", base + "/elsewhere", "--vkey", key)
        assert code == 2 and "no checkpoint at" in text
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("tile,byte", [("tile/0/000", 40), ("tile/0/001.p/51", 1000),
                                       ("tile/1/000.p/1", 8)])
def test_an_edited_tile_is_named(published, capsys, tmp_path: Path, tile: str, byte: int) -> None:  # type: ignore[no-untyped-def]
    out, key, leaves, _ = published
    assert len(leaves) == 307
    copy = _copy(out, tmp_path)
    _flip(copy / tile, byte)
    code, text = _verify(capsys, "--tiles", str(copy), "--vkey", key)
    assert code == 1
    assert text.startswith(f"FAIL tile-mismatch: {tile}: hash {byte // 32} is"), text


def test_an_edited_entry_is_named_by_index(published, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out, key, _, _ = published
    copy = _copy(out, tmp_path)
    bundle = copy / "tile/entries/001.p/51"
    data = bundle.read_bytes()
    # Entry 260 is the 5th of the bundle: change one digit of its logged_at, keeping its length.
    at = 0
    for _ in range(4):
        at += 2 + int.from_bytes(data[at:at + 2], "big")
    digit = data.index(b'"logged_at":"', at) + len('"logged_at":"') + 3
    _flip(bundle, digit)
    code, text = _verify(capsys, "--tiles", str(copy), "--vkey", key)
    assert code == 1
    assert text.startswith("FAIL index 260: entry-mismatch: entry 260 in tile/entries/001.p/51"), text


def test_missing_and_truncated_files_are_named(published, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out, key, _, _ = published
    copy = _copy(out, tmp_path)
    (copy / "tile/1/000.p/1").unlink()
    code, text = _verify(capsys, "--tiles", str(copy), "--vkey", key)
    assert code == 1 and text.startswith("FAIL tile-missing: tile/1/000.p/1: not found"), text
    shutil.rmtree(copy)
    copy = _copy(out, tmp_path)
    bundle = copy / "tile/entries/000"
    bundle.write_bytes(bundle.read_bytes()[:-7])
    code, text = _verify(capsys, "--tiles", str(copy), "--vkey", key)
    assert code == 1 and text.startswith("FAIL tile-malformed: tile/entries/000: does not split"), text


def test_a_checkpoint_by_another_key_or_no_tiles_at_all(published, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out, key, _, _ = published
    origin = key.split("+")[0]
    impostor = vkey(origin, SigningKey.generate().public_bytes)
    code, text = _verify(capsys, "--tiles", str(out), "--vkey", impostor)
    assert code == 1 and "checkpoint-signature-invalid" in text
    code, text = _verify(capsys, "--tiles", str(tmp_path), "--vkey", key)
    assert code == 2 and "not a tiled log" in text
    code, text = _verify(capsys, "--tiles", str(tmp_path / "absent"), "--vkey", key)
    assert code == 2


def _republish(leaves: list[bytes], key: SigningKey, origin: str, out: Path) -> None:
    """Tiles and a validly signed checkpoint over ``leaves``, as a dishonest operator would."""
    from verifier.merkle import leaf_hash, root_hash

    for relative, data in _spec_files(leaves).items():
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (out / relative).write_bytes(data)
    root = root_hash([leaf_hash(leaf) for leaf in leaves])
    (out / "checkpoint").write_text(cps.sign(origin, len(leaves), root, key).note)


def test_per_entry_checks_run_on_leaves_from_tiles(published, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Tiles that match a signed checkpoint still get the export's entry checks: a log whose
    operator signed a tree with an altered registration, or with two entries swapped, fails."""
    _, key, leaves, operator = published
    origin = key.split("+")[0]
    forged = json.loads(leaves[4])
    assert forged["agency"] == "operator"
    forged["time"] = forged["time"][:-2] + ("1" if forged["time"][-2] != "1" else "2") + "Z"
    altered = [*leaves[:4], json.dumps(forged, sort_keys=True, separators=(",", ":")).encode(),
               *leaves[5:]]
    _republish(altered, operator, origin, tmp_path / "a")
    code, text = _verify(capsys, "--tiles", str(tmp_path / "a"), "--vkey", key)
    assert code == 1 and text.startswith("FAIL index 4: bad-signature"), text
    swapped = [*leaves[:20], leaves[21], leaves[20], *leaves[22:]]
    _republish(swapped, operator, origin, tmp_path / "b")
    code, text = _verify(capsys, "--tiles", str(tmp_path / "b"), "--vkey", key)
    assert code == 1 and text.startswith("FAIL index 20: entries-reordered"), text
