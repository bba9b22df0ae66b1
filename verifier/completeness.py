"""Completeness of a resident's view, checked independently (docs/completeness.md).

Two checks, re-implemented here from the specification (nothing is imported from ``ledger``):

- ``verify_resident_proof``: one resident's proof, offline, with the operator's vkey — the
  index note's signature and binding to the checkpoint, the key note, the leaf value recomputed
  from the listed records, the sparse Merkle path to the signed index root, and the listed
  records against the ones the resident holds;
- ``recompute_index`` + ``compare_index``: an auditor holding the index secret K rebuilds the
  whole index from an export and compares it with signed index notes, naming every index key
  whose records differ (never a pseudonym).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import itertools
import json
import re
import sys
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from verifier.checkpoint import open_checkpoint
from verifier.encoding import b64decode
from verifier.errors import MalformedNote, UnusableInput, VerificationError
from verifier.note import NoteVerifier, open_note

NOTE_SUFFIX = "/completeness/v1"
KEY_NOTE_SUFFIX = "/completeness/key/v1"
EMPTY = b"\x00" * 32
#: The namespace of the log's aggregate ids: a provision's id (what a flag names) is
#: UUIDv5(NAMESPACE, "provision:" ‖ submitting agency ‖ ":" ‖ payload.request_id).
PROVISION_NAMESPACE = uuid.UUID("5b0c7a8e-1f0e-4c1d-9a55-6b69726f6b75")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


class CompletenessError(VerificationError):
    """The index does not show the resident's (or every resident's) records as they are."""

    kind = "completeness-failed"


class MalformedCompleteness(UnusableInput):
    """An index note, key note, proof or dump does not have its documented shape."""

    kind = "malformed-completeness"


# Hashing (docs/completeness.md "Leaf value" and "The tree") ------------------------------
def index_key(secret: bytes, subject: str) -> bytes:
    return hmac.new(secret, b"kiroku/completeness/key/v1\n" + subject.encode(),
                    hashlib.sha256).digest()


def blind(secret: bytes, subject: str) -> bytes:
    return hmac.new(secret, b"kiroku/completeness/blind/v1\n" + subject.encode(),
                    hashlib.sha256).digest()


def leaf_value(blind_bytes: bytes, records: Sequence[tuple[int, bytes]]) -> bytes:
    chain = hashlib.sha256(b"kiroku/completeness/leaf/v1\n" + blind_bytes).digest()
    for index, digest in records:
        chain = hashlib.sha256(chain + index.to_bytes(8, "big") + digest).digest()
    return chain


def _leaf(key: bytes, value: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + key + value).digest()


def _inner(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _bit(key: bytes, depth: int) -> int:
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


def tree_root(leaves: dict[bytes, bytes], depth: int = 0) -> bytes:
    """The sparse Merkle root over ``{index key: value}``: empty = zeros, one leaf = its leaf
    hash, more = inner hash of the two halves split on the next key bit. With ``depth``: the
    hash of the subtree at that depth holding these leaves (which share their first bits)."""
    items = sorted((k, _leaf(k, v)) for k, v in leaves.items())

    def subtree(part: list[tuple[bytes, bytes]], depth: int) -> bytes:
        if not part:
            return EMPTY
        if len(part) == 1:
            return part[0][1]
        split = next((i for i, (k, _) in enumerate(part) if _bit(k, depth)), len(part))
        return _inner(subtree(part[:split], depth + 1), subtree(part[split:], depth + 1))

    return subtree(items, depth)


def path_root(key: bytes, value: bytes | None, siblings: Sequence[bytes],
              neighbour: tuple[bytes, bytes] | None) -> bytes:
    """The root a path leads to: from ``key``'s leaf (``value``), or, for a key with no leaf,
    from the empty position or the other key's leaf where the key's path ends."""
    depth = len(siblings)
    if depth > 256:
        raise MalformedCompleteness(f"path has {depth} siblings, at most 256 possible")
    if value is not None:
        node = _leaf(key, value)
    elif neighbour is None:
        node = EMPTY
    else:
        other, other_value = neighbour
        if other == key or any(_bit(other, d) != _bit(key, d) for d in range(depth)):
            raise CompletenessError("the path ends at a leaf that is not on the key's path "
                                    "or is the key itself: it proves no absence")
        node = _leaf(other, other_value)
    for d in range(depth - 1, -1, -1):
        node = _inner(siblings[d], node) if _bit(key, d) else _inner(node, siblings[d])
    return node


# Notes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexNote:
    origin: str
    size: int
    log_root: bytes
    index_root: bytes
    retained_from: int


def open_index_note(text: str | bytes, vkey: NoteVerifier) -> IndexNote:
    """Verify an index note signed by the operator and parse it (docs/completeness.md)."""
    note = open_note(text, (vkey,))
    lines = note.text[:-1].split("\n")
    if len(lines) != 5 or lines[0] != vkey.name + NOTE_SUFFIX:
        raise MalformedCompleteness(
            f"index note starts with {lines[0][:80]!r} and has {len(lines)} lines, expected "
            f"{vkey.name + NOTE_SUFFIX!r} and 5 lines")
    size, log_root, root, retained = lines[1:]
    for name, value in (("size", size), ("retained_from", retained)):
        if _DECIMAL.fullmatch(value) is None:
            raise MalformedCompleteness(f"index note {name} {value[:30]!r} is not a decimal")
    return IndexNote(vkey.name, int(size), _hash(log_root, "log root"), _hash(root, "index root"),
                     int(retained))


def open_key_note(text: str | bytes, vkey: NoteVerifier) -> tuple[bytes, bytes]:
    """(index key, subject digest) from a key note signed by the operator."""
    note = open_note(text, (vkey,))
    lines = note.text[:-1].split("\n")
    if len(lines) != 3 or lines[0] != vkey.name + KEY_NOTE_SUFFIX:
        raise MalformedCompleteness(f"key note does not start with {vkey.name + KEY_NOTE_SUFFIX!r}")
    return _hash(lines[1], "index key"), _hash(lines[2], "subject digest")


def subject_digest(subject: str) -> bytes:
    return hashlib.sha256(b"kiroku/completeness/subject/v1\n" + subject.encode()).digest()


def _hash(text: Any, what: str) -> bytes:
    try:
        value = b64decode(text)
    except (ValueError, binascii.Error) as exc:
        raise MalformedCompleteness(f"{what}: {exc}") from None
    if len(value) != 32:
        raise MalformedCompleteness(f"{what} is {len(value)} bytes, expected 32")
    return value


# Resident proof ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ResidentProof:
    index_note: str
    checkpoint: str | None
    key_note: str
    index_key: bytes
    blind: bytes
    records: tuple[tuple[int, bytes], ...]
    siblings: tuple[bytes, ...]
    neighbour: tuple[bytes, bytes] | None

    @classmethod
    def from_json(cls, raw: str | bytes | dict[str, Any]) -> ResidentProof:
        try:
            obj = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
            records = tuple((_index(r["index"]), _hash(r["leaf_hash"], "record leaf hash"))
                            for r in obj["records"])
            neighbour = obj.get("neighbour")
            return cls(
                str(obj["index_note"]), obj.get("checkpoint"), str(obj["key_note"]),
                _hash(obj["index_key"], "index key"), _hash(obj["blind"], "blind"), records,
                tuple(_hash(s, "sibling") for s in obj["siblings"]),
                None if neighbour is None else (_hash(neighbour["index_key"], "neighbour key"),
                                                _hash(neighbour["value"], "neighbour value")))
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedCompleteness(f"not a completeness proof: {exc!r}") from None


def _index(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"record index {value!r} is not a log index")
    return value


@dataclass(frozen=True)
class ResidentResult:
    size: int
    records: tuple[tuple[int, bytes], ...]
    retained_from: int


def verify_resident_proof(proof: ResidentProof, vkey: NoteVerifier, *,
                          held: Iterable[tuple[int, bytes]] | None = None,
                          subject: str | None = None, checkpoint: str | None = None
                          ) -> ResidentResult:
    """Check a resident's completeness proof; raises CompletenessError (or unusable input).

    ``held``: the (log index, leaf hash) of every record the resident was shown (each checked
    by its own inclusion proof); those in the note's range must be exactly the listed ones.
    ``subject``: the resident's pseudonym, checked against the key note. ``checkpoint``: a
    checkpoint the resident trusts (for example witnessed) for the same size, instead of the
    one in the proof.
    """
    note = open_index_note(proof.index_note, vkey)
    checkpoint_text = checkpoint if checkpoint is not None else proof.checkpoint
    if checkpoint_text is not None:
        cp = open_checkpoint(checkpoint_text, vkey, origin=vkey.name)
        if (cp.size, cp.root) != (note.size, note.log_root):
            raise CompletenessError(
                f"the index note is for size {note.size} root {note.log_root.hex()[:16]}…, the "
                f"checkpoint for size {cp.size} root {cp.root.hex()[:16]}…: refused")
    bound_key, digest = open_key_note(proof.key_note, vkey)
    if bound_key != proof.index_key:
        raise CompletenessError("the key note names another index key than the proof")
    if subject is not None and digest != subject_digest(subject):
        raise CompletenessError("the key note binds the index key to another subject")
    indices = [i for i, _ in proof.records]
    if any(b <= a for a, b in itertools.pairwise(indices)):
        raise CompletenessError(f"listed records are not in strictly increasing log order: "
                                f"{indices[:20]}")
    outside = [i for i in indices if not note.retained_from <= i < note.size]
    if outside:
        raise CompletenessError(f"listed records {outside[:20]} lie outside the note's range "
                                f"[{note.retained_from}, {note.size})")
    value = leaf_value(proof.blind, proof.records) if proof.records else None
    root = path_root(proof.index_key, value, proof.siblings, proof.neighbour)
    if root != note.index_root:
        raise CompletenessError(
            f"the path for index key {_b64(proof.index_key)} with {len(proof.records)} records "
            f"leads to root {_b64(root)}, the signed index note says {_b64(note.index_root)}")
    if held is not None:
        listed = dict(proof.records)
        mine = {i: h for i, h in held if note.retained_from <= i < note.size}
        left_out = sorted(i for i in mine if listed.get(i) != mine[i])
        added = sorted(i for i in listed if i not in mine)
        if left_out or added:
            raise CompletenessError(
                f"index key {_b64(proof.index_key)}: the index left out records at log indices "
                f"{left_out} and added {added} (compared with the records you hold)")
    return ResidentResult(note.size, proof.records, note.retained_from)


def _b64(value: bytes) -> str:
    return binascii.b2a_base64(value, newline=False).decode()


# Auditor -----------------------------------------------------------------------------------
#: One change of a record's flags: (log index of the entry, flag, set, disclose_after).
Change = tuple[int, str, bool, str | None]


@dataclass
class RecomputedIndex:
    """Every provision with its payload per index key, the flag changes of each, and the
    moments the notes are decided at; ``expected_leaves`` applies the rule for one note."""

    records: dict[bytes, list[tuple[int, bytes]]] = field(default_factory=dict)
    blinds: dict[bytes, bytes] = field(default_factory=dict)
    erased: list[int] = field(default_factory=list)  # provision indices without a payload
    retained: dict[int, bytes] = field(default_factory=dict)  # index -> key of every record
    flags: dict[int, list[Change]] = field(default_factory=dict)  # provision index -> changes
    moments: dict[int, datetime] = field(default_factory=dict)  # size -> logged_at of size−1
    entries: int = 0


def withheld(changes: Iterable[Change], size: int, at: datetime) -> bool:
    """docs/completeness.md "Which records" (the rule of docs/log-format.md "Flags"): fold
    the changes logged before ``size``; a flag set with no disclose_after, or one after ``at``,
    withholds the record."""
    state: dict[str, str | None] = {}
    for index, flag, is_set, until in changes:
        if index >= size:
            continue
        if is_set:
            state[flag] = until
        else:
            state.pop(flag, None)
    return any(until is None or _time(until) > at for until in state.values())


def _time(text: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise UnusableInput(f"{str(text)[:40]!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise UnusableInput(f"{text!r} has no UTC offset")
    return moment


def recompute_index(lines: Iterable[bytes], secret: bytes, size: int, *,
                    sizes: Collection[int] = (),
                    resolve: Callable[[Mapping[str, Any]], str] | None = None
                    ) -> RecomputedIndex:
    """Rebuild the index inputs from export lines (JSON Lines, docs/log-format.md "Export").

    Only indices below ``size`` count; the notes to compare must have ``size`` or one of
    ``sizes``. The export itself is checked by ``verify_export``; here each line's leaf hash
    is recomputed from its leaf bytes so a record is named by the hash the log committed to.
    ``resolve``: the resident pseudonym of a version-2 payload (link codes, which only the
    operator's registry resolves, e.g. ``LinkCodes`` over its dump); without it such a payload
    is unusable input. A payload ``resolve`` rejects with ``UnresolvedLinkCode`` is named by
    log index in the one UnresolvedLinkCode raised after the whole export was read.
    """
    out = RecomputedIndex()
    unresolved: list[tuple[int, str]] = []  # (log index, why) of version-2 payloads
    wanted = {n - 1 for n in (*sizes, size) if n > 0}
    ids: dict[uuid.UUID, int] = {}  # provision id -> its log index
    for raw in lines:
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            index = line["index"]
            if index >= size:
                break
            leaf = b64decode(line["leaf"])
            fields = json.loads(leaf)
            kind = fields["kind"]
            if index in wanted:
                out.moments[index + 1] = _time(fields["logged_at"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UnusableInput(f"export line {out.entries}: {exc!r}") from None
        out.entries += 1
        payload = line.get("payload")
        if kind == "provision.flagged":
            _read_flag(out, ids, index, payload)
            continue
        if kind != "provision":
            continue
        if payload is None:
            out.erased.append(index)
            continue
        try:
            if "subject" in payload:
                subject = payload["subject"]
            elif resolve is None:
                if "requester_code" in payload:
                    raise UnusableInput(
                        f"log index {index} is a version-2 provision (link codes, no subject): "
                        "recomputing the index needs the operator's link-code dump ('kiroku "
                        "log link-code-dump'; give it with --link-codes)")
                raise KeyError("subject")
            else:
                try:
                    subject = resolve(payload)
                except UnresolvedLinkCode as exc:
                    unresolved.append((index, str(exc)))
                    continue
            hidden, after = payload["non_disclosure"], payload.get("disclose_after")
            ids[uuid.uuid5(PROVISION_NAMESPACE,
                           f"provision:{fields['agency']}:{payload['request_id']}")] = index
        except (KeyError, TypeError):
            raise UnusableInput(f"export line {index}: provision payload without subject or "
                                "link codes") from None
        key = index_key(secret, subject)
        out.retained[index] = key
        # docs/log-format.md "Flags": the payload's own 不開示 or delayed disclosure is the
        # non-disclosure flag set by this entry.
        if hidden is True or after is not None:
            out.flags[index] = [(index, "non_disclosure", True, after)]
        digest = hashlib.sha256(b"\x00" + leaf).digest()
        out.records.setdefault(key, []).append((index, digest))
        if key not in out.blinds:
            out.blinds[key] = blind(secret, subject)
    if unresolved:
        shown = "; ".join(f"log index {i}: {why}" for i, why in unresolved[:20])
        raise UnresolvedLinkCode(
            f"{len(unresolved)} version-2 provisions cannot be resolved with the link-code dump "
            f"({shown}{' …' if len(unresolved) > 20 else ''})")
    return out


def _read_flag(out: RecomputedIndex, ids: Mapping[uuid.UUID, int], index: int,
               payload: Any) -> None:
    """Add a ``provision.flagged`` entry's change to the flags of the provision it names."""
    if payload is None:
        return  # erased: its provision, earlier in the log, was erased before it
    try:
        record = ids.get(uuid.UUID(payload["provision"]))
        change = (index, str(payload["flag"]), payload["set"] is True,
                  payload.get("disclose_after"))
    except (KeyError, TypeError, ValueError):
        raise UnusableInput(f"export line {index}: not a flag payload") from None
    if record is not None:  # the log refuses a flag on a provision it does not hold
        out.flags.setdefault(record, []).append(change)


class UnresolvedLinkCode(CompletenessError):
    """A version-2 provision's link codes do not resolve, through the operator's link-code
    dump, to one resident: the dump is not the registry the log checked them against."""

    kind = "link-code-unresolved"


class LinkCodes:
    """The operator's link-code registry as handed to an auditor (``kiroku log
    link-code-dump``: JSON Lines ``{"agency", "code", "subject"}``), read here independently.

    Called with a version-2 provision payload, it returns the pseudonym both link codes stand
    for: the requester's code must be one issued to ``requester``, the provider's one issued to
    ``provider``, and both must name the same resident. Messages never carry a pseudonym."""

    def __init__(self, codes: Mapping[tuple[str, str], str]) -> None:
        self._codes = dict(codes)

    def __len__(self) -> int:
        return len(self._codes)

    @classmethod
    def from_jsonl(cls, text: bytes) -> LinkCodes:
        codes: dict[tuple[str, str], str] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
                agency, code, subject = row["agency"], row["code"], row["subject"]
            except (ValueError, KeyError, TypeError) as exc:
                raise MalformedCompleteness(
                    f"link-code dump line {number}: not {{agency, code, subject}} "
                    f"({type(exc).__name__})") from None
            if not all(isinstance(v, str) and v for v in (agency, code, subject)):
                raise MalformedCompleteness(f"link-code dump line {number}: agency, code and "
                                            "subject must be non-empty strings")
            if codes.setdefault((agency, code), subject) != subject:
                raise MalformedCompleteness(f"link-code dump line {number}: agency {agency!r} "
                                            "has this code for two different residents")
        return cls(codes)

    def __call__(self, payload: Mapping[str, Any]) -> str:
        subjects = []
        for role in ("requester", "provider"):
            agency, code = payload.get(role), payload.get(f"{role}_code")
            if not isinstance(agency, str) or not isinstance(code, str):
                raise UnresolvedLinkCode(f"no {role} or {role}_code")
            subject = self._codes.get((agency, code))
            if subject is None:
                raise UnresolvedLinkCode(
                    f"{role}_code is not in the dump as a code of the {role} {agency!r}")
            subjects.append(subject)
        if subjects[0] != subjects[1]:
            raise UnresolvedLinkCode("requester_code and provider_code resolve to two different "
                                     "residents")
        return subjects[0]


@dataclass(frozen=True)
class KeyDifference:
    index_key: bytes
    left_out: tuple[int, ...]
    added: tuple[int, ...]
    value_differs: bool

    def describe(self) -> str:
        parts = []
        if self.left_out:
            parts.append(f"left out log indices {list(self.left_out)}")
        if self.added:
            parts.append(f"added log indices {list(self.added)}")
        if self.value_differs and not parts:
            parts.append("signed value does not commit to its listed records")
        return f"index key {_b64(self.index_key)}: " + "; ".join(parts)


def expected_leaves(index: RecomputedIndex, note: IndexNote) -> dict[bytes, list[tuple[int, bytes]]]:
    """What the index at ``note`` must list per key, from the recomputation."""
    if index.entries < note.size:
        raise UnusableInput(f"the export has {index.entries} entries, the index note covers "
                            f"{note.size}")
    covered = [i for i in index.erased if i >= note.retained_from]
    if covered:
        raise UnusableInput(
            f"the export lacks the payloads of {len(covered)} provisions the index note covers "
            f"(first at index {covered[0]}): use an export taken before they were erased")
    if note.size > 0 and note.size not in index.moments:
        raise UnusableInput(f"the recomputation did not keep the moment of size {note.size}: "
                            "pass it in recompute_index(sizes=…)")
    at = index.moments.get(note.size)
    flags = index.flags
    out: dict[bytes, list[tuple[int, bytes]]] = {}
    for key, records in index.records.items():
        kept = [(i, h) for i, h in records if i >= note.retained_from and i < note.size and not (
            i in flags and at is not None and withheld(flags[i], note.size, at))]
        if kept:
            out[key] = kept
    return out


def compare_index(index: RecomputedIndex, note: IndexNote,
                  dump: Iterable[dict[str, Any]] | None = None) -> list[KeyDifference]:
    """Compare the recomputed index with a signed note; raises CompletenessError naming the
    differing keys (from ``dump``, the operator's index at that size) when the roots differ."""
    expected = expected_leaves(index, note)
    below = sorted(i for i in index.retained if i < note.retained_from)
    if below:
        raise CompletenessError(
            f"the index note leaves out everything below index {note.retained_from} as erased, "
            f"but the export still holds the payloads of {len(below)} provisions there "
            f"(first at index {below[0]})")
    values = {k: leaf_value(index.blinds[k], rs) for k, rs in expected.items()}
    if tree_root(values) == note.index_root:
        return []
    if dump is None:
        raise CompletenessError(
            f"the index root recomputed from the export for size {note.size} is "
            f"{_b64(tree_root(values))}, the signed note says {_b64(note.index_root)}; give the "
            "operator's index dump (--index-dump) to name the keys that differ")
    claimed: dict[bytes, tuple[bytes, list[tuple[int, bytes]]]] = {}
    for line in dump:
        try:
            claimed[_hash(line["index_key"], "dump key")] = (
                _hash(line["value"], "dump value"),
                [(_index(i), _hash(h, "dump leaf hash")) for i, h in line["records"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedCompleteness(f"index dump line: {exc!r}") from None
    if tree_root({k: v for k, (v, _) in claimed.items()}) != note.index_root:
        raise CompletenessError("the index dump does not reproduce the signed index root: it is "
                                "not the index the operator signed")
    differences = []
    for key in sorted(set(expected) | set(claimed)):
        mine = dict(expected.get(key, []))
        value, listed = claimed.get(key, (b"", []))
        theirs = dict(listed)
        left_out = tuple(sorted(i for i in mine if theirs.get(i) != mine[i]))
        added = tuple(sorted(i for i in theirs if mine.get(i) != theirs[i]))
        differs = value != values.get(key)
        if left_out or added or differs:
            differences.append(KeyDifference(key, left_out, added, differs))
    raise CompletenessError("the signed index differs from the export: " + "; ".join(
        d.describe() for d in differences[:20]) + (" …" if len(differences) > 20 else ""))


def read_dump(text: bytes) -> tuple[str, list[dict[str, Any]]]:
    """(index note, key lines) of an index dump (``kiroku log completeness-dump``)."""
    try:
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        return str(lines[0]["index_note"]), lines[1:]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise MalformedNote(f"not an index dump: {exc!r}") from None


# Commands (mounted by verifier.cli) ------------------------------------------------------
def read_secret(text: bytes) -> bytes:
    try:
        secret = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise UnusableInput("the completeness key file is not hex") from None
    if len(secret) != 32:
        raise UnusableInput(f"the completeness key is {len(secret)} bytes, expected 32")
    return secret


def audit_command(export: str, vkey: str, key_file: str | None, notes: Sequence[str],
                  dump_file: str | None, link_codes_file: str | None = None) -> int:
    """``verify EXPORT --completeness-key K --index-note N… [--link-codes L]``: after the
    export verified, recompute the index (resolving version-2 provisions through the link-code
    dump L) and compare it with each signed index note."""
    from verifier.cli import EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE, _read, load_vkey

    try:
        if key_file is None:
            raise UnusableInput("--index-note, --index-dump and --link-codes need "
                                "--completeness-key")
        verifier = load_vkey(vkey)
        secret = read_secret(_read(key_file, "completeness key"))
        resolve = (LinkCodes.from_jsonl(_read(link_codes_file, "link-code dump"))
                   if link_codes_file is not None else None)
        texts = [_read(n, "index note") for n in notes]
        dump_note, dump = (None, None)
        if dump_file is not None:
            dump_note, dump = read_dump(_read(dump_file, "index dump"))
            texts.append(dump_note.encode())
        parsed = [(open_index_note(t, verifier), t) for t in texts]
        if not parsed:
            raise UnusableInput("give at least one --index-note (or --index-dump)")
        top = max(n.size for n, _ in parsed)
        with open(export, "rb") as stream:
            index = recompute_index((line for line in stream), secret, top,
                                    sizes=[n.size for n, _ in parsed], resolve=resolve)
        seen: set[int] = set()
        for note, text in parsed:
            if note.size in seen:
                continue
            seen.add(note.size)
            claimed = dump if dump_note is not None and text == dump_note.encode() else None
            compare_index(index, note, claimed)
            print(f"OK completeness index at size {note.size} matches the export "
                  f"({sum(1 for k in expected_leaves(index, note))} resident keys)")
    except OSError as exc:
        print(f"error: cannot read export {export!r}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except UnusableInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except VerificationError as exc:
        print(f"FAIL {exc.kind}: {exc}")
        return EXIT_FAILED
    return EXIT_OK


def proof_command(proof: str, vkey: str, *, subject: str | None, held_file: str | None,
                  checkpoint: str | None) -> int:
    """``verify completeness PROOF``: check a resident's saved completeness proof offline."""
    from verifier.cli import EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE, _read, load_vkey

    try:
        verifier = load_vkey(vkey)
        parsed = ResidentProof.from_json(_read(proof, "completeness proof"))
        held = None
        if held_file is not None:
            try:
                rows = json.loads(_read(held_file, "held records"))
                held = [(_index(r["index"]), _hash(r["leaf_hash"], "held leaf hash"))
                        for r in rows]
            except (ValueError, KeyError, TypeError) as exc:
                raise MalformedCompleteness(f"held records: {exc!r}") from None
        cp = _read(checkpoint, "checkpoint").decode("utf-8", "replace") if checkpoint else None
        result = verify_resident_proof(parsed, verifier, held=held, subject=subject,
                                       checkpoint=cp)
    except UnusableInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except VerificationError as exc:
        print(f"FAIL {exc.kind}: {exc}")
        return EXIT_FAILED
    print(f"OK the signed index at size {result.size} lists {len(result.records)} records for "
          f"this key (log indices {result.retained_from} to {result.size - 1})")
    return EXIT_OK
