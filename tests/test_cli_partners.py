"""Registering a partner organisation (docs/applications.md) from the command line: it needs
no catalog role; any other agency still does (exit 2, nothing registered)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli import kiroku


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("KIROKU_HOME", str(tmp_path / "var"))
    monkeypatch.delenv("KIROKU_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_a_partner_registers_without_a_role_and_an_insurer_does_not(home: Path) -> None:
    assert kiroku("init").exit_code == 0
    refused = kiroku("agency", "register", "JHIA", "--name-ja", "協会", "--name-en", "JHIA",
                     "--kind", "insurer")
    assert refused.exit_code == 2 and "--role" in refused.output
    partner = kiroku("agency", "register", "TOKYOGAS", "--name-ja", "東京ガス", "--name-en",
                     "Tokyo Gas", "--kind", "partner")
    assert partner.exit_code == 0, partner.output
    added = kiroku("agency", "add-key", "TOKYOGAS", "--generate", str(home / "gas.pem"))
    assert added.exit_code == 0, added.output
