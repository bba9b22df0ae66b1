"""The log's side of c2sp.org/tlog-witness: submit a checkpoint to one witness.

Used by the operator's housekeeping (api/witnessing.py); kept here beside the server so both ends
of the wire format live in one place.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import httpx


class WitnessError(Exception):
    """The witness did not cosign (unreachable, refused, or an unexpected answer)."""


class WitnessConflict(WitnessError):
    """409: the witness last cosigned ``size``; re-send with a proof from that size."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the witness last cosigned size {size}")
        self.size = size


class WitnessRefused(WitnessError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


def request_body(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """tlog-witness add-checkpoint body: ``old N``, one base64 hash per line, blank, note."""
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode("utf-8")


def add_checkpoint(http: httpx.Client, url: str, old_size: int, proof: Sequence[bytes],
                   note: str) -> str:
    """POST the checkpoint; return the cosignature line(s) or raise a WitnessError."""
    try:
        response = http.post(url.rstrip("/") + "/add-checkpoint",
                             content=request_body(old_size, proof, note))
    except httpx.HTTPError as exc:
        raise WitnessError(f"cannot reach {url}: {type(exc).__name__}") from None
    if response.status_code == 409:
        text = response.text
        if response.headers.get("content-type", "").startswith("text/x.tlog.size") and \
                text.endswith("\n") and text[:-1].isdigit():
            raise WitnessConflict(int(text[:-1]))
        raise WitnessRefused(409, "conflict without a text/x.tlog.size body")
    if response.status_code != 200:
        raise WitnessRefused(response.status_code, response.text[:200])
    return response.text
