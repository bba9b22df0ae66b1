"""Where the monitor gets checkpoints and consistency proofs from.

* ``http(s)://HOST/PREFIX``: ``GET {URL}/v1/log/checkpoint`` (the signed note as text) and
  ``GET {URL}/v1/log/proof/consistency?old=OLD&new=NEW`` (proof JSON, docs/log-format.md);
* a directory ``DIR``: ``DIR/checkpoint`` and ``DIR/proofs/consistency-OLD-NEW.json``;
* a file ``FILE``: the checkpoint itself, with proofs in ``proofs/`` beside it.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Protocol

from verifier.errors import UnusableInput
from verifier.proofs import ConsistencyProof

_TIMEOUT = 30.0
_MAX_BYTES = 1 << 20


class Source(Protocol):
    def checkpoint(self) -> bytes: ...

    def consistency(self, old: int, new: int) -> ConsistencyProof: ...


class HttpSource:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _get(self, path: str) -> bytes:
        url = self.url + path
        try:
            with urllib.request.urlopen(url, timeout=_TIMEOUT) as response:
                return bytes(response.read(_MAX_BYTES))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise UnusableInput(f"cannot fetch {url}: {exc}") from None

    def checkpoint(self) -> bytes:
        return self._get("/v1/log/checkpoint")

    def consistency(self, old: int, new: int) -> ConsistencyProof:
        query = urllib.parse.urlencode({"old": old, "new": new})
        return ConsistencyProof.from_json(self._get(f"/v1/log/proof/consistency?{query}"))


class DirectorySource:
    def __init__(self, path: str) -> None:
        if os.path.isdir(path):
            self.directory, self.checkpoint_path = path, os.path.join(path, "checkpoint")
        else:
            self.directory, self.checkpoint_path = os.path.dirname(path) or ".", path

    @staticmethod
    def _read(path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read(_MAX_BYTES)
        except OSError as exc:
            raise UnusableInput(f"cannot read {path}: {exc.strerror or exc}") from None

    def checkpoint(self) -> bytes:
        return self._read(self.checkpoint_path)

    def consistency(self, old: int, new: int) -> ConsistencyProof:
        path = os.path.join(self.directory, "proofs", f"consistency-{old}-{new}.json")
        return ConsistencyProof.from_json(self._read(path))


def open_source(spec: str) -> Source:
    if spec.startswith(("http://", "https://")):
        return HttpSource(spec)
    if not os.path.exists(spec):
        raise UnusableInput(f"monitor source {spec!r} is neither an http(s) URL nor a path")
    return DirectorySource(spec)
