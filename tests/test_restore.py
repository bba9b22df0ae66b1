"""Backup and restore (docs/backup.md): ``kiroku log import`` rebuilds a ledger from an export
that the independent verifier accepts, refuses a tampered one naming the entry with nothing
written, and the restored ledger continues the same log; ``kiroku db backup`` copies a live
SQLite database that can be restored and continued."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, insert, select

from kiroku.cli import main as cli_main
from ledger.application import Ledger
from ledger.config import Settings
from ledger.encoding import now_utc
from ledger.flags import KIND as FLAG_KIND
from ledger.flags import flag_payload
from ledger.fsck import fsck
from ledger.keys import SigningKey, vkey
from ledger.restore import log_is_empty
from ledger.retention import erase
from ledger.schema import link_code
from ledger.signing import sign_statement
from projections.runner import Runner
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import REGISTERED, World, make_world
from verifier.checkpoint import open_checkpoint
from verifier.export import verify_export_file
from verifier.merkle import verify_consistency
from verifier.note import NoteVerifier

ORIGIN = "test.kiroku/log"
AUTHORITY = "PPC"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres",
                 marks=pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON)),
]


@dataclass
class Source:
    world: World
    export: Path
    checkpoint: Path
    vkey: str
    key_file: Path
    early: list[tuple[int, str]]  # (size, checkpoint note) signed along the way

    @property
    def ledger(self) -> Ledger:
        return self.world.ledger


def _database(backend: str) -> Any:
    return sqlite_database() if backend == "sqlite" else postgres_database()


def _flag(world: World, agency: str, provision: Any, **options: Any) -> dict[str, Any]:
    payload = flag_payload(provision, "non_disclosure", set=True, reason="dv_support_measure",
                           **options)
    return sign_statement(payload, kind=FLAG_KIND, agency=agency, key=world.keys[agency])


def _write_export(ledger: Ledger, path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for line in ledger.export():
            handle.write(json.dumps(line, ensure_ascii=False, sort_keys=True,
                                    separators=(",", ":")) + "\n")


def _build_source(url: str, folder: Path) -> Source:
    """A real log: catalog, agencies and keys, provisions v1 and v2, flags, a proxy, and
    payloads erased by retention (one of them flagged before it was erased)."""
    world = make_world(url, folder / "src")
    ledger = world.ledger
    ledger.register_agency(AUTHORITY, name_ja="個人情報保護委員会", name_en="PPC",
                           kind="authority", roles=[], registered_at=REGISTERED)
    key = SigningKey.generate()
    ledger.add_agency_key(AUTHORITY, key.public_bytes, valid_from=REGISTERED)
    world.keys[AUTHORITY] = key
    early = [ledger.append(world.statement(subject=f"subj-EARLY{i:011d}")) for i in range(3)]
    ledger.append_flag(_flag(world, world.provider, early[0].id))
    erase(ledger, now_utc())  # the three early provisions lose their payloads
    notes = [(ledger.tree_size(), ledger.checkpoint().note)]
    for i in range(4):
        ledger.append(world.statement(subject=f"subj-V1RESIDENT{i:07d}"))
    world.version = 2
    v2 = [ledger.append(world.statement(subject=f"subj-V2RESIDENT{i:07d}")) for i in range(3)]
    world.version = 1
    ledger.append_flag(_flag(world, AUTHORITY, v2[1].id))
    registration, _ = ledger.register_proxy("subj-V1RESIDENT0000001", "proxy:helper-1",
                                            "legal_representative")
    ledger.cancel_proxy(registration.id, by="authority", reason="court_order")
    ledger.add_agency_key(world.provider, SigningKey.generate().public_bytes)
    notes.append((ledger.tree_size(), ledger.checkpoint().note))
    ledger.append_batch([world.statement(subject=f"subj-BATCH{i:012d}") for i in range(5)])
    final = ledger.checkpoint()
    export = folder / "export.jsonl"
    _write_export(ledger, export)
    checkpoint = folder / "checkpoint.txt"
    checkpoint.write_text(final.note, encoding="utf-8")
    key_file = folder / "operator.pem"
    ledger.operator_key.save(key_file)
    return Source(world, export, checkpoint, ledger.vkey, key_file, notes)


@dataclass
class Target:
    home: Path
    url: str

    @property
    def env(self) -> dict[str, str]:
        return {"KIROKU_HOME": str(self.home), "KIROKU_DATABASE_URL": self.url,
                "KIROKU_LOG_ORIGIN": ORIGIN}

    def settings(self) -> Settings:
        return Settings(home=self.home, database_url=self.url, key_dir=self.home / "keys",
                        origin=ORIGIN)

    def open(self) -> Ledger:
        return Ledger(self.settings(), SigningKey.load(self.home / "keys" / "operator.pem"))

    def empty(self) -> bool:
        ledger = self.open()
        try:
            return log_is_empty(ledger)
        finally:
            ledger.close()


def _target(url: str, home: Path, key: Path | SigningKey) -> Target:
    (home / "keys").mkdir(parents=True, mode=0o700)
    signing = key if isinstance(key, SigningKey) else SigningKey.load(key)
    signing.save(home / "keys" / "operator.pem")
    return Target(home, url)


def _copy_link_codes(source: str, target: str) -> None:
    """What an operator restores from a database backup: the link-code registry (not logged)."""
    with create_engine(source).connect() as src:
        rows = [dict(r._mapping) for r in src.execute(select(link_code))]
    with create_engine(target).begin() as dst:
        dst.execute(insert(link_code), rows)


def _import(target: Target, export: Path, vkey: str, *extra: str) -> Any:
    return CliRunner().invoke(cli_main, ["log", "import", str(export), "--vkey", vkey,
                                         "--workers", "0", *extra], env=target.env)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def source(backend: str, tmp_path: Path) -> Iterator[Source]:
    with _database(backend) as url:
        built = _build_source(url, tmp_path)
        yield built
        built.ledger.close()


def test_restored_ledger_continues_the_same_log(source: Source, backend: str,
                                                tmp_path: Path) -> None:
    with _database(backend) as url:
        target = _target(url, tmp_path / "dst", source.key_file)
        _copy_link_codes(source.ledger.settings.database_url, url)
        result = _import(target, source.export, source.vkey, "--checkpoint",
                         str(source.checkpoint))
        assert result.exit_code == 0, result.output
        assert "(3 erased by retention)" in result.output
        restored = target.open()
        try:
            size = source.ledger.tree_size()
            assert restored.tree_size() == size
            for k in {1, 2, 7, size // 2, size - 1, size}:
                assert restored.get_root(k) == source.ledger.get_root(k), k
            assert fsck(restored) == []
            # The checkpoint signed on import is the source's (same key, size and root).
            assert restored.latest_checkpoint().note == source.checkpoint.read_text()  # type: ignore[union-attr]

            # The views are the same, erased and flagged records included.
            assert Runner(restored).catch_up() == size
            source_runner = Runner(source.ledger)
            source_runner.catch_up()
            assert Runner(restored).digests() == source_runner.digests()

            # The log continues: the next checkpoint is consistent with every one the source
            # signed, checked with the independent verifier.
            receipt = restored.append(source.world.statement(subject="subj-AFTERRESTORE0000"))
            assert receipt.index == size
            assert json.loads(receipt.leaf)["prev"] == base64.b64encode(
                source.ledger.get_leaf(size - 1)[1]).decode()
            new = restored.checkpoint()
            verifier = NoteVerifier.from_vkey(source.vkey)
            opened_new = open_checkpoint(new.note, verifier, origin=ORIGIN)
            for old_size, note in [*source.early, (size, source.checkpoint.read_text())]:
                old = open_checkpoint(note, verifier, origin=ORIGIN)
                proof = restored.prove_consistency(old_size, opened_new.size)
                verify_consistency(old.size, opened_new.size,
                                   [base64.b64decode(h) for h in proof["proof"]],
                                   old.root, opened_new.root)

            # An export of the restored ledger is accepted as a whole.
            again = tmp_path / "again.jsonl"
            _write_export(restored, again)
            report = verify_export_file(str(again), new.note, verifier, workers=0)
            assert report.entries == size + 1 and report.erased.count == 3
        finally:
            restored.close()


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _edit_payload(lines: list[str]) -> tuple[list[str], int]:
    for i, text in enumerate(lines):
        line = json.loads(text)
        if line["payload"] and "subject" in line["payload"]:
            line["payload"]["subject"] = "subj-SOMEONEELSE00000"
            return [*lines[:i], json.dumps(line) + "\n", *lines[i + 1:]], i
    raise AssertionError("no provision with a payload")


def _bad_signature(lines: list[str]) -> tuple[list[str], int]:
    i = len(lines) - 2
    line = json.loads(lines[i])
    leaf = json.loads(base64.b64decode(line["leaf"]))
    raw = bytearray(base64.b64decode(leaf["signature"]))
    raw[0] ^= 1
    leaf["signature"] = base64.b64encode(bytes(raw)).decode()
    line["leaf"] = base64.b64encode(json.dumps(leaf, sort_keys=True, separators=(",", ":"),
                                               ensure_ascii=False).encode()).decode()
    return [*lines[:i], json.dumps(line) + "\n", *lines[i + 1:]], i


TAMPERING = {
    "edited-payload": _edit_payload,
    "deleted-line": lambda lines: ([*lines[:9], *lines[10:]], 9),
    "swapped-lines": lambda lines: ([*lines[:9], lines[10], lines[9], *lines[11:]], 9),
    "bad-signature": _bad_signature,
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
@pytest.mark.parametrize("with_checkpoint", [True, False], ids=["checkpoint", "no-checkpoint"])
def test_a_tampered_export_is_refused_naming_the_entry_and_nothing_is_written(
        how: str, with_checkpoint: bool, tmp_path: Path) -> None:
    with sqlite_database() as source_url, sqlite_database() as url:
        src = _build_source(source_url, tmp_path)
        try:
            lines, index = TAMPERING[how](_lines(src.export))
            tampered = tmp_path / "tampered.jsonl"
            tampered.write_text("".join(lines), encoding="utf-8")
            target = _target(url, tmp_path / "dst", src.key_file)
            extra = ["--checkpoint", str(src.checkpoint)] if with_checkpoint else []
            result = _import(target, tampered, src.vkey, *extra)
            assert result.exit_code == 1, result.output
            assert f"refused: index {index}:" in result.output
            assert "nothing was imported" in result.output
            assert target.empty()
        finally:
            src.ledger.close()


def test_refusals_a_non_empty_target_another_operator_key_another_origin(tmp_path: Path
                                                                          ) -> None:
    with sqlite_database() as source_url, sqlite_database() as url:
        src = _build_source(source_url, tmp_path)
        try:
            # An operator key that is not the log's: checkpoints it signed would not verify.
            stranger = _target(url, tmp_path / "stranger", SigningKey.generate())
            result = _import(stranger, src.export, src.vkey)
            assert result.exit_code == 1, result.output
            assert "operator-key-mismatch" in result.output
            assert stranger.empty()

            target = _target(url, tmp_path / "dst", src.key_file)
            other_origin = vkey("other.example/log", src.ledger.operator_key.public_bytes)
            result = _import(target, src.export, other_origin)
            assert result.exit_code == 2 and "KIROKU_LOG_ORIGIN" in result.output
            assert target.empty()

            # Without the link-code registry the entries import but no checkpoint is signed.
            result = _import(target, src.export, src.vkey)
            assert result.exit_code == 1, result.output
            assert "no checkpoint signed yet" in result.output
            restored = target.open()
            assert restored.tree_size() == src.ledger.tree_size() and fsck(restored) == []
            restored.close()

            result = _import(target, src.export, src.vkey)
            assert result.exit_code == 2, result.output
            assert "already holds a log" in result.output
        finally:
            src.ledger.close()


def test_sqlite_online_backup_while_appending_restores_and_continues(tmp_path: Path) -> None:
    with sqlite_database() as url:
        world = make_world(url, tmp_path / "src")
        ledger = world.ledger
        home = tmp_path / "src"
        ledger.operator_key.save(home / "keys" / "operator.pem")
        env = {"KIROKU_HOME": str(home), "KIROKU_DATABASE_URL": url, "KIROKU_LOG_ORIGIN": ORIGIN}
        for i in range(20):
            ledger.append(world.statement(subject=f"subj-BEFORE{i:011d}"))
        ledger.checkpoint()
        statements = [world.statement(subject=f"subj-DURING{i:011d}") for i in range(300)]
        errors: list[BaseException] = []

        def appending() -> None:
            try:
                for start in range(0, len(statements), 10):
                    ledger.append_batch(statements[start:start + 10])
                    if start % 50 == 0:
                        ledger.checkpoint()
            except BaseException as exc:  # noqa: BLE001 -- reported by the test below
                errors.append(exc)

        writer = threading.Thread(target=appending)
        writer.start()
        copy = tmp_path / "backup.sqlite3"
        result = CliRunner().invoke(cli_main, ["db", "backup", "--out", str(copy)], env=env)
        writer.join()
        assert result.exit_code == 0, result.output
        assert not errors
        assert CliRunner().invoke(cli_main, ["db", "backup", "--out", str(copy)],
                                  env=env).exit_code == 2  # never overwrites

        restored_url = f"sqlite:///{copy}"
        restored = Ledger(Settings(home=home, database_url=restored_url,
                                   key_dir=home / "keys", origin=ORIGIN), ledger.operator_key)
        try:
            size = restored.tree_size()
            assert 20 <= size <= ledger.tree_size()
            assert restored.get_root(size) == ledger.get_root(size)
            assert fsck(restored) == []
            before = restored.latest_checkpoint()
            assert before is not None
            restored.append(world.statement(subject="subj-AFTERBACKUP0000"))
            after = restored.checkpoint()
            verifier = NoteVerifier.from_vkey(ledger.vkey)
            proof = restored.prove_consistency(before.size, after.size)
            verify_consistency(before.size, after.size,
                               [base64.b64decode(h) for h in proof["proof"]], before.root,
                               open_checkpoint(after.note, verifier, origin=ORIGIN).root)
        finally:
            restored.close()
            ledger.close()


def test_a_log_whose_operator_key_was_rotated_continues_with_the_new_key(tmp_path: Path
                                                                         ) -> None:
    with sqlite_database() as source_url, sqlite_database() as url, sqlite_database() as url2:
        world = make_world(source_url, tmp_path / "src")
        ledger = world.ledger
        first_vkey, old_key = ledger.vkey, ledger.operator_key
        ledger.append(world.statement())
        new_key = SigningKey.generate()
        ledger.rotate_operator_key(new_key, window=timedelta(0))
        ledger.register_agency("LATE", name_ja="後発", name_en="Late", kind="ministry",
                               roles=[], registered_at=REGISTERED)
        ledger.append(world.statement())
        export = tmp_path / "export.jsonl"
        _write_export(ledger, export)
        try:
            # The key the log started with can no longer sign for it.
            stale = _target(url, tmp_path / "stale", old_key)
            result = _import(stale, export, first_vkey)
            assert result.exit_code == 1 and "operator-key-mismatch" in result.output
            assert stale.empty()

            target = _target(url2, tmp_path / "dst", new_key)
            result = _import(target, export, first_vkey)
            assert result.exit_code == 0, result.output
            restored = target.open()
            assert restored.get_root() == ledger.get_root()
            note = restored.latest_checkpoint()
            assert note is not None
            open_checkpoint(note.note, NoteVerifier.from_vkey(vkey(ORIGIN, new_key.public_bytes)),
                            origin=ORIGIN)
            restored.close()
        finally:
            ledger.close()
