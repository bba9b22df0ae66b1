"""Dependencies flow one way: ledger ← projections ← api ← kiroku (the command line), and the
verifier stands apart (tests/verifier/test_imports.py checks it imports none of them). The
witness is an independent party: it may use the verifier, never the ledger or its Merkle
library, so a bug on the log's side cannot make the witness agree with it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "ledger": {"projections", "api", "kiroku", "verifier", "witness"},
    "projections": {"api", "kiroku", "verifier", "witness"},
    "api": {"kiroku"},
    "witness": {"ledger", "pymerkle", "projections", "api", "kiroku", "eventsourcing",
                "eventsourcing_sqlalchemy"},
}


def _imported_packages(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_lower_layers(package: str) -> None:
    offending = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert not {k: v for k, v in offending.items() if v}, offending
