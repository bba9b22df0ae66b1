"""An auditor recomputes the completeness index from an export holding version-2 provisions.

Version-2 payloads name link codes, not the resident's pseudonym: the verifier resolves them
with the operator's link-code dump (``kiroku log link-code-dump``, ``--link-codes``). The log
mixes version-1 and version-2 provisions of the same residents; a dishonest index, a missing
dump and a dump with wrong mappings are each caught, named by log index, never by pseudonym.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from kiroku.cli import main as kiroku_main
from ledger.completeness import secret_path, sign_index_note
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import World, make_world
from verifier import completeness as vc
from verifier.cli import main as verify_main

SUBJECT = "subj-RESIDENTRESIDENT02"
OTHERS = [f"subj-other-{i}" for i in range(5)]
REPO = Path(__file__).resolve().parents[2]

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres",
                 marks=pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON)),
]


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """Version-1 provisions, then version-2 ones about the same residents, then a checkpoint."""
    database = sqlite_database if request.param == "sqlite" else postgres_database
    with database() as url:
        w = make_world(url, version=1)
        w.ledger.append_batch([w.statement(subject=SUBJECT) for _ in range(2)]
                              + [w.statement(subject=s) for s in OTHERS[:3]])
        w.version = 2
        w.ledger.append_batch([w.statement(subject=SUBJECT) for _ in range(3)]
                              + [w.statement(subject=s) for s in OTHERS])
        w.ledger.checkpoint()
        yield w
        w.ledger.close()


@pytest.fixture
def files(world: World, tmp_path: Path) -> dict[str, Path]:
    """What the auditor receives: export, checkpoint, key, note, and the link-code dump, all
    made by the operator's commands."""
    env = {"KIROKU_HOME": str(world.ledger.settings.home),
           "KIROKU_DATABASE_URL": world.ledger.settings.database_url,
           "KIROKU_KEY_DIR": str(world.ledger.settings.key_dir),
           "KIROKU_LOG_ORIGIN": world.ledger.origin}
    world.ledger.operator_key.save(world.ledger.settings.operator_key_path)
    runner = CliRunner()
    out = {name: tmp_path / name for name in
           ("export.jsonl", "cp.txt", "k.hex", "note.txt", "codes.jsonl", "dump.jsonl")}
    with out["export.jsonl"].open("w") as handle:
        for line in world.ledger.export():
            handle.write(json.dumps(line) + "\n")
    cp = world.ledger.latest_checkpoint()
    assert cp is not None
    out["cp.txt"].write_text(cp.note)
    for name, args in (("k.hex", ["log", "completeness-key"]),
                       ("note.txt", ["log", "completeness-note"])):
        got = runner.invoke(kiroku_main, args, env=env)
        assert got.exit_code == 0, got.output
        out[name].write_text(got.stdout)
    got = runner.invoke(kiroku_main, ["log", "completeness-dump", "--out", str(out["dump.jsonl"])],
                        env=env)
    assert got.exit_code == 0, got.output
    got = runner.invoke(kiroku_main, ["log", "link-code-dump", "--out", str(out["codes.jsonl"])],
                        env=env)
    assert got.exit_code == 0, got.output
    return out


def _base(world: World, files: dict[str, Path]) -> list[str]:
    return [str(files["export.jsonl"]), "--checkpoint", str(files["cp.txt"]),
            "--vkey", world.ledger.vkey, "--completeness-key", str(files["k.hex"])]


def _v2_indices(world: World, subject: str) -> list[int]:
    codes = {world.codes[(world.requester, subject)]}
    return [line["index"] for line in world.ledger.export()
            if isinstance(line.get("payload"), dict)
            and line["payload"].get("requester_code") in codes]


def test_link_code_dump_is_the_registry_with_mode_0600(world: World, files: dict[str, Path]
                                                       ) -> None:
    path = files["codes.jsonl"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(set(r) == {"agency", "code", "subject"} for r in rows)
    assert {(r["agency"], r["subject"]): r["code"] for r in rows} == world.codes
    assert len(rows) == 2 * (1 + len(OTHERS))  # requester's and provider's code per resident


def test_honest_index_verifies_with_the_dump(world: World, files: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    secret = bytes.fromhex(secret_path(world.ledger.settings.key_dir).read_text())
    codes = vc.LinkCodes.from_jsonl(files["codes.jsonl"].read_bytes())
    index = vc.recompute_index(files["export.jsonl"].open("rb"), secret,
                               world.ledger.tree_size(), resolve=codes)
    mine = [i for i, _ in index.records[vc.index_key(secret, SUBJECT)]]
    v2 = _v2_indices(world, SUBJECT)
    assert len(v2) == 3 and set(v2) < set(mine) and len(mine) == 5  # v1 and v2 under one key

    base = _base(world, files)
    for extra in (["--index-note", str(files["note.txt"])],
                  ["--index-dump", str(files["dump.jsonl"])]):
        assert verify_main([*base, *extra, "--link-codes", str(files["codes.jsonl"])]) == 0
    assert "OK completeness index" in capsys.readouterr().out
    got = subprocess.run([sys.executable, "-m", "verifier", *base, "--index-note",
                          str(files["note.txt"]), "--link-codes", str(files["codes.jsonl"])],
                         cwd=REPO, capture_output=True, text=True, check=False)
    assert got.returncode == 0, got.stderr
    assert f"({1 + len(OTHERS)} resident keys)" in got.stdout


def test_index_dropping_a_version_2_record_is_named(world: World, files: dict[str, Path],
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    secret = bytes.fromhex(files["k.hex"].read_text().strip())
    codes = vc.LinkCodes.from_jsonl(files["codes.jsonl"].read_bytes())
    honest = vc.recompute_index(files["export.jsonl"].open("rb"), secret,
                                world.ledger.tree_size(), resolve=codes)
    key = vc.index_key(secret, SUBJECT)
    dropped = _v2_indices(world, SUBJECT)[1]
    lists = {k: list(v) for k, v in honest.records.items()}
    lists[key] = [(i, h) for i, h in lists[key] if i != dropped]
    values = {k: vc.leaf_value(honest.blinds[k], v) for k, v in lists.items()}
    cp = world.ledger.latest_checkpoint()
    assert cp is not None
    note = sign_index_note(world.ledger.origin, cp.size, cp.root, vc.tree_root(values), 0,
                           world.ledger.operator_key).note
    dump = [{"index_note": note}] + [
        {"index_key": base64.b64encode(k).decode(), "value": base64.b64encode(v).decode(),
         "records": [[i, base64.b64encode(h).decode()] for i, h in lists[k]]}
        for k, v in sorted(values.items())]
    (tmp_path / "bad-dump.jsonl").write_text("\n".join(json.dumps(x) for x in dump))
    capsys.readouterr()
    assert verify_main([*_base(world, files), "--index-dump", str(tmp_path / "bad-dump.jsonl"),
                        "--link-codes", str(files["codes.jsonl"])]) == 1
    out = capsys.readouterr().out
    assert f"index key {base64.b64encode(key).decode()}: left out log indices [{dropped}]" in out
    assert SUBJECT not in out


def test_version_2_export_without_the_dump_is_refused(world: World, files: dict[str, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert verify_main([*_base(world, files), "--index-note", str(files["note.txt"])]) == 2
    err = capsys.readouterr().err
    first = min(_v2_indices(world, SUBJECT))
    assert f"log index {first} is a version-2 provision" in err
    assert "link-code dump" in err and "--link-codes" in err


def _rewrite(files: dict[str, Path], tmp_path: Path, change: dict[tuple[str, str], str | None]
             ) -> Path:
    """The link-code dump with (agency, code) rows remapped to another pseudonym, or dropped."""
    rows = []
    for line in files["codes.jsonl"].read_text().splitlines():
        row = json.loads(line)
        where = (row["agency"], row["code"])
        if where in change:
            if change[where] is None:
                continue
            row["subject"] = change[where]
        rows.append(row)
    path = tmp_path / "wrong-codes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("case", ["other-resident", "missing", "consistent-impostor"])
def test_dump_with_a_wrong_mapping_is_caught(world: World, files: dict[str, Path],
                                             tmp_path: Path, case: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    requester_code = world.codes[(world.requester, SUBJECT)]
    provider_code = world.codes[(world.provider, SUBJECT)]
    change: dict[tuple[str, str], str | None] = {
        "other-resident": {(world.provider, provider_code): OTHERS[0]},
        "missing": {(world.requester, requester_code): None},
        "consistent-impostor": {(world.requester, requester_code): "subj-impostor",
                                (world.provider, provider_code): "subj-impostor"},
    }[case]
    wrong = _rewrite(files, tmp_path, change)
    capsys.readouterr()
    assert verify_main([*_base(world, files), "--index-note", str(files["note.txt"]),
                        "--link-codes", str(wrong)]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL") == 1
    v2 = _v2_indices(world, SUBJECT)
    if case == "consistent-impostor":  # resolves, but to a key the signed index does not have
        assert "FAIL completeness-failed: the index root recomputed" in out
    else:
        assert "FAIL link-code-unresolved: 3 version-2 provisions" in out
        why = ("requester_code and provider_code resolve to two different residents"
               if case == "other-resident" else "requester_code is not in the dump")
        for index in v2:
            assert f"log index {index}: {why}" in out
    for pseudonym in (SUBJECT, OTHERS[0], "subj-impostor", requester_code, provider_code):
        assert pseudonym not in out


def test_malformed_link_code_dump_is_unusable(world: World, files: dict[str, Path],
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    first = files["codes.jsonl"].read_text().splitlines()[0]
    row = json.loads(first)
    bad.write_text(first + "\n" + json.dumps({**row, "subject": "subj-x"}) + "\n")
    capsys.readouterr()
    assert verify_main([*_base(world, files), "--index-note", str(files["note.txt"]),
                        "--link-codes", str(bad)]) == 2
    assert "two different residents" in capsys.readouterr().err
    bad.write_text('{"agency": "KYOKAI"}\n')
    assert verify_main([*_base(world, files), "--index-note", str(files["note.txt"]),
                        "--link-codes", str(bad)]) == 2
    assert "link-code dump line 1" in capsys.readouterr().err
