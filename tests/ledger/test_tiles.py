"""Static tiles (C2SP tlog-tiles) written from stored nodes equal an independent computation from
the spec, byte for byte, around tile boundaries; runs are incremental and follow the signed
checkpoint only."""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from click.testing import CliRunner
from eventsourcing.persistence import StoredEvent
from sqlalchemy import select

from kiroku.cli import main
from ledger.application import Ledger
from ledger.config import Settings
from ledger.errors import ConfigurationError, InvalidRequest
from ledger.keys import SigningKey
from ledger.schema import log_entry
from ledger.tiles import (
    EntryTooLong,
    Tile,
    bundle,
    encode_index,
    parse_index_path,
    tiles_for_size,
    write_tiles,
)
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import make_world
from tests.verifier.conftest import load_vectors


# -- an independent reading of tlog-tiles, written from the spec's text ---------------------------
def _mth(leaf_hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH over leaf hashes (k = the largest power of two smaller than n)."""
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = 1
    while k * 2 < len(leaf_hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaf_hashes[:k]) + _mth(leaf_hashes[k:])).digest()


def _spec_files(leaves: list[bytes]) -> dict[str, bytes]:
    """Every tile and bundle path of the tree over ``leaves`` with its bytes, from the spec:
    the n-th tile at level l is MTH(D[(n*256+i)*256**l : (n*256+i+1)*256**l]) for i in 0..255;
    the partial tile at level l has floor(s / 256**l) mod 256 entries; empty tiles are absent."""
    hashes = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    size, files = len(leaves), {}

    def path(kind: str, n: int, width: int) -> str:
        digits = str(n).zfill(3 * max(1, -(-len(str(n)) // 3)))
        groups = [digits[i:i + 3] for i in range(0, len(digits), 3)]
        name = "/".join(["x" + g for g in groups[:-1]] + groups[-1:])
        return f"tile/{kind}/{name}" + ("" if width == 256 else f".p/{width}")

    level = 0
    while size // 256 ** level:
        count = size // 256 ** level
        span = 256 ** level
        for n in range(-(-count // 256)):
            width = min(256, count - n * 256)
            files[path(str(level), n, width)] = b"".join(
                _mth(hashes[(n * 256 + i) * span:(n * 256 + i + 1) * span]) for i in range(width))
            if level == 0:
                files[path("entries", n, width)] = b"".join(
                    len(leaf).to_bytes(2, "big") + leaf for leaf in leaves[n * 256:n * 256 + width])
        level += 1
    return files


def _tree_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in (out / "tile").rglob("*") if p.is_file()}


# -- logs ---------------------------------------------------------------------------------------
def _bare_ledger(url: str) -> Ledger:
    home = Path(tempfile.mkdtemp(prefix="kiroku-tiles-"))
    settings = Settings(home=home, database_url=url, key_dir=home / "keys", origin="tiles.test/log")
    return Ledger(settings, SigningKey.generate())


def _grow(ledger: Ledger, to: int, topic: str = "tests:Tiled") -> None:
    """Append generic events (their leaves commit to the stored event) through the real
    recorder, which stores leaves and subtree roots as for any entry, without statement checks."""
    size = ledger.tree_size()
    while size < to:
        batch = min(5000, to - size)
        ledger.log.insert_events([StoredEvent(uuid4(), 1, topic, b"{}") for _ in range(batch)])
        size += batch


def _leaves(ledger: Ledger) -> list[bytes]:
    with ledger.log.transaction(commit=False) as session:
        return [bytes(leaf) for leaf in session.execute(
            select(log_entry.c.leaf).order_by(log_entry.c.idx)).scalars()]


@pytest.fixture(scope="module")
def generic() -> Iterator[Ledger]:
    with sqlite_database() as url:
        ledger = _bare_ledger(url)
        yield ledger
        ledger.close()


# -- path encoding and shapes (tests/verifier/vectors/tlog_tiles_vectors.json) -------------------
def test_path_encoding_vectors() -> None:
    vectors = load_vectors("tlog_tiles_vectors.json")
    for case in vectors["path_encoding"]:
        assert encode_index(case["index"]) == case["encoded"]
        assert parse_index_path(case["encoded"]) == (case["index"], 256)
    assert encode_index(5) == "005" and encode_index(1000) == "x001/000"
    assert parse_index_path("x001/x234/067.p/9") == (1234067, 9)
    assert Tile(2, 1234067, 9).path == "tile/2/x001/x234/067.p/9"
    assert Tile(None, 0, 256).path == "tile/entries/000"


@pytest.mark.parametrize("bad", ["5", "0005", "x000/005", "005.p/0", "005.p/256", "005.p/07",
                                 "005/", "x001", "00a", "005.p/", "../000", ""])
def test_non_canonical_paths_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_index_path(bad)


def test_tree_shapes_vectors() -> None:
    for shape in load_vectors("tlog_tiles_vectors.json")["tree_shapes"]:
        tiles = tiles_for_size(shape["tree_size"])
        for level in range(3):
            at = [t for t in tiles if t.level == level]
            full = shape.get(f"level{level}_full")
            partial = shape.get(f"level{level}_partial_width")
            if full is None:
                assert not at
                continue
            assert sum(t.full for t in at) == full
            assert [t.width for t in at if not t.full] == ([partial] if partial else [])
        bundles = [t for t in tiles if t.level is None]
        assert [(t.index, t.width) for t in bundles] == [(t.index, t.width) for t in tiles
                                                          if t.level == 0]


# -- byte-exact tiles ---------------------------------------------------------------------------
def test_tiles_match_the_spec_around_boundaries(generic: Ledger, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    for size in (1, 255, 256, 257, 511, 512, 65536 + 3):
        _grow(generic, size)
        assert generic.checkpoint().size == size
        fresh = tmp_path / f"fresh-{size}"
        write_tiles(generic, fresh)
        expected = _spec_files(_leaves(generic))
        assert _tree_files(fresh) == expected, size
        assert (fresh / "checkpoint").read_text() == generic.latest_checkpoint().note  # type: ignore[union-attr]
        # The directory written run after run holds the same tiles, plus the partial tiles of
        # earlier checkpoints (which tlog-tiles says must stay servable).
        write_tiles(generic, shared)
        files = _tree_files(shared)
        assert {k: files[k] for k in expected} == expected


def test_second_run_writes_only_new_and_grown_tiles(generic: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "tiles"
    _grow(generic, generic.tree_size() + 300)
    before = generic.checkpoint().size
    first = write_tiles(generic, out)
    assert first.previous_size is None and first.checkpoint_written
    full = {p: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in (out / "tile").rglob("*") if p.is_file() and ".p" not in p.as_posix()}
    _grow(generic, before + 700)
    after = generic.checkpoint().size
    second = write_tiles(generic, out)
    new_paths = {t.path for t in tiles_for_size(after)} - {t.path for t in tiles_for_size(before)}
    new_tiles = [p for p in new_paths if not p.startswith("tile/entries/")]
    assert second.previous_size == before
    assert (second.tiles_written, second.bundles_written) == (
        len(new_tiles), len(new_paths) - len(new_tiles))
    # A size 300 + 700 further on completes a few level-0 tiles and widens the partial ones: a
    # handful of files, never one of the full tiles already there.
    assert 0 < second.tiles_written + second.bundles_written <= 12
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in full} == full
    assert second.bundle_bytes == sum((out / p).stat().st_size for p in new_paths
                                      if p.startswith("tile/entries/"))
    again = write_tiles(generic, out)
    assert (again.tiles_written, again.bundles_written, again.checkpoint_written) == (0, 0, False)


def test_unsigned_growth_is_not_published(generic: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "tiles"
    signed = generic.checkpoint()
    write_tiles(generic, out)
    _grow(generic, signed.size + 1000)
    report = write_tiles(generic, out)
    assert (report.tree_size, report.tiles_written, report.bundles_written) == (signed.size, 0, 0)
    assert (out / "checkpoint").read_text() == signed.note


def test_a_directory_of_another_log_is_refused(generic: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "tiles"
    with sqlite_database() as url:
        other = _bare_ledger(url)
        _grow(other, 3)
        other.checkpoint()
        write_tiles(other, out)
        other.close()
    before = _tree_files(out)
    with pytest.raises(ConfigurationError, match="not a checkpoint of log"):
        write_tiles(generic, out)
    assert _tree_files(out) == before


def test_an_entry_too_long_for_a_bundle_is_named_and_no_checkpoint_written(tmp_path: Path) -> None:
    assert bundle([b"a" * 65535]) == b"\xff\xff" + b"a" * 65535
    with pytest.raises(EntryTooLong, match="entry 7 is 65536 bytes"):
        bundle([b"a" * 65536], first_index=7)
    with sqlite_database() as url:
        ledger = _bare_ledger(url)
        _grow(ledger, 2)
        _grow(ledger, 3, topic="tests:" + "t" * 70_000)  # its generic leaf carries the topic
        ledger.checkpoint()
        with pytest.raises(EntryTooLong, match="entry 2 is"):
            write_tiles(ledger, tmp_path / "tiles")
        assert not (tmp_path / "tiles" / "checkpoint").exists()
        ledger.close()


# -- a real ledger, on SQLite and PostgreSQL ----------------------------------------------------
def _real_log(url: str, tmp_path: Path) -> None:
    world = make_world(url, tmp_path / "home")
    world.ledger.append_batch([world.statement() for _ in range(300)])
    checkpoint = world.ledger.checkpoint()
    out = tmp_path / "tiles"
    report = write_tiles(world.ledger, out)
    leaves = [base64.b64decode(line["leaf"]) for line in world.ledger.export()]
    assert len(leaves) == checkpoint.size == report.tree_size
    assert _tree_files(out) == _spec_files(leaves)
    # Entry bundles carry exactly the export's leaf bytes, in order.
    unpacked, data = [], (out / "tile/entries/000").read_bytes() + (
        out / f"tile/entries/001.p/{checkpoint.size - 256}").read_bytes()
    while data:
        length = int.from_bytes(data[:2], "big")
        unpacked.append(data[2:2 + length])
        data = data[2 + length:]
    assert unpacked == leaves
    assert json.loads(unpacked[-1])["index"] == checkpoint.size - 1
    world.ledger.close()


def test_real_ledger_log_sqlite(tmp_path: Path) -> None:
    with sqlite_database() as url:
        _real_log(url, tmp_path)


@pytest.mark.postgres
@pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON)
def test_real_ledger_log_postgresql(tmp_path: Path) -> None:
    with postgres_database() as url:
        _real_log(url, tmp_path)


def test_cli_writes_tiles_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIROKU_HOME", str(tmp_path / "var"))
    monkeypatch.delenv("KIROKU_DATABASE_URL", raising=False)
    runner = CliRunner()
    assert runner.invoke(main, ["init"]).exit_code == 0
    result = runner.invoke(main, ["log", "tiles", "--out", str(tmp_path / "t")])
    assert result.exit_code == 1 and "no checkpoint has been signed" in result.output
    checkpoint = runner.invoke(main, ["log", "checkpoint"]).output
    result = runner.invoke(main, ["log", "tiles", "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert "wrote 1 tiles (32 bytes) and 1 entry bundles" in result.output
    assert (tmp_path / "t" / "checkpoint").read_text() == checkpoint
    (tmp_path / "t" / "checkpoint").write_text("not a checkpoint\n")
    result = runner.invoke(main, ["log", "tiles", "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "use another directory" in result.output
    assert runner.invoke(main, ["log", "tiles", "--help"]).exit_code == 0


def test_tiles_keep_growing_across_an_operator_key_rotation(tmp_path: Path) -> None:
    """The tile directory's checkpoint was signed by the key of its time: after a rotation
    (docs/key-rotation.md) the writer still recognises it and extends the same tree."""
    from datetime import timedelta

    with sqlite_database() as url:
        world = make_world(url)
        ledger = world.ledger
        ledger.append(world.statement())
        ledger.checkpoint()
        write_tiles(ledger, tmp_path)
        ledger.rotate_operator_key(SigningKey.generate(), window=timedelta(0))
        ledger.append(world.statement())
        ledger.checkpoint()
        report = write_tiles(ledger, tmp_path)
        assert report.tree_size == ledger.tree_size()
        ledger.close()
