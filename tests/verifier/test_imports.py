"""verifier must stay independent of the writer: stdlib + cryptography + rfc8785 only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import verifier

PACKAGE = Path(verifier.__file__).parent
ALLOWED_THIRD_PARTY = {"cryptography", "rfc8785"}
FORBIDDEN = {"ledger", "kiroku", "pymerkle", "projections", "api", "click"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_every_module_imports_only_stdlib_cryptography_rfc8785_and_itself() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 5
    for module in modules:
        roots = _imported_roots(module)
        assert not roots & FORBIDDEN, f"{module.name} imports {roots & FORBIDDEN}"
        others = roots - sys.stdlib_module_names - ALLOWED_THIRD_PARTY - {"verifier", "__future__"}
        assert not others, f"{module.name} imports {others}"


def test_loading_the_cli_pulls_in_no_writer_module() -> None:
    code = (
        "import sys, verifier.cli, verifier.monitor, verifier.export;"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r});"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert out.stdout.strip() == ""
