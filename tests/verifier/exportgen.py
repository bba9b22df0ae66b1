"""Test-only generator of kiroku logs, exports and checkpoints, written from docs/log-format.md.

It shares no code with ``verifier`` (and none with ``ledger``): it canonicalises with
``rfc8785`` and signs with ``cryptography`` directly, so the verifier is checked against an
independent reading of the contract. ``tamper_*`` functions apply one failure each.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ORIGIN = "kiroku.example/log"
T0 = 1_780_000_000  # 2026-05-28


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def ts(seconds: float) -> str:
    import datetime as dt

    moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def fast_jcs(obj: Any) -> bytes:
    """JCS for values without floats (enough for the bench's bulk data)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_from_seed(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"seed%d" % seed).digest())


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def statement_key_id(key: Ed25519PrivateKey) -> str:
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def note_key_id(name: str, key: Ed25519PrivateKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n\x01" + raw_public(key)).digest()[:4]


def vkey_of(name: str, key: Ed25519PrivateKey) -> str:
    encoded = b64(bytes([1]) + raw_public(key))
    return f"{name}+{note_key_id(name, key).hex()}+{encoded}"


def sign_note(text: str, name: str, key: Ed25519PrivateKey) -> str:
    sig = key.sign(text.encode())
    return f"{text}\n\u2014 {name} {b64(note_key_id(name, key) + sig)}\n"


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def mth(hashes: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, recursively, straight from the definition."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(hashes[:k]) + mth(hashes[k:])).digest()


@dataclass
class Log:
    operator: Ed25519PrivateKey
    origin: str = ORIGIN
    jcs: Callable[[Any], bytes] = rfc8785.dumps
    leaves: list[bytes] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    clock: float = T0
    agency_keys: dict[str, tuple[Ed25519PrivateKey, str]] = field(default_factory=dict)

    @property
    def vkey(self) -> str:
        return vkey_of(self.origin, self.operator)

    def tick(self, seconds: float = 1.0) -> str:
        self.clock += seconds
        return ts(self.clock)

    def append(
        self, kind: str, agency: str, key: Ed25519PrivateKey, payload: dict[str, Any],
        *, time: str | None = None, logged_at: str | None = None, erased: bool = False,
        salt: bytes | None = None,
    ) -> int:
        salt = salt if salt is not None else random.randbytes(32)
        commitment = b64(hashlib.sha256(b"kiroku/commitment/v1\n" + salt + self.jcs(payload)).digest())
        time = time or self.tick()
        statement = {"v": 1, "kind": kind, "agency": agency, "key_id": statement_key_id(key),
                     "time": time, "commitment": commitment}
        signature = key.sign(self.jcs(statement))
        index = len(self.leaves)
        prev = leaf_hash(self.leaves[-1]) if self.leaves else bytes(32)
        leaf_obj = dict(statement, index=index, prev=b64(prev),
                        logged_at=logged_at or self.tick(0.12), signature=b64(signature))
        leaf = self.jcs(leaf_obj)
        self.leaves.append(leaf)
        line = {"index": index, "leaf": b64(leaf), "leaf_hash": b64(leaf_hash(leaf)),
                "payload": None if erased else payload, "salt": None if erased else b64(salt),
                "erased": erased}
        self.lines.append(self.jcs(line))
        return index

    def root(self, size: int | None = None) -> bytes:
        hashes = [leaf_hash(leaf) for leaf in self.leaves[: len(self.leaves) if size is None else size]]
        return mth(hashes)

    def checkpoint(self, size: int | None = None, root: bytes | None = None,
                   key: Ed25519PrivateKey | None = None) -> str:
        size = len(self.leaves) if size is None else size
        root = self.root(size) if root is None else root
        return sign_note(f"{self.origin}\n{size}\n{b64(root)}\n", self.origin, key or self.operator)

    def export(self, lines: list[bytes] | None = None) -> bytes:
        return b"".join(line + b"\n" for line in (self.lines if lines is None else lines))

    # Registration helpers (docs/log-format.md "Kinds and their payloads").
    def register_agency(self, code: str, seed: int) -> None:
        self.append("agency.registered", "operator", self.operator, {
            "code": code, "name_ja": f"機関{code}", "name_en": f"Agency {code}",
            "kind": "municipality", "roles": ["requester", "provider"]})
        self.add_key(code, seed)

    def add_key(self, code: str, seed: int, valid_from: str | None = None) -> None:
        key = key_from_seed(seed)
        self.append("agency.key_added", "operator", self.operator, {
            "agency": code, "key_id": statement_key_id(key), "public_key": b64(raw_public(key)),
            "valid_from": valid_from or ts(self.clock)})
        self.agency_keys[code] = (key, statement_key_id(key))

    def revoke_key(self, code: str, revoked_at: str | None = None) -> Ed25519PrivateKey:
        key, key_id = self.agency_keys[code]
        self.append("agency.key_revoked", "operator", self.operator, {
            "agency": code, "key_id": key_id, "revoked_at": revoked_at or self.tick()})
        return key

    def provision(self, requester: str, provider: str, n: int, *, signer: str | None = None,
                  key: Ed25519PrivateKey | None = None, erased: bool = False) -> int:
        signer = signer or requester
        key = key or self.agency_keys[signer][0]
        payload = {
            "request_id": f"REQ-{n:08d}", "subject": f"pseud-{n * 7919 % 1000003:07d}",
            "requester": requester, "provider": provider, "basis": "2-3", "affair": "2",
            "items": ["地方税関係情報"], "requested_at": ts(self.clock), "provided_at": ts(self.clock + 1),
            "outcome": "provided", "reason": None, "non_disclosure": False, "operator": f"op-{n % 97}"}
        return self.append("provision", signer, key, payload, erased=erased)


A, B = "131121", "011002"


def build_log(provisions: int = 24, *, seed: int = 1, jcs: Callable[[Any], bytes] = rfc8785.dumps) -> Log:
    """Catalog, two agencies with keys, provisions, one key revocation and rotation, erasures."""
    random.seed(seed)
    log = Log(operator=key_from_seed(1000 + seed), jcs=jcs)
    log.append("catalog.loaded", "operator", log.operator, {
        "version": "2026-04", "source": "主務省令の表", "bases": [{
            "id": "2-3", "row": 3, "requester": "municipality", "affair_id": "2",
            "affair_ja": "地方税の賦課徴収", "affair_en": "local tax", "provider": "municipality",
            "items": ["地方税関係情報"]}],
        "items": {"地方税関係情報": {"ja": "地方税関係情報", "en": "local tax information"}},
        "roles": {"requester": {"ja": "情報照会者", "en": "requester"}}})
    log.register_agency(A, seed=1)
    log.register_agency(B, seed=2)
    half = provisions // 2
    for n in range(half):
        log.provision(A if n % 2 else B, B if n % 2 else A, n, erased=(n == 3))
    log.revoke_key(A)
    log.add_key(A, seed=3)
    for n in range(half, provisions):
        log.provision(A if n % 2 else B, B if n % 2 else A, n)
    return log


# --- tampering: each returns the altered export lines ------------------------------------------

def _line(lines: list[bytes], i: int) -> dict[str, Any]:
    return json.loads(lines[i])


def _set_line(lines: list[bytes], i: int, obj: dict[str, Any]) -> None:
    lines[i] = rfc8785.dumps(obj)


def rewrite_leaf(lines: list[bytes], i: int, change: Callable[[dict[str, Any]], None]) -> None:
    """Change leaf i's fields and rewrite its line (leaf bytes and leaf_hash follow)."""
    obj = _line(lines, i)
    leaf = json.loads(base64.b64decode(obj["leaf"]))
    change(leaf)
    raw = rfc8785.dumps(leaf)
    obj["leaf"], obj["leaf_hash"], obj["index"] = b64(raw), b64(leaf_hash(raw)), leaf["index"]
    _set_line(lines, i, obj)


def rechain(lines: list[bytes], start: int, *, renumber: bool = True) -> None:
    """What a careful attacker does after an edit: fix index and prev of every later entry."""
    for i in range(start, len(lines)):
        prev = bytes(32) if i == 0 else leaf_hash(base64.b64decode(_line(lines, i - 1)["leaf"]))

        def change(leaf: dict[str, Any], i: int = i, prev: bytes = prev) -> None:
            leaf["prev"] = b64(prev)
            if renumber:
                leaf["index"] = i

        rewrite_leaf(lines, i, change)


def tamper_payload(lines: list[bytes], i: int) -> list[bytes]:
    lines = list(lines)
    obj = _line(lines, i)
    obj["payload"]["subject"] = "pseud-someone-else"
    _set_line(lines, i, obj)
    return lines


def tamper_signature(lines: list[bytes], i: int) -> list[bytes]:
    lines = list(lines)
    rogue = key_from_seed(999)
    rewrite_leaf(lines, i, lambda leaf: leaf.update(signature=b64(rogue.sign(b"not the statement"))))
    return lines


def tamper_time(lines: list[bytes], i: int) -> list[bytes]:
    """Move a statement's time by a microsecond: its signature no longer covers it."""
    lines = list(lines)
    rewrite_leaf(lines, i, lambda leaf: leaf.update(time=leaf["time"][:19] + ".000001Z"))
    return lines


def tamper_prev(lines: list[bytes], i: int) -> list[bytes]:
    lines = list(lines)
    rewrite_leaf(lines, i, lambda leaf: leaf.update(prev=b64(hashlib.sha256(b"x").digest())))
    return lines


def tamper_delete(lines: list[bytes], i: int) -> list[bytes]:
    return lines[:i] + lines[i + 1:]


def tamper_swap(lines: list[bytes], i: int) -> list[bytes]:
    lines = list(lines)
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    return lines


def tamper_move(lines: list[bytes], i: int, to: int) -> list[bytes]:
    lines = list(lines)
    lines.insert(to, lines.pop(i))
    return lines


def tamper_duplicate(lines: list[bytes], i: int, at: int) -> list[bytes]:
    lines = list(lines)
    lines.insert(at, lines[i])
    return lines


def tamper_replay(lines: list[bytes], source: int, at: int, *, renumber: bool = False,
                  index: int | None = None) -> list[bytes]:
    """Insert a validly signed statement again as a new, correctly linked entry at ``at``."""
    lines = list(lines)
    obj = _line(lines, source)
    prev = leaf_hash(base64.b64decode(_line(lines, at - 1)["leaf"]))
    leaf = json.loads(base64.b64decode(obj["leaf"]))
    leaf.update(index=at if index is None else index, prev=b64(prev))
    raw = rfc8785.dumps(leaf)
    obj.update(index=leaf["index"], leaf=b64(raw), leaf_hash=b64(leaf_hash(raw)))
    lines.insert(at, rfc8785.dumps(obj))
    if renumber:
        for i in range(at + 1, len(lines)):
            rewrite_leaf(lines, i, lambda leaf, i=i: leaf.update(index=i))
    return lines


def tamper_noncanonical_leaf(lines: list[bytes], i: int) -> list[bytes]:
    lines = list(lines)
    obj = _line(lines, i)
    leaf = json.loads(base64.b64decode(obj["leaf"]))
    raw = json.dumps(leaf, indent=1).encode()
    obj["leaf"], obj["leaf_hash"] = b64(raw), b64(leaf_hash(raw))
    _set_line(lines, i, obj)
    return lines


def respell_lines(lines: list[bytes]) -> list[bytes]:
    """Same entries, written as non-canonical JSON (spaces, other key order): still valid."""
    out = []
    for line in lines:
        obj = json.loads(line)
        out.append(json.dumps(dict(reversed(list(obj.items()))), ensure_ascii=True).encode())
    return out


def tamper_payload_key(lines: list[bytes], i: int) -> list[bytes]:
    """Swap the public key in a key registration's payload for an attacker's."""
    lines = list(lines)
    obj = _line(lines, i)
    rogue = key_from_seed(666)
    obj["payload"].update(public_key=b64(raw_public(rogue)), key_id=statement_key_id(rogue))
    _set_line(lines, i, obj)
    return lines


def tamper_sign_with(lines: list[bytes], i: int, key: Ed25519PrivateKey) -> list[bytes]:
    """Re-sign entry i's statement with ``key`` (validly), naming that key."""
    lines = list(lines)

    def change(leaf: dict[str, Any]) -> None:
        leaf["key_id"] = statement_key_id(key)
        statement = {k: leaf[k] for k in ("v", "kind", "agency", "key_id", "time", "commitment")}
        leaf["signature"] = b64(key.sign(rfc8785.dumps(statement)))

    rewrite_leaf(lines, i, change)
    rechain(lines, i + 1, renumber=False)
    return lines


def tamper_leaf_hash_field(lines: list[bytes], i: int) -> list[bytes]:
    lines = list(lines)
    obj = _line(lines, i)
    obj["leaf_hash"] = b64(hashlib.sha256(b"y").digest())
    _set_line(lines, i, obj)
    return lines
