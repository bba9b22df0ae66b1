"""Verification bundles (what a page hands to verify.js's ``verifyRecords``), built for tests.

``ledger_bundle`` asks a real ledger for everything (records, inclusion proofs, the signed
checkpoint, the vkey); ``tampered_cases`` derives one failure at a time from it, with the result
each record must get. ``synthetic_bundle`` builds records at a large tree (for example 50 at
1,000,000 entries, about 20 proof hashes each) without a large database: every other leaf is the
same filler, so the RFC 9162 subtree hashes of filler-only ranges repeat and only the paths of
the real records are computed.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import rfc8785

from ledger.checkpoints import sign as sign_checkpoint
from ledger.keys import SigningKey, vkey

EXPECTED_KEYS = ("requester", "provider", "affair", "items", "outcome")

Bundle = dict[str, Any]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def flip(text_b64: str, byte: int = 0) -> str:
    raw = bytearray(base64.b64decode(text_b64))
    raw[byte] ^= 0x01
    return b64(bytes(raw))


def record_of(line: dict[str, Any], proof: dict[str, Any], record_id: str) -> dict[str, Any]:
    """One bundle record from an export line and its inclusion proof JSON."""
    payload = line["payload"]
    record: dict[str, Any] = {"id": record_id, "index": line["index"], "leaf": line["leaf"],
                              "payload": payload, "salt": line["salt"], "inclusion": proof}
    if payload is not None:
        record["expected"] = {key: payload[key] for key in EXPECTED_KEYS}
    return record


def ledger_bundle(ledger: Any, receipts: list[Any]) -> tuple[Bundle, str]:
    """The page bundle for ``receipts`` at the ledger's latest checkpoint, and the ledger's vkey."""
    checkpoint = ledger.checkpoint()
    lines = {line["index"]: line for line in ledger.export(end=checkpoint.size)}
    records = [record_of(lines[r.index], ledger.prove_inclusion(r.index, checkpoint.size), str(r.id))
               for r in receipts]
    return {"checkpoint": checkpoint.note, "records": records}, ledger.vkey


@dataclass(frozen=True)
class Case:
    """A bundle, the vkey the page pins, and each record's expected outcome ("ok" or a code)."""

    name: str
    bundle: Bundle
    vkey: str
    expect: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "bundle": self.bundle, "vkey": self.vkey}


def _edit_leaf(record: dict[str, Any], **changes: Any) -> None:
    entry = json.loads(base64.b64decode(record["leaf"]))
    entry.update(changes)
    record["leaf"] = b64(rfc8785.dumps(entry))


def tampered_cases(bundle: Bundle, key: str, *, erased: str) -> list[Case]:
    """The intact bundle and one tampered copy per failure verify.js must catch.

    ``erased`` names a record whose payload is gone (it must still verify). Each case changes one
    thing (records 0, 1, 2 … are the targets) so the others must still verify.
    """
    ids = [r["id"] for r in bundle["records"]]
    origin = bundle["checkpoint"].split("\n", 1)[0]
    impostor = SigningKey.generate()
    cases = [Case("intact", bundle, key, dict.fromkeys(ids, "ok"))]

    def one(name: str, target: int, code: str, edit: Callable[[dict[str, Any]], None]) -> None:
        copied = copy.deepcopy(bundle)
        edit(copied["records"][target])
        expect = dict.fromkeys(ids, "ok") | {ids[target]: code}
        cases.append(Case(name, copied, key, expect))

    def flip_proof(r: dict[str, Any]) -> None:
        r["inclusion"]["proof"][0] = flip(r["inclusion"]["proof"][0], 5)

    def edit_leaf(r: dict[str, Any]) -> None:
        _edit_leaf(r, time="2020-01-01T00:00:00Z")

    def edit_leaf_and_hash(r: dict[str, Any]) -> None:
        _edit_leaf(r, time="2020-01-01T00:00:00Z")
        leaf = base64.b64decode(r["leaf"])
        r["inclusion"]["leaf_hash"] = b64(hashlib.sha256(b"\x00" + leaf).digest())

    def edit_payload(r: dict[str, Any]) -> None:
        r["payload"]["items"] = [*r["payload"]["items"], "生活保護関係情報"]

    def edit_expected(r: dict[str, Any]) -> None:
        r["expected"]["provider"] = "MOJ"

    def edit_size(r: dict[str, Any]) -> None:
        r["inclusion"]["tree_size"] -= 1

    def edit_index(r: dict[str, Any]) -> None:
        r["index"] += 1

    def drop_proof(r: dict[str, Any]) -> None:
        del r["inclusion"]

    def edit_leaf_index(r: dict[str, Any]) -> None:
        # The leaf claims another index; without the server's leaf hash to compare, the
        # recomputed hash no longer walks to the signed root.
        _edit_leaf(r, index=r["index"] + 1)
        r["inclusion"].pop("leaf_hash")

    one("proof-hash-flipped", 0, "bad-proof", flip_proof)
    one("leaf-edited", 1, "leaf-mismatch", edit_leaf)
    one("leaf-and-leaf-hash-edited", 1, "bad-proof", edit_leaf_and_hash)
    one("leaf-index-edited", 1, "bad-proof", edit_leaf_index)
    one("payload-edited", 2, "commitment-mismatch", edit_payload)
    one("expected-edited", 3, "content-mismatch", edit_expected)
    one("proof-of-another-size", 0, "size-mismatch", edit_size)
    one("record-index-edited", 2, "index-mismatch", edit_index)
    one("record-without-proof", 3, "malformed", drop_proof)

    everything_fails = dict.fromkeys(ids, "bad-checkpoint")
    cases.append(Case("wrong-vkey", bundle, vkey(origin, impostor.public_bytes), everything_fails))
    edited = copy.deepcopy(bundle)
    body, signatures = edited["checkpoint"].split("\n\n")
    dash, name, blob = signatures.strip().split(" ")
    edited["checkpoint"] = f"{body}\n\n{dash} {name} {flip(blob, 20)}\n"
    cases.append(Case("checkpoint-signature-edited", edited, key, everything_fails))
    # A bundle that brings its own key and checkpoint: the page's pinned key must be used.
    forged = copy.deepcopy(bundle)
    size_line, root_line = body.split("\n")[1:3]
    forged_note = sign_checkpoint(origin, int(size_line), base64.b64decode(root_line), impostor)
    forged["checkpoint"] = forged_note.note
    forged["vkey"] = vkey(origin, impostor.public_bytes)
    cases.append(Case("bundle-brings-its-own-key", forged, key, everything_fails))
    assert erased in ids
    return cases


# ---- synthetic large trees ---------------------------------------------------------------------

def _leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """RFC 9162 §2.1.1: the largest power of two smaller than n."""
    return 1 << ((n - 1).bit_length() - 1)


class SparseTree:
    """An RFC 9162 tree of ``size`` leaves where every leaf not in ``leaves`` is one filler."""

    def __init__(self, size: int, leaves: dict[int, bytes]) -> None:
        self.size = size
        self.hashes = {i: _leaf_hash(leaf) for i, leaf in leaves.items()}
        self.marked = sorted(leaves)
        filler = _leaf_hash(b"kiroku test filler leaf")
        self.perfect = [filler]  # perfect[k] = hash of 2^k filler leaves
        for _ in range(size.bit_length()):
            self.perfect.append(_node_hash(self.perfect[-1], self.perfect[-1]))
        self.mth = cache(self._mth)

    def _has_marked(self, lo: int, hi: int) -> bool:
        from bisect import bisect_left

        at = bisect_left(self.marked, lo)
        return at < len(self.marked) and self.marked[at] < hi

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 1:
            return self.hashes.get(lo, self.perfect[0])
        if n & (n - 1) == 0 and not self._has_marked(lo, hi):
            return self.perfect[n.bit_length() - 1]
        k = _split(n)
        return _node_hash(self.mth(lo, lo + k), self.mth(lo + k, hi))

    def root(self) -> bytes:
        return self.mth(0, self.size)

    def path(self, m: int, lo: int = 0, hi: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(m, D[lo:hi]), leaf first."""
        hi = self.size if hi is None else hi
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]


def synthetic_bundle(size: int, count: int, origin: str = "bench.kiroku/log", *,
                     edit_leaf: Callable[[int, dict[str, Any]], bytes] | None = None,
                     ) -> tuple[Bundle, str]:
    """``count`` provision records spread over a log of ``size`` entries, signed checkpoint, vkey.

    ``edit_leaf(n, entry)``, when given, returns the leaf bytes of record ``n`` in place of
    ``JCS(entry)``; the tree and checkpoint are built over what it returns, so the record's proof
    and signature hold and only the checks after the proof can catch the edit.
    """
    key = SigningKey.generate()
    step = size // count
    records: list[dict[str, Any]] = []
    leaves: dict[int, bytes] = {}
    for n in range(count):
        index = n * step + step // 2
        salt = os.urandom(32)
        payload = {"request_id": f"bench-{n}", "subject": "subj-AAAABBBBCCCCDDDDEEEE",
                   "requester": "KYOKAI", "provider": "131121", "basis": "2-4", "affair": "2",
                   "items": ["地方税関係情報"], "requested_at": "2026-06-10T01:22:10Z",
                   "provided_at": "2026-06-10T01:23:40Z", "outcome": "provided", "reason": None,
                   "non_disclosure": False, "operator": "op-KYOKAI-01"}
        commitment = b64(hashlib.sha256(b"kiroku/commitment/v1\n" + salt
                                        + rfc8785.dumps(payload)).digest())
        entry: dict[str, Any] = {"v": 1, "kind": "provision", "agency": "131121", "key_id": "0123456789abcdef",
                 "time": "2026-06-10T01:23:45Z", "commitment": commitment, "index": index,
                 "prev": b64(bytes(32)), "logged_at": "2026-06-10T01:23:46Z",
                 "signature": b64(bytes(64))}
        leaf = edit_leaf(n, entry) if edit_leaf else rfc8785.dumps(entry)
        leaves[index] = leaf
        records.append({"id": f"bench-{n}", "index": index, "leaf": b64(leaf), "payload": payload,
                        "salt": b64(salt),
                        "expected": {k: payload[k] for k in EXPECTED_KEYS}})
    tree = SparseTree(size, leaves)
    root = tree.root()
    for record in records:
        index = record["index"]
        record["inclusion"] = {"leaf_index": index, "tree_size": size,
                               "leaf_hash": b64(tree.hashes[index]), "root_hash": b64(root),
                               "proof": [b64(h) for h in tree.path(index)]}
    note = sign_checkpoint(origin, size, root, key).note
    return {"checkpoint": note, "records": records}, vkey(origin, key.public_bytes)


def signed_leaf_cases() -> list[Case]:
    """Leaves the operator did sign into the tree but that break the log format: the proof holds,
    so only the checks after it (docs/log-format.md validity rules 1-2) catch them."""

    def non_canonical(n: int, entry: dict[str, Any]) -> bytes:
        return json.dumps(entry, indent=1).encode() if n == 0 else rfc8785.dumps(entry)

    def other_index(n: int, entry: dict[str, Any]) -> bytes:
        changed: dict[str, Any] = {**entry, "index": entry["index"] + 1} if n == 1 else entry
        return rfc8785.dumps(changed)

    cases = []
    for name, edit, target, code in (("signed-non-canonical-leaf", non_canonical, 0, "malformed"),
                                     ("signed-leaf-naming-another-index", other_index, 1,
                                      "index-mismatch")):
        bundle, key = synthetic_bundle(1000, 4, edit_leaf=edit)
        ids = [r["id"] for r in bundle["records"]]
        cases.append(Case(name, bundle, key, dict.fromkeys(ids, "ok") | {ids[target]: code}))
    return cases
