"""Retention as the operator runs it: ``kiroku retention apply`` erases what the period says is
due, reports it without personal data, rebuilds the views, is idempotent, and ``kiroku verify``
still verifies the whole log while naming the erased entries. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kiroku.cli import main
from ledger import retention
from ledger.errors import ConfigurationError
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.verifier import exportgen
from verifier.export import verify_export, verify_export_file
from verifier.note import NoteVerifier

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres",
                 marks=pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON)),
]


def kiroku(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def ok(*args: str, input: str | None = None) -> str:
    result = kiroku(*args, input=input)
    assert result.exit_code == 0, result.output
    return result.stdout


def payload(n: int) -> dict[str, Any]:
    return {"request_id": f"ret-{n}", "subject": f"subj-RETENTION{n:02d}XXXXXXXXX",
            "requester": "JHIA", "provider": "131121", "basis": "2-4", "affair": "2",
            "items": ["住民票関係情報"], "requested_at": "2026-01-05T01:00:00Z",
            "provided_at": "2026-01-05T01:01:00Z", "outcome": "provided", "reason": None,
            "non_disclosure": False, "operator": f"op-JHIA-{n}"}


@dataclass
class Operator:
    home: Path
    key: Path

    def append(self, numbers: range) -> list[int]:
        source = "\n".join(json.dumps(payload(n)) for n in numbers)
        signed = ok("sign", "--key", str(self.key), "-", input=source)
        return [json.loads(line)["index"] for line in ok("append", "-", input=signed).splitlines()]

    def verify(self) -> dict[str, Any]:
        (self.home / "cp.txt").write_text(ok("log", "checkpoint"))
        ok("log", "export", "--out", str(self.home / "export.jsonl"))
        result = kiroku("verify", str(self.home / "export.jsonl"), "--checkpoint",
                        str(self.home / "cp.txt"), "--vkey", ok("log", "key").strip(), "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture(params=BACKENDS)
def operator(request: pytest.FixtureRequest, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Operator]:
    database = sqlite_database if request.param == "sqlite" else postgres_database
    with database() as url:
        monkeypatch.setenv("KIROKU_HOME", str(tmp_path / "var"))
        monkeypatch.setenv("KIROKU_DATABASE_URL", url)
        monkeypatch.delenv("KIROKU_RETENTION_YEARS", raising=False)
        monkeypatch.chdir(tmp_path)
        ok("init")
        for code, name, role in (("JHIA", "全国健康保険協会", "全国健康保険協会"),
                                 ("131121", "世田谷区", "市町村長")):
            ok("agency", "register", code, "--name-ja", name, "--name-en", code, "--kind",
               "insurer", "--role", role, "--registered-at", "2025-01-01T00:00:00Z")
        key = tmp_path / "setagaya.pem"
        ok("agency", "add-key", "131121", "--generate", str(key), "--valid-from",
           "2025-01-01T00:00:00Z")
        yield Operator(tmp_path, key)


def years_later(monkeypatch: pytest.MonkeyPatch, years: int) -> None:
    """Move retention's clock ``years`` years and a day on (the log's own clock stays)."""
    later = datetime.now(UTC).replace(year=datetime.now(UTC).year + years) + timedelta(days=1)
    monkeypatch.setattr(retention, "now_utc", lambda: later)


def apply(*extra: str) -> dict[str, Any]:
    return json.loads(ok("retention", "apply", "--yes", "--json", *extra))


def test_the_period_is_a_setting_of_whole_years(monkeypatch: pytest.MonkeyPatch) -> None:
    assert retention.retention_years({}) == 7
    assert retention.retention_years({"KIROKU_RETENTION_YEARS": "10"}) == 10
    for bad in ("seven", "0", "-1", "2.5"):
        with pytest.raises(ConfigurationError, match="KIROKU_RETENTION_YEARS"):
            retention.retention_years({"KIROKU_RETENTION_YEARS": bad})
    # 29 February has no anniversary in a common year: the cut-off is 28 February.
    leap = datetime(2032, 2, 29, 12, tzinfo=UTC)
    assert retention.retention_cutoff(7, leap) == datetime(2025, 2, 28, 12, tzinfo=UTC)
    monkeypatch.setenv("KIROKU_RETENTION_YEARS", "0")
    refused = kiroku("retention", "apply", "--dry-run")
    assert refused.exit_code == 2 and "at least 1 year" in refused.output


def test_apply_erases_what_the_period_makes_due_and_verify_names_it(
        operator: Operator, monkeypatch: pytest.MonkeyPatch) -> None:
    first = operator.append(range(3))
    # A key registered between provisions: erasure skips it, so the report gives two ranges.
    ok("agency", "add-key", "131121", "--generate", str(operator.home / "second.pem"))
    second = operator.append(range(3, 5))
    ok("projections", "run", "--once")

    # Nothing is 7 years old yet: the default cut-off erases nothing, and says so.
    nothing = apply()
    assert (nothing["erased"], nothing["ranges"], nothing["retention_years"]) == (0, [], 7)
    assert not nothing["views_rebuilt"] and nothing["compacted"] == []

    years_later(monkeypatch, 7)
    planned = apply("--dry-run")
    assert planned["dry_run"] and planned["erased"] == 5
    assert planned["ranges"] == [[first[0], first[-1]], [second[0], second[-1]]]
    before_export = [e for e in map(json.loads, ok("log", "export").splitlines())
                     if e["index"] in first + second]
    assert not any(e["erased"] for e in before_export)  # the dry run changed nothing

    done = apply()
    assert done["erased"] == 5 and done["kinds"] == {"provision": 5}
    assert done["ranges"] == planned["ranges"] and not done["within_period"]
    assert done["views_rebuilt"] and done["compacted"]
    report_text = json.dumps(done)
    assert "subj-RETENTION" not in report_text and "ret-" not in report_text

    # Idempotent: nothing more to erase, nothing rebuilt or compacted again.
    again = apply()
    assert (again["erased"], again["already_erased"], again["views_rebuilt"]) == (0, 5, False)

    verified = operator.verify()
    assert verified["ok"] and verified["entries"] == second[-1] + 1
    assert verified["erased_by_retention"] == {"count": 5, "ranges": done["ranges"]}
    human = ok("verify", str(operator.home / "export.jsonl"), "--checkpoint",
               str(operator.home / "cp.txt"), "--vkey", ok("log", "key").strip())
    a, b = done["ranges"]
    assert (f"5 erased by retention (indices {a[0]}-{a[1]}, {b[0]}-{b[1]})") in human
    assert ok("log", "fsck").startswith("ok:")


def test_a_longer_period_keeps_records_the_default_would_erase(
        operator: Operator, monkeypatch: pytest.MonkeyPatch) -> None:
    operator.append(range(2))
    years_later(monkeypatch, 7)
    monkeypatch.setenv("KIROKU_RETENTION_YEARS", "10")
    assert apply()["erased"] == 0
    monkeypatch.setenv("KIROKU_RETENTION_YEARS", "7")
    assert apply()["erased"] == 2


def test_an_early_cut_off_is_confirmed_with_a_warning_and_log_erase_is_the_same(
        operator: Operator) -> None:
    indices = operator.append(range(2))
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    declined = kiroku("retention", "apply", "--before", tomorrow, input="n\n")
    assert declined.exit_code == 1 and "within the 7-year retention period" in declined.output
    assert not any(json.loads(line)["erased"] for line in ok("log", "export").splitlines())
    erased = kiroku("log", "erase", "--before", tomorrow, "--yes")
    assert erased.exit_code == 0 and erased.stdout.startswith("erased 2 payload(s)\n")
    assert f"log indices: {indices[0]}-{indices[1]}" in erased.stdout
    assert "within the 7-year retention period" in erased.stderr


def test_a_run_interrupted_before_the_views_is_finished_by_the_next(
        operator: Operator, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger.config import Settings
    from ledger.opening import open_ledger

    operator.append(range(3))
    ok("projections", "run", "--once")
    # The erasure committed, then the process died before the views were rebuilt.
    ledger = open_ledger(Settings.from_env())
    retention.erase(ledger, datetime.now(UTC) + timedelta(seconds=1))
    assert retention.views_hold_erased(ledger, 10**9, ["kiroku_resident_record"])
    ledger.close()
    soon = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    finished = apply("--before", soon)
    assert finished["erased"] == 0 and finished["already_erased"] == 3
    assert finished["views_rebuilt"] and finished["compacted"]
    ledger = open_ledger(Settings.from_env())
    assert not retention.views_hold_erased(ledger, 10**9, ["kiroku_resident_record"])
    ledger.close()


# The verifier's count, whichever way it checks a chunk ------------------------------------------

def _erased_log(seed: int) -> tuple[exportgen.Log, list[tuple[int, int]]]:
    """A log with erased runs at chunk edges and around a key registration (slow path)."""
    random.seed(seed)
    log = exportgen.build_log(4, seed=seed)  # index 7 (provision 3) is erased
    for n in range(4, 24):
        log.provision(exportgen.A, exportgen.B, n, erased=n in (5, 6, 7, 8, 12, 20, 21))
        if n == 6:
            log.add_key(exportgen.B, seed=9)
    expected: list[tuple[int, int]] = []
    for line in log.lines:
        entry = json.loads(line)
        if entry["erased"]:
            i = entry["index"]
            if expected and expected[-1][1] == i - 1:
                expected[-1] = (expected[-1][0], i)
            else:
                expected.append((i, i))
    return log, expected


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 8, 4096])
def test_verifier_counts_erased_entries_the_same_through_every_path(
        chunk_size: int, tmp_path: Path) -> None:
    log, expected = _erased_log(3)
    assert len(expected) >= 4  # several runs, one broken by a registration
    vkey = NoteVerifier.from_vkey(log.vkey)
    path = tmp_path / "export.jsonl"
    path.write_bytes(log.export())
    for workers in (0, 2):
        streamed = verify_export(log.export().splitlines(), log.checkpoint(), vkey,
                                 workers=workers, chunk_size=chunk_size)
        read = verify_export_file(str(path), log.checkpoint(), vkey, workers=workers,
                                  chunk_size=chunk_size)
        for report in (streamed, read):
            assert report.erased.ranges == expected
            assert report.erased.count == sum(b - a + 1 for a, b in expected)


def test_verifier_still_refuses_an_entry_marked_erased_that_keeps_its_payload(
        tmp_path: Path) -> None:
    from verifier.errors import EntryError

    log, expected = _erased_log(4)
    index = expected[0][0]
    line = json.loads(log.lines[index])
    line["payload"] = {"subject": "guessed"}
    log.lines[index] = json.dumps(line).encode()
    with pytest.raises(EntryError) as failure:
        verify_export(log.export().splitlines(), log.checkpoint(),
                      NoteVerifier.from_vkey(log.vkey), workers=0)
    assert failure.value.index == index and failure.value.kind == "payload-altered"
