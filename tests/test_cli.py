"""The kiroku command line as an operator and an agency use it, with exit codes scripts rely on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kiroku.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("KIROKU_HOME", str(tmp_path / "var"))
    monkeypatch.delenv("KIROKU_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def kiroku(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def _payload(index: int) -> dict:
    return {
        "request_id": f"cli-{index}", "subject": "subj-CLITESTCLITESTCLIT", "requester": "JHIA",
        "provider": "131121", "basis": "2-4", "affair": "2", "items": ["住民票関係情報"],
        "requested_at": "2026-01-05T01:00:00Z", "provided_at": "2026-01-05T01:01:00Z",
        "outcome": "provided", "reason": None, "non_disclosure": False, "operator": "op-JHIA-1",
    }


def _set_up_agencies(home: Path) -> Path:
    assert kiroku("init").exit_code == 0
    for code, name, role in (("JHIA", "全国健康保険協会", "全国健康保険協会"),
                             ("131121", "世田谷区", "市町村長")):
        result = kiroku("agency", "register", code, "--name-ja", name, "--name-en", code,
                        "--kind", "insurer", "--role", role,
                        "--registered-at", "2025-01-01T00:00:00Z")
        assert result.exit_code == 0, result.output
    key = home / "setagaya.pem"
    result = kiroku("agency", "add-key", "131121", "--generate", str(key),
                    "--valid-from", "2025-01-01T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    return key


def test_help_everywhere() -> None:
    for command in ([], ["db"], ["log"], ["log", "prove"], ["agency"], ["sign"], ["append"],
                    ["init"], ["demo"], ["log", "export"], ["log", "erase"]):
        result = kiroku(*command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output, command


def test_sign_append_prove_export_verify(home: Path) -> None:
    key = _set_up_agencies(home)
    (home / "payloads.jsonl").write_text("\n".join(json.dumps(_payload(i)) for i in range(3)))
    signed = kiroku("sign", "--key", str(key), str(home / "payloads.jsonl"))
    assert signed.exit_code == 0, signed.output
    receipts = kiroku("append", "-", input=signed.output)
    assert receipts.exit_code == 0, receipts.output
    indexes = [json.loads(line)["index"] for line in receipts.output.splitlines()]
    assert len(indexes) == 3 and indexes == sorted(indexes)

    again = kiroku("append", "-", input=signed.output)  # idempotent re-submission
    assert again.output == receipts.output

    checkpoint = kiroku("log", "checkpoint")
    assert checkpoint.exit_code == 0 and checkpoint.output.startswith("kiroku.local/log\n")
    (home / "cp.txt").write_text(checkpoint.output)
    proof = json.loads(kiroku("log", "prove", "inclusion", str(indexes[0])).output)
    assert proof["leaf_index"] == indexes[0] and proof["proof"]
    consistency = json.loads(kiroku("log", "prove", "consistency", "2", str(indexes[-1] + 1)).output)
    assert consistency["old_size"] == 2

    assert kiroku("log", "export", "--out", str(home / "export.jsonl")).exit_code == 0
    lines = (home / "export.jsonl").read_text().splitlines()
    assert [json.loads(x)["index"] for x in lines] == list(range(indexes[-1] + 1))
    vkey = kiroku("log", "key").output.strip()
    verified = kiroku("verify", str(home / "export.jsonl"), "--checkpoint", str(home / "cp.txt"),
                      "--vkey", vkey)
    assert verified.exit_code == 0, verified.output
    assert kiroku("log", "fsck").exit_code == 0

    # The resident's records are in the views before retention ends...
    assert kiroku("projections", "run", "--once").exit_code == 0
    assert "subj-CLITEST" in json.dumps(_resident_rows(home))

    # Retention: payloads erased, everything still verifies.
    erased = kiroku("log", "erase", "--before", "2999-01-01T00:00:00Z", "--yes")
    assert erased.output.startswith("erased 3 payload(s)\n")
    # ...and gone from them after; the views equal a rebuild from the erased log.
    assert "subj-CLITEST" not in json.dumps(_resident_rows(home))
    rebuilt = kiroku("projections", "rebuild")
    assert rebuilt.exit_code == 0 and "differ" not in rebuilt.output, rebuilt.output
    assert kiroku("log", "export", "--out", str(home / "erased.jsonl")).exit_code == 0
    exported = [json.loads(x) for x in (home / "erased.jsonl").read_text().splitlines()]
    assert [e["erased"] for e in exported[-3:]] == [True, True, True]
    assert all(e["payload"] is None and e["salt"] is None for e in exported[-3:])
    assert "subj-CLITEST" not in (home / "erased.jsonl").read_text()
    verified = kiroku("verify", str(home / "erased.jsonl"), "--checkpoint", str(home / "cp.txt"),
                      "--vkey", vkey)
    assert verified.exit_code == 0, verified.output


def _resident_rows(home: Path) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(home / "var" / "kiroku.sqlite3") as db:
        return db.execute("SELECT * FROM kiroku_resident_record").fetchall()


def test_refused_statement_exits_1_and_appends_nothing(home: Path) -> None:
    key = _set_up_agencies(home)
    bad = dict(_payload(1), items=["戸籍関係情報"])
    signed = kiroku("sign", "--key", str(key), "-", input=json.dumps(bad))
    size = json.loads(kiroku("log", "prove", "inclusion", "0").output)["tree_size"]
    result = CliRunner().invoke(main, ["append", "-"], input=signed.output)
    assert result.exit_code == 1
    assert "items-not-allowed" in result.output
    assert json.loads(kiroku("log", "prove", "inclusion", "0").output)["tree_size"] == size


def test_unusable_input_exits_2(home: Path) -> None:
    _set_up_agencies(home)
    result = CliRunner().invoke(main, ["append", "-"], input="{not json\n")
    assert result.exit_code == 2 and "not JSON" in result.output
    result = CliRunner().invoke(main, ["log", "prove", "inclusion", "999"])
    assert result.exit_code == 1 and "invalid-request" in result.output


def test_commands_need_init_first(home: Path) -> None:
    result = CliRunner().invoke(main, ["log", "checkpoint"])
    assert result.exit_code == 2 and "kiroku init" in result.output


def test_operator_registers_and_revokes_a_resident_certificate(home: Path) -> None:
    from api.demo import ensure_ca, issue_resident
    from api.residents import CredentialStore, fingerprint, parse_certificate
    from kiroku.cli import _open_ledger, _settings

    _set_up_agencies(home)
    ca_key, ca, ca_path = ensure_ca(home / "ca")
    _, cert_path, _ = issue_resident(ca_key, ca, home / "residents", "A")
    result = kiroku("resident", "register", str(cert_path), "--subject", "subj-CLITESTCLITESTCLIT",
                    "--ca", str(ca_path))
    assert result.exit_code == 0, result.output
    fp = fingerprint(parse_certificate(cert_path.read_text()))
    store = CredentialStore(_open_ledger(_settings()))
    assert store.subject_for(fp) == "subj-CLITESTCLITESTCLIT"

    other_key, other_ca, _ = ensure_ca(home / "other-ca")
    _, stranger, _ = issue_resident(other_key, other_ca, home / "strangers", "Z")
    refused = CliRunner().invoke(main, ["resident", "register", str(stranger), "--subject",
                                        "subj-X", "--ca", str(ca_path)])
    assert refused.exit_code == 2 and "CA" in refused.output  # another CA (same name) is refused

    assert kiroku("resident", "revoke", str(cert_path)).exit_code == 0
    assert CredentialStore(_open_ledger(_settings())).subject_for(fp) is None
