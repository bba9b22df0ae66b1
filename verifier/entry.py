"""Parsing one export line into a checked :class:`Entry` (docs/log-format.md "Export", "Leaves").

Two paths give the same answer:

* a fast path for the common case, where the leaf bytes and the export line are themselves
  canonical JSON: a regular expression that accepts exactly the RFC 8785 (JCS) serialisation of a
  leaf whose values have the documented shapes, and the payload's bytes taken straight from the
  line and hashed against the commitment. If ``SHA-256(prefix || salt || bytes)`` equals the
  commitment the agency signed, those bytes *are* JCS(payload) (SHA-256 collision resistance), so
  no re-serialisation is needed;
* a slow path (``json`` + ``rfc8785``) for everything else; it is also the one that explains a
  failure in detail.

Fast canonical check, and why it is exact: JCS (RFC 8785 §3.2) sorts keys by UTF-16 code units
and writes strings with the minimal escapes of ECMAScript ``JSON.stringify`` and integers as plain
decimals. For the leaf the key set is fixed ASCII, every string value matched by the fast pattern
is plain ASCII without quote, backslash or control characters, and ``v``/``index`` are small
non-negative integers, so "matches the pattern" and "equals JCS(parse(bytes))" coincide. Anything
else (escapes, non-ASCII agency codes, floats, other spacing) goes to the slow path, which
compares against ``rfc8785.dumps`` itself.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import rfc8785

from verifier.encoding import TIME_PATTERN, b64decode, time_key

LEAF_KEYS = frozenset(
    {"v", "kind", "agency", "key_id", "time", "commitment", "index", "prev", "logged_at", "signature"}
)
STATEMENT_KEYS = ("agency", "commitment", "key_id", "kind", "time", "v")  # JCS key order
KINDS = frozenset(
    {"catalog.loaded", "catalog.replaced", "agency.registered", "agency.key_added",
     "agency.key_revoked", "provision", "operator.key_rotated",
     # docs/log-format.md: flags set or lifted later by an agency, proxies by the registrar.
     "provision.flagged", "proxy.registered", "proxy.cancelled",
     # Notices (お知らせ) an agency issues: checked like any agency statement.
     "notice.issued",
     # Sharded logs (docs/shards.md): the operator opens and freezes each shard.
     "shard.opened", "shard.frozen",
     # E-applications (docs/applications.md): submitted by the registrar, taken and decided by
     # the receiving agency, acknowledged by each consented partner; checked like any statement.
     "application.submitted", "application.received", "application.decided",
     "application.forwarded"}
)
# operator.key_rotated (docs/key-rotation.md) is a registration too: its payload names the
# operator's next key, so it is kept like the agency key entries' payloads.
REGISTRATION_KINDS = frozenset({"agency.key_added", "agency.key_revoked", "operator.key_rotated"})
#: docs/log-format.md: version 2 is a provision whose payload names link codes; the checks here
#: (shape, commitment, signature) are the same for both, the payload being only committed to.
VERSIONS = {"provision": (1, 2)}
OPERATOR = "operator"
COMMITMENT_PREFIX = b"kiroku/commitment/v1\n"
ZERO_PREV = binascii.b2a_base64(bytes(32), newline=False).decode()
MAX_SAFE_INT = (1 << 53) - 1  # RFC 8785 §3.2.2.3: integers beyond this are not exact in JSON

B32_PATTERN = rb"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]="  # canonical base64 of 32 bytes
_B64SIG = rb"[A-Za-z0-9+/]{85}[AQgw]=="  # canonical base64 of 64 bytes
_TIME = TIME_PATTERN.encode()
FAST_LEAF = re.compile(
    rb'\{"agency":"([0-9A-Za-z._-]{1,64})","commitment":"(' + B32_PATTERN + rb')","index":(0|[1-9][0-9]{0,15})'
    rb',"key_id":"([0-9a-f]{16})","kind":"(provision|catalog\.loaded|catalog\.replaced|agency\.registered'
    rb'|agency\.key_added|agency\.key_revoked)","logged_at":"(' + _TIME + rb')","prev":"('
    + B32_PATTERN + rb')","signature":"(' + _B64SIG + rb')","time":"(' + _TIME + rb')","v":([12])\}'
)
# An export line written as JCS: erased, index, leaf, leaf_hash, payload, salt.
_FAST_LINE = re.compile(
    rb'\{"erased":(false|true),"index":(0|[1-9][0-9]{0,15}),"leaf":"([A-Za-z0-9+/]*={0,2})"'
    rb',"leaf_hash":"(' + B32_PATTERN + rb')","payload":'
)
_FAST_TAIL = re.compile(rb',"salt":"(' + B32_PATTERN + rb')"\}')
_TAIL_LEN = 55  # len(',"salt":"') + 44 + len('"}')
_ERASED_TAIL = b'null,"salt":null}'
_sha256 = hashlib.sha256
_b2a = binascii.b2a_base64
_a2b = binascii.a2b_base64


class EntryProblem(Exception):
    """A line that cannot be read as an entry at all (kind ``malformed-entry``)."""


@dataclass(slots=True)
class Entry:
    """One export line, parsed and self-checked; what remains are checks that need context."""

    index: int
    prev: str  # base64 text of the previous leaf hash, as in the leaf
    kind: str
    agency: str
    key_id: str
    time: str
    logged_at: str
    signature: bytes
    statement: bytes  # JCS(statement): the exact bytes the agency signed
    leaf_hash: bytes
    erased: bool
    payload: Any  # the parsed payload, kept only for registration entries
    payload_problem: str | None  # commitment does not match payload + salt
    line_problem: str | None  # the line's redundant fields disagree with its leaf


def leaf_hash_b64(h: bytes) -> str:
    return _b2a(h, newline=False).decode()


def commitment_of(salt: bytes, payload_jcs: bytes) -> str:
    """docs/log-format.md: b64(SHA-256("kiroku/commitment/v1\\n" || salt || JCS(payload)))."""
    return _b2a(_sha256(COMMITMENT_PREFIX + salt + payload_jcs).digest(), newline=False).decode()


def _statement_bytes(
    agency: bytes, commitment: bytes, key_id: bytes, kind: bytes, time: bytes, v: bytes = b"1"
) -> bytes:
    return b"".join(
        (b'{"agency":"', agency, b'","commitment":"', commitment, b'","key_id":"', key_id,
         b'","kind":"', kind, b'","time":"', time, b'","v":', v, b"}")
    )


def _fast_leaf(leaf: bytes) -> tuple[Any, ...] | None:
    m = FAST_LEAF.fullmatch(leaf)
    if m is None:
        return None
    agency, commitment, index, key_id, kind, logged_at, prev, signature, time, v = m.groups()
    index_int = int(index)
    if index_int > MAX_SAFE_INT or (v != b"1" and kind != b"provision"):
        return None  # the slow path names the problem
    return (
        index_int, prev.decode(), kind.decode(), agency.decode(), key_id.decode(),
        time.decode(), logged_at.decode(), _a2b(signature),
        _statement_bytes(agency, commitment, key_id, kind, time, v), commitment.decode(),
    )


def _plain(obj: Any) -> bool:
    """True if ``json.dumps(sort_keys=True)`` of ``obj`` is exactly its JCS (RFC 8785).

    That holds for strings, bools, null and integers within RFC 8785 §3.2.2.3's exact range,
    inside objects whose keys sort the same by code point as by UTF-16 code unit (all BMP keys
    below the surrogate range). Floats, huge integers and astral keys need the real thing.
    """
    kind = type(obj)
    if kind is str or obj is None or kind is bool:
        return True
    if kind is int:
        return -MAX_SAFE_INT <= obj <= MAX_SAFE_INT
    if kind is list:
        return all(_plain(item) for item in obj)
    if kind is dict:
        return all(
            (key.isascii() or max(key) < "\ud800") and _plain(value) for key, value in obj.items()
        )
    return False


def canonical_json(obj: Any) -> bytes:
    """JCS(obj) (RFC 8785): ``json.dumps`` when that is provably equal, else ``rfc8785``."""
    if _plain(obj):
        try:
            return json.dumps(
                obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: let rfc8785 reject it
    return rfc8785.dumps(obj)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _number(text: str) -> Any:
    # RFC 8785 §3.2.2.3 / I-JSON: numbers are IEEE 754 doubles, so an integer beyond 2^53 (which
    # JCS writes for a large float such as 1e16) is read back as the double it stands for.
    value = int(text)
    return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else float(text)


def _loads(data: bytes | str) -> Any:
    return json.loads(data, parse_constant=_reject_constant, parse_int=_number)


def _slow_leaf(leaf: bytes) -> tuple[Any, ...]:
    """Parse and fully validate leaf bytes; raises EntryProblem saying what is wrong."""
    try:
        obj = _loads(leaf)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EntryProblem(f"leaf bytes are not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise EntryProblem(f"leaf is a JSON {type(obj).__name__}, expected an object")
    if set(obj) != LEAF_KEYS:
        extra, missing = sorted(set(obj) - LEAF_KEYS), sorted(LEAF_KEYS - set(obj))
        raise EntryProblem(f"leaf keys: unexpected {extra}, missing {missing}")
    versions = VERSIONS.get(obj["kind"], (1,)) if isinstance(obj["kind"], str) else (1,)
    if type(obj["v"]) is not int or obj["v"] not in versions:
        expected = " or ".join(map(str, versions))
        raise EntryProblem(f"leaf version is {obj['v']!r}, expected {expected} for kind "
                           f"{obj['kind']!r}")
    index = obj["index"]
    if type(index) is not int or not 0 <= index <= MAX_SAFE_INT:
        raise EntryProblem(f"leaf index is {index!r}, expected a non-negative integer")
    for key in ("kind", "agency", "key_id", "time", "commitment", "prev", "logged_at", "signature"):
        if not isinstance(obj[key], str):
            raise EntryProblem(f"leaf {key} is {type(obj[key]).__name__}, expected a string")
    if obj["kind"] not in KINDS:
        raise EntryProblem(f"leaf kind is {obj['kind']!r}, expected one of {sorted(KINDS)}")
    if re.fullmatch(r"[0-9a-f]{16}", obj["key_id"]) is None:
        raise EntryProblem(f"leaf key_id is {obj['key_id']!r}, expected 16 lowercase hex digits")
    try:
        time_key(obj["time"])
        time_key(obj["logged_at"])
        signature = b64decode(obj["signature"])
        prev = b64decode(obj["prev"])
        commitment = b64decode(obj["commitment"])
    except ValueError as exc:
        raise EntryProblem(f"leaf field: {exc}") from None
    if len(prev) != 32 or len(signature) != 64 or len(commitment) != 32:
        raise EntryProblem(
            f"leaf prev/signature/commitment are {len(prev)}/{len(signature)}/{len(commitment)}"
            " bytes, expected 32/64/32"
        )
    try:
        canonical = rfc8785.dumps(obj)
    except Exception as exc:  # noqa: BLE001 -- rfc8785 has its own error family for these
        raise EntryProblem(f"leaf cannot be canonicalised: {exc}") from None
    if canonical != leaf:
        raise EntryProblem("leaf bytes are not canonical JSON (RFC 8785), expected JCS(leaf)")
    statement = rfc8785.dumps({k: obj[k] for k in STATEMENT_KEYS})
    return (
        index, obj["prev"], obj["kind"], obj["agency"], obj["key_id"], obj["time"],
        obj["logged_at"], signature, statement, obj["commitment"],
    )


def _slow_line(line: bytes) -> tuple[int, bytes, str, Any, bytes | None, bool]:
    """Parse any JSON spelling of an export line: (index, leaf, leaf_hash, payload, salt, erased)."""
    try:
        obj = _loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EntryProblem(f"export line is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise EntryProblem(f"export line is a JSON {type(obj).__name__}, expected an object")
    missing = {"index", "leaf", "leaf_hash", "payload", "salt", "erased"} - set(obj)
    if missing:
        raise EntryProblem(f"export line is missing {sorted(missing)}")
    index, erased = obj["index"], obj["erased"]
    if type(index) is not int or type(erased) is not bool:
        raise EntryProblem("export line index/erased are not an integer/boolean")
    try:
        leaf = b64decode(obj["leaf"])
    except ValueError as exc:
        raise EntryProblem(f"export line leaf: {exc}") from None
    if not isinstance(obj["leaf_hash"], str):
        raise EntryProblem("export line leaf_hash is not a string")
    salt: bytes | None = None
    if obj["salt"] is not None:
        try:
            salt = b64decode(obj["salt"])
        except ValueError:
            salt = b""  # reported as a payload problem, where it belongs
    return index, leaf, obj["leaf_hash"], obj["payload"], salt, erased


def parse_line(line: bytes) -> Entry:
    """Parse one export line (without its newline); raises EntryProblem if it is no entry at all."""
    fast = _FAST_LINE.match(line)
    if fast is None:
        return _parse_slow(line)
    erased = fast.group(1) == b"true"
    rest = line[fast.end():]
    payload_raw = salt = None
    if erased:
        if rest != _ERASED_TAIL:
            return _parse_slow(line)
    else:
        tail = _FAST_TAIL.fullmatch(rest, len(rest) - _TAIL_LEN) if len(rest) > _TAIL_LEN else None
        if tail is None:
            return _parse_slow(line)
        payload_raw = rest[: len(rest) - _TAIL_LEN]
        salt = _a2b(tail.group(1))
    try:
        leaf = _a2b(fast.group(3), strict_mode=True)
    except binascii.Error:
        return _parse_slow(line)
    fields = _fast_leaf(leaf) or _slow_leaf(leaf)
    payload: Any = None
    if payload_raw is not None and salt is not None:
        if commitment_of(salt, payload_raw) != fields[9]:
            # Not the committed bytes as written: the slow path decides whether the payload
            # differs or is merely spelled differently.
            return _parse_slow(line)
        if fields[2] in REGISTRATION_KINDS:
            payload = _loads(payload_raw)
    return _finish(fields, leaf, int(fast.group(2)), fast.group(4).decode(), erased, payload, None)


def _finish(
    fields: tuple[Any, ...], leaf: bytes, line_index: int, claimed_hash: str, erased: bool,
    payload: Any, payload_problem: str | None,
) -> Entry:
    h = _sha256(b"\x00" + leaf).digest()
    line_problem = None
    if line_index != fields[0]:
        line_problem = f"export line says index {line_index}, its leaf says {fields[0]}"
    elif claimed_hash != _b2a(h, newline=False).decode():
        line_problem = f"export line leaf_hash {claimed_hash} does not match its leaf bytes"
    return Entry(
        fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], fields[7],
        fields[8], h, erased, payload, payload_problem, line_problem,
    )


def _parse_slow(line: bytes) -> Entry:
    line_index, leaf, claimed_hash, payload, salt, erased = _slow_line(line)
    fields = _fast_leaf(leaf) or _slow_leaf(leaf)
    commitment = fields[9]
    payload_problem = None
    if erased:
        if payload is not None or salt is not None:
            payload_problem = "entry is marked erased but still carries a payload or salt"
    elif salt is None or len(salt) != 32:
        payload_problem = "salt is missing or not 32 bytes of base64"
    else:
        try:
            payload_jcs = canonical_json(payload)
        except Exception as exc:  # noqa: BLE001 -- rfc8785 has its own error family for these
            payload_problem = f"payload cannot be canonicalised: {exc}"
        else:
            got = commitment_of(salt, payload_jcs)
            if got != commitment:
                payload_problem = (
                    f"payload and salt hash to commitment {got}, expected {commitment} (signed)"
                )
    kept = payload if fields[2] in REGISTRATION_KINDS and payload_problem is None else None
    return _finish(fields, leaf, line_index, claimed_hash, erased, kept, payload_problem)


def peek_index(line: bytes) -> int | None:
    """The log index a line's leaf claims, or None; used only to classify a failure."""
    try:
        return parse_line(line).index
    except EntryProblem:
        return None
