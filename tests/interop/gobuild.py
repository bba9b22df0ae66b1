"""Build small Go programs against Debian's golang.org/x/mod (sumdb/note, sumdb/tlog).

They are independent clients: a checkpoint, tile or cosignature kiroku writes must be accepted by
the Go module mirror's own code. Debian ships the module source under /usr/share/gocode, so the
programs build with GO111MODULE=off and no network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GOPATH = Path("/usr/share/gocode")
GO_SKIP_REASON = ("Go toolchain or golang.org/x/mod missing (Debian: golang-go, "
                  "golang-golang-x-mod-dev; .ci/run installs them)")


def go_available() -> bool:
    return shutil.which("go") is not None and (GOPATH / "src/golang.org/x/mod/sumdb/note").is_dir()


requires_go = pytest.mark.skipif(not go_available(), reason=GO_SKIP_REASON)


def build(source: Path, out_dir: Path) -> Path:
    """Compile the single-file program ``source`` (package main) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / source.stem
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOFLAGS": "",
           "GOCACHE": str(out_dir / "gocache"), "CGO_ENABLED": "0"}
    done = subprocess.run(["go", "build", "-o", str(binary), str(source)], env=env, check=False,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"go build {source.name} failed:\n{done.stderr}")
    return binary
