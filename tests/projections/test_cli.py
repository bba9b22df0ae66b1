"""``kiroku projections …`` and ``kiroku report`` as an operator and an auditor run them."""

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
    assert kiroku("demo", "-n", "400", "--residents", "50", "--no-serve").exit_code == 0
    yield tmp_path


def kiroku(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_rebuild_prints_a_digest_per_view_identical_to_the_incremental_one(home: Path) -> None:
    assert kiroku("projections", "run", "--once").exit_code == 0

    result = kiroku("projections", "rebuild")

    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.endswith("identical")]
    assert [line.split(":")[0] for line in lines] == ["resident", "audit", "notices"]


def test_status_reports_position_and_lag(home: Path) -> None:
    before = json.loads(kiroku("projections", "status", "--json").output)
    assert all(row["lag"] > 400 for row in before)
    kiroku("projections", "run", "--once")
    after = json.loads(kiroku("projections", "status", "--json").output)
    assert all(row["lag"] == 0 for row in after)
    assert "lag" in kiroku("projections", "status").output


def test_rebuild_as_of_an_index_and_report_as_of_it(home: Path) -> None:
    result = kiroku("projections", "rebuild", "--as-of", "100")
    assert result.exit_code == 0 and "up to index 100" in result.output
    rows = json.loads(kiroku("projections", "status", "--json").output)
    assert {row["index"] for row in rows} == {100}

    report = kiroku("report", "mhlw", "--out", str(home / "out"), "--as-of", "100", "--json")
    assert report.exit_code == 0, report.output
    data = json.loads(report.output[report.output.index("{"):])
    assert data["as_of"] == 100 and data["agency"]["code"] == "mhlw"
    assert (home / "out" / "mhlw-counts.csv").exists()
    assert (home / "out" / "mhlw-monthly.svg").exists()


def test_unusable_arguments_exit_2(home: Path) -> None:
    assert kiroku("report", "NO-SUCH").exit_code == 2
    assert kiroku("projections", "rebuild", "--as-of", "99999999").exit_code == 2
    assert kiroku("report", "mhlw", "--as-of", "yesterday").exit_code == 2
