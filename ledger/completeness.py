"""The completeness index: a signed commitment, per tree size, to every resident's record list.

docs/completeness.md is the specification; in short, for the signed tree of size N:

- resident R (payload ``subject`` = pseudonym P) has the index key
  ``k = HMAC-SHA256(K, "kiroku/completeness/key/v1\\n" ‖ P)`` and the blind
  ``b = HMAC-SHA256(K, "kiroku/completeness/blind/v1\\n" ‖ P)``, K being the operator's index
  secret (a file beside the operator key, handed to auditors, never logged or exported);
- R's leaf value chains the (log index, leaf hash) of R's disclosed provision entries in
  [retained_from, N), in log order — disclosed meaning no flag in force (ledger.flags.in_force)
  at the moment of the index, the ``logged_at`` of entry N−1, with the flag changes logged
  before N applied: ``c0 = SHA-256("kiroku/completeness/leaf/v1\\n" ‖ b)``,
  ``c_j = SHA-256(c_{j-1} ‖ uint64be(index_j) ‖ leaf_hash_j)``; a chain extends in O(1) per
  record;
- the values sit in a sparse Merkle tree (ledger.index_tree) whose root is signed in an index
  note bound to the checkpoint of the same size and root.

The index is brought up to date when a checkpoint is signed, in the same transaction
(``Ledger.checkpoint``), so appends pay nothing and each checkpoint pays for what was appended
since the last one.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import itertools
import json
import os
import secrets
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from eventsourcing.utils import get_topic
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from ledger import index_tree
from ledger.domain import Provision
from ledger.encoding import b64encode, format_time, now_utc, parse_time
from ledger.errors import ConfigurationError, IntegrityFailure, NotFound
from ledger.flags import FLAGGED_TOPIC, FlagChange, in_force, recorded_changes
from ledger.keys import SigningKey, note_key_id
from ledger.linkcodes import residents_of
from ledger.schema import checkpoint as checkpoint_table
from ledger.schema import completeness_note as note_table
from ledger.schema import completeness_pending as pending_table
from ledger.schema import completeness_record as record_table
from ledger.schema import completeness_resident as resident_table
from ledger.schema import log_entry

NOTE_SUFFIX = "/completeness/v1"
KEY_NOTE_SUFFIX = "/completeness/key/v1"
_KEY_DOMAIN = b"kiroku/completeness/key/v1\n"
_BLIND_DOMAIN = b"kiroku/completeness/blind/v1\n"
_LEAF_DOMAIN = b"kiroku/completeness/leaf/v1\n"
_SUBJECT_DOMAIN = b"kiroku/completeness/subject/v1\n"
_PROVISION_TOPIC = get_topic(Provision.Recorded)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHUNK = 5000
_IN = 500  # ids per IN (...) list


# Secret ------------------------------------------------------------------------------------
SECRET_FILE = "completeness.key"


def secret_path(key_dir: Path) -> Path:
    """Where the index secret K lives: beside the operator key, never in the database."""
    return key_dir / SECRET_FILE


def load_or_create_secret(path: Path) -> bytes:
    """The index secret K (32 random bytes, hex in a 0600 file), created on first use."""
    if path.exists():
        try:
            secret = bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the completeness index secret {path}: {exc}"
                                     ) from None
        if len(secret) != 32:
            raise ConfigurationError(f"{path}: expected 64 hex digits (32 bytes)")
        return secret
    secret = secrets.token_bytes(32)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return secret


class IndexSecret:
    """Derives a subject's index key and blind (HMAC-SHA256, RFC 2104)."""

    def __init__(self, secret: bytes) -> None:
        # Keyed once, domain included, and copied per subject: a fresh hmac.new per call costs
        # twice as much, paid for every resident not in the cache.
        self._key_mac = hmac.new(secret, _KEY_DOMAIN, hashlib.sha256)
        self._blind_mac = hmac.new(secret, _BLIND_DOMAIN, hashlib.sha256)
        self.derive = lru_cache(maxsize=65536)(self._derive)

    def _derive(self, subject: str) -> tuple[bytes, bytes]:
        raw = subject.encode()
        key, blind = self._key_mac.copy(), self._blind_mac.copy()
        key.update(raw)
        blind.update(raw)
        return key.digest(), blind.digest()


def chain_seed(blind: bytes) -> bytes:
    return hashlib.sha256(_LEAF_DOMAIN + blind).digest()


def chain_step(chain: bytes, index: int, leaf_hash: bytes) -> bytes:
    return hashlib.sha256(chain + index.to_bytes(8, "big") + leaf_hash).digest()


def subject_digest(subject: str) -> bytes:
    return hashlib.sha256(_SUBJECT_DOMAIN + subject.encode()).digest()


# Notes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexNote:
    size: int
    log_root: bytes
    index_root: bytes
    retained_from: int
    note: str


def _signed(text: str, origin: str, key: SigningKey, *co_signers: SigningKey) -> str:
    """C2SP signed-note by the operator's note key (named after the origin); during an operator
    key rotation the retiring key signs too, on its own line (docs/key-rotation.md)."""
    lines = "".join(
        f"\u2014 {origin} {b64encode(note_key_id(origin, k.public_bytes) + k.sign(text.encode()))}\n"
        for k in (key, *co_signers))
    return f"{text}\n{lines}"


def sign_index_note(origin: str, size: int, log_root: bytes, index_root: bytes,
                    retained_from: int, key: SigningKey, *co_signers: SigningKey) -> IndexNote:
    """docs/completeness.md "Index note": lines 2 and 3 are the checkpoint's size and root."""
    text = (f"{origin}{NOTE_SUFFIX}\n{size}\n{b64encode(log_root)}\n{b64encode(index_root)}\n"
            f"{retained_from}\n")
    return IndexNote(size, log_root, index_root, retained_from,
                     _signed(text, origin, key, *co_signers))


def sign_key_note(origin: str, index_key: bytes, subject: str, key: SigningKey,
                  *co_signers: SigningKey) -> str:
    """The operator's signed word that ``index_key`` is the key of this subject (evidence an
    auditor holding K can refute if false; docs/completeness.md "Key note")."""
    text = f"{origin}{KEY_NOTE_SUFFIX}\n{b64encode(index_key)}\n{b64encode(subject_digest(subject))}\n"
    return _signed(text, origin, key, *co_signers)


# The index ---------------------------------------------------------------------------------
class CompletenessIndex:
    """Reads and writes the index tables; every method takes or opens its own transaction."""

    def __init__(self, log: Any, origin: str, operator_key: SigningKey, secret: Path | bytes
                 ) -> None:
        self.log = log
        self.origin = origin
        self.operator_key = operator_key
        self.co_signers: tuple[SigningKey, ...] = ()  # set by the ledger during a key rotation
        self._secret_source = secret
        self._secret: IndexSecret | None = None
        self._top: _Top | None = None
        self._events = log.events_record_cls.__table__

    @property
    def secret(self) -> IndexSecret:
        """Loaded (or created) when first needed: opening a ledger to read never writes a key."""
        if self._secret is None:
            source = self._secret_source
            raw = source if isinstance(source, bytes) else load_or_create_secret(source)
            self._secret = IndexSecret(raw)
        return self._secret

    # Writing (inside the checkpoint's write transaction) ----------------------------------
    def update(self, session: Session, size: int, log_root: bytes) -> IndexNote:
        """Bring the index from the last indexed size to ``size`` and sign its note."""
        with _collector_paused():
            return self._update_to(session, size, log_root)

    def _update_to(self, session: Session, size: int, log_root: bytes) -> IndexNote:
        last = session.execute(select(note_table.c.tree_size, note_table.c.retained_from,
                                      note_table.c.index_root)
                               .order_by(note_table.c.tree_size.desc()).limit(1)).first()
        start, retained = (int(last[0]), int(last[1])) if last is not None else (0, 0)
        if size < start:
            raise IntegrityFailure(f"the index covers {start} entries, the log only {size}")
        if last is not None and size == start:
            row = session.execute(select(note_table.c.note, note_table.c.log_root,
                                         note_table.c.index_root)
                                  .where(note_table.c.tree_size == size)).one()
            if bytes(row.log_root) != log_root:
                raise IntegrityFailure(f"the index note for size {size} names another log root")
            return IndexNote(size, log_root, bytes(row.index_root), retained, row.note)
        # The top strata kept from this process's last update are current only if that update
        # committed and nobody indexed since: the latest note (read under the log's write lock)
        # must be the one it signed. Taken out now, so a failure below leaves no stale copy.
        top, self._top = self._top, None
        if top is not None and (last is None or (top.size, top.root) != (start, bytes(last[2]))):
            top = None
        appended: dict[bytes, list[tuple[int, bytes]]] = {}
        seeds: dict[bytes, bytes] = {}
        at = self._moment(session, size)
        flagged: set[uuid.UUID] = set()
        new: list[tuple[int, bytes, bool]] = []
        for low in range(start, size, _CHUNK):
            retained = self._read_entries(session, low, min(low + _CHUNK, size), retained,
                                          new, appended, seeds, at, flagged)
        known = self._residents(session, sorted(seeds))
        lasts = _link(session, new, known)
        # Records whose flags changed since the last note, or whose last flag in force lapsed
        # by now, are decided again from their whole flag history (docs/completeness.md).
        flagged |= self._due(session, _micros(at))
        rebuild = self._reassess(session, flagged, size, at, seeds)
        before = int(last[1]) if last is not None else 0
        retained = self._erasure_horizon(session, retained, start)
        if retained > before:
            rebuild |= self._drop_below(session, retained)
            for key, listed in appended.items():
                appended[key] = [(i, h) for i, h in listed if i >= retained]
        index_root, strata = self._apply(session, appended, seeds, rebuild, retained, known,
                                         lasts, top.strata if top is not None else None)
        self._top = _Top(size, index_root, strata)
        signed = sign_index_note(self.origin, size, log_root, index_root, retained,
                                 self.operator_key, *self.co_signers)
        session.execute(insert(note_table).values(
            tree_size=size, log_root=log_root, index_root=index_root, retained_from=retained,
            note=signed.note, signed_at=format_time(now_utc())))
        return signed

    @staticmethod
    def _moment(session: Session, size: int) -> datetime:
        """The moment the index at ``size`` is decided at: the ``logged_at`` of entry size−1,
        read from its leaf so that an auditor reads the same value from an export."""
        if size == 0:
            return _EPOCH
        rows = _sql(session, "SELECT leaf FROM kiroku_log_entry WHERE idx = ?", (size - 1,))
        if not rows:
            raise IntegrityFailure(f"the log has no entry {size - 1} to index up to")
        return parse_time(json.loads(bytes(rows[0][0]))["logged_at"], field="logged_at")

    def _read_entries(self, session: Session, low: int, high: int, retained: int,
                      records: list[tuple[int, bytes, bool]],
                      appended: dict[bytes, list[tuple[int, bytes]]], seeds: dict[bytes, bytes],
                      at: datetime, flagged: set[uuid.UUID]) -> int:
        """Read the provision entries in [low, high) into ``records`` (and the disclosed ones
        into ``appended``) and collect the provisions that flag entries there name; returns the
        retention horizon, raised past any entry whose payload is already erased."""
        rows = _sql(session,
                    f"SELECT e.idx, e.leaf_hash, v.state, v.topic FROM kiroku_log_entry e "
                    f"JOIN {self._events.name} v ON v.id = e.notification_id "
                    "WHERE e.idx >= ? AND e.idx < ? AND v.topic IN (?, ?) ORDER BY e.idx",
                    (low, high, _PROVISION_TOPIC, FLAGGED_TOPIC))
        # The JSON transcoder stores the event's fields as plain JSON (projections.decode reads
        # them the same way); only the payload's resident and flags matter here.
        loads = json.loads
        provisions = []
        for row in rows:
            if row[3] == _PROVISION_TOPIC:
                provisions.append(row)
                continue
            flag = loads(row[2])["payload"]
            if flag is not None:
                flagged.add(uuid.UUID(flag["provision"]))
        payloads = [loads(state)["payload"] for _, _, state, _ in provisions]
        residents = residents_of(session, payloads)  # v2: link codes, one registry read
        pending: list[tuple[int, bytes, int]] = []
        derive = self.secret.derive
        for (idx, digest, _, _), payload, resident in zip(provisions, payloads, residents,
                                                          strict=True):
            if payload is None or resident is None:  # erased at the end of retention
                retained = max(retained, idx + 1)
                continue
            key, blind = derive(resident)
            # ledger.flags: the payload's own non_disclosure / disclose_after is the
            # non-disclosure flag set by this entry; in force until disclose_after, if any.
            after = payload.get("disclose_after")
            if after is None:
                disclosed = not payload["non_disclosure"]
            else:
                until = parse_time(after, field="disclose_after")
                disclosed = until <= at
                if not disclosed:
                    pending.append((idx, key, _micros(until)))
            records.append((idx, key, disclosed))
            if key not in seeds:
                seeds[key] = blind
            if disclosed:
                listed = appended.get(key)
                if listed is None:
                    appended[key] = [(idx, bytes(digest))]
                else:
                    listed.append((idx, bytes(digest)))
        if pending:
            _sql(session, "INSERT INTO kiroku_completeness_pending (idx, index_key, "
                          "disclose_after) VALUES (?, ?, ?)", pending)
        return retained

    def _due(self, session: Session, at: int) -> set[uuid.UUID]:
        """The provisions withheld until a disclose_after that has come by ``at`` (µs)."""
        due = session.execute(
            select(self._events.c.originator_id)
            .join(log_entry, log_entry.c.notification_id == self._events.c.id)
            .join(pending_table, pending_table.c.idx == log_entry.c.idx)
            .where(pending_table.c.disclose_after <= at)).scalars()
        return {uuid.UUID(str(i)) for i in due}

    def _reassess(self, session: Session, provisions: set[uuid.UUID], size: int, at: datetime,
                  seeds: dict[bytes, bytes]) -> set[bytes]:
        """Decide again whether each provision is disclosed at ``at``, from its flag changes
        logged before ``size`` (ledger.flags.in_force), store it and what lapses when; returns
        the keys whose chains changed. Flags are rare, so this reads event by event."""
        events = self._events
        changed: set[bytes] = set()
        ordered = sorted(provisions)
        for start in range(0, len(ordered), _IN):
            rows = session.execute(
                select(events.c.originator_id, events.c.topic, events.c.state, log_entry.c.idx)
                .join(log_entry, log_entry.c.notification_id == events.c.id)
                .where(events.c.originator_id.in_(ordered[start:start + _IN]),
                       log_entry.c.idx < size)
                .order_by(events.c.originator_id, events.c.originator_version)).all()
            histories = []
            for _, group in itertools.groupby(rows, key=lambda r: r.originator_id):
                first, *later = list(group)
                fields = json.loads(first.state)
                if first.topic != _PROVISION_TOPIC or fields["payload"] is None:
                    continue  # erased at the end of retention: out of the index anyway
                histories.append((int(first.idx), fields, later))
            residents = residents_of(session, [f["payload"] for _, f, _ in histories])
            stored = {int(i): bool(d) for i, d in session.execute(
                select(record_table.c.idx, record_table.c.disclosed)
                .where(record_table.c.idx.in_([i for i, _, _ in histories])))}
            for (idx, fields, later), resident in zip(histories, residents, strict=True):
                if idx not in stored or resident is None:
                    continue  # below the retention horizon
                payload = fields["payload"]
                changes = recorded_changes(idx, fields["statement"], payload, fields["logged_at"])
                for row in later:
                    flag = json.loads(row.state) if row.topic == FLAGGED_TOPIC else None
                    if flag is None or flag["payload"] is None:
                        continue
                    body, agency = flag["payload"], flag["statement"]["agency"]
                    role = ("requester" if agency == payload["requester"] else
                            "provider" if agency == payload["provider"] else "authority")
                    changes.append(FlagChange(
                        int(row.idx), body["flag"], body["set"], body["reason"],
                        body.get("disclose_after"), agency, role, flag["statement"]["time"],
                        flag["logged_at"]))
                withheld = in_force(changes, at)
                key, blind = self.secret.derive(resident)
                session.execute(delete(pending_table).where(pending_table.c.idx == idx))
                untils = list(withheld.values())
                if untils and None not in untils:
                    lapse = max(parse_time(u, field="disclose_after") for u in untils if u)
                    session.execute(insert(pending_table).values(
                        idx=idx, index_key=key, disclose_after=_micros(lapse)))
                if stored[idx] == (not withheld):
                    continue
                session.execute(record_table.update().where(record_table.c.idx == idx)
                                .values(disclosed=not withheld))
                changed.add(key)
                seeds.setdefault(key, blind)
        return changed

    def _erasure_horizon(self, session: Session, retained: int, start: int) -> int:
        """The index past the last erased record. Erasure (ledger.retention) goes in log order
        and stops at the first record still due, so erased records are a prefix: a binary search
        over log indices reads O(log n) events instead of scanning."""
        def first_erased(at: int) -> bool:
            row = session.execute(
                select(self._events.c.state)
                .join(log_entry, log_entry.c.notification_id == self._events.c.id)
                .where(log_entry.c.idx == select(func.min(record_table.c.idx))
                       .where(record_table.c.idx >= at, record_table.c.idx < start)
                       .scalar_subquery())).first()
            return row is not None and json.loads(row[0])["payload"] is None

        if start <= retained or not first_erased(retained):
            return retained
        low, high = retained, start  # first_erased(low) holds, first_erased(high) does not
        while high - low > 1:
            middle = (low + high) // 2
            if first_erased(middle):
                low = middle
            else:
                high = middle
        return low + 1

    def _drop_below(self, session: Session, horizon: int) -> set[bytes]:
        """Forget records below the horizon; returns the keys whose chains must be rebuilt."""
        # Every resident with a record below the horizon, listed or not: a chain that loses all
        # its records loses its row too (_apply), so no keyed pseudonym of them stays behind.
        keys = {bytes(k) for (k,) in session.execute(
            select(record_table.c.index_key).distinct().where(record_table.c.idx < horizon))}
        session.execute(delete(record_table).where(record_table.c.idx < horizon))
        session.execute(delete(pending_table).where(pending_table.c.idx < horizon))
        return keys

    def _apply(self, session: Session, appended: dict[bytes, list[tuple[int, bytes]]],
               seeds: dict[bytes, bytes], rebuild: set[bytes], retained: int,
               known: dict[bytes, _Resident], lasts: dict[bytes, int],
               top: index_tree.Strata | None) -> tuple[bytes, index_tree.Strata]:
        """Extend the touched chains, write the residents' rows and the changed strata; returns
        the new root and the top strata as they now stand."""
        keys = sorted(set(lasts) | rebuild)
        known.update(self._residents(session, sorted(rebuild - known.keys())))
        inserts: list[tuple[bytes, bytes, bytes, int, int]] = []
        updates: list[tuple[bytes, int, int, bytes]] = []
        deletes: list[tuple[bytes]] = []
        leaves: dict[bytes, bytes | None] = {}
        leaf_hash, step = index_tree.leaf_hash, chain_step
        for key in keys:
            row = known.get(key)
            last = lasts.get(key, row.last if row is not None else None)
            if last is None:
                continue  # only erased records, never indexed: nothing to remove
            if key in rebuild and last < retained:
                # Every record of this resident is below the retention horizon (erased): the row
                # would only keep a keyed pseudonym of someone whose records are gone
                # (docs/residents.md "Retention").
                if row is not None:
                    deletes.append((key,))
                    if row.count > 0:
                        leaves[key] = None
                continue
            seed = row.seed if row is not None else chain_seed(seeds[key])
            if key in rebuild:
                chain, count = seed, 0
                for idx, digest in self._records_of(session, last, retained):
                    chain, count = step(chain, idx, digest), count + 1
            else:
                chain, count = (row.value, row.count) if row is not None else (seed, 0)
                for idx, digest in appended.get(key, ()):
                    chain, count = step(chain, idx, digest), count + 1
            if count > 0:
                leaves[key] = leaf_hash(key, chain)
            elif row is not None and row.count > 0:
                leaves[key] = None
            # The row stays while the resident has records, listed or not: it holds the head
            # of their record chain.
            if row is None:
                inserts.append((key, seed, chain, count, last))
            else:
                updates.append((chain, count, last, key))
        if inserts:
            _sql(session, 'INSERT INTO kiroku_completeness_resident (index_key, seed, value, '
                          '"count", "last") VALUES (?, ?, ?, ?, ?)', inserts)
        if updates:
            _sql(session, 'UPDATE kiroku_completeness_resident SET value = ?, "count" = ?, '
                          '"last" = ? WHERE index_key = ?', updates)
        if deletes:
            _sql(session, "DELETE FROM kiroku_completeness_resident WHERE index_key = ?", deletes)
        tree = index_tree.TreeUpdate(lambda ids: self._read_strata(session, ids), top)
        root = tree.apply(leaves)
        rows = tree.rows()
        for chunk in _chunks(rows.delete):
            _sql(session, "DELETE FROM kiroku_completeness_stratum WHERE stratum_id IN "
                          f"({_marks(chunk)})", tuple(chunk))
        if rows.insert:
            _sql(session, "INSERT INTO kiroku_completeness_stratum (stratum_id, nodes) "
                          "VALUES (?, ?)", list(rows.insert.items()))
        if rows.update:
            _sql(session, "UPDATE kiroku_completeness_stratum SET nodes = ? WHERE stratum_id = ?",
                 [(nodes, rid) for rid, nodes in rows.update.items()])
        return root, tree.tree.top()

    # Reading -------------------------------------------------------------------------------
    @staticmethod
    def _residents(session: Session, keys: list[bytes]) -> dict[bytes, _Resident]:
        found = {}
        for chunk in _chunks(keys):
            for key, seed, value, count, last in _sql(
                    session, 'SELECT index_key, seed, value, "count", "last" FROM '
                             f"kiroku_completeness_resident WHERE index_key IN ({_marks(chunk)})",
                    tuple(chunk)):
                found[bytes(key)] = _Resident(bytes(seed), bytes(value), int(count), int(last))
        return found

    @staticmethod
    def _read_strata(session: Session, ids: Collection[bytes]) -> dict[bytes, bytes]:
        found = {}
        for chunk in _chunks(list(ids)):
            for rid, nodes in _sql(session, "SELECT stratum_id, nodes FROM "
                                            "kiroku_completeness_stratum WHERE stratum_id IN "
                                            f"({_marks(chunk)})", tuple(chunk)):
                found[bytes(rid)] = bytes(nodes)
        return found

    @staticmethod
    def _records_of(session: Session, last: int | None, retained: int, size: int | None = None
                    ) -> list[tuple[int, bytes]]:
        """The disclosed records in [retained, size) of the resident whose latest record is
        ``last``, in log order: a walk down their record chain (each row names the resident's
        previous record), which stops at the retention horizon."""
        if last is None:
            return []
        rows = _sql(session,
                    "WITH RECURSIVE walk(idx, prev, disclosed) AS ("
                    " SELECT idx, prev, disclosed FROM kiroku_completeness_record WHERE idx = ?"
                    " UNION ALL SELECT r.idx, r.prev, r.disclosed FROM walk w"
                    " JOIN kiroku_completeness_record r ON r.idx = w.prev WHERE w.prev >= ?)"
                    " SELECT w.idx, e.leaf_hash FROM walk w"
                    " JOIN kiroku_log_entry e ON e.idx = w.idx"
                    " WHERE w.disclosed = ? AND w.idx >= ? AND w.idx < ? ORDER BY w.idx",
                    (last, retained, True, retained, size if size is not None else 2**62))
        return [(int(i), bytes(h)) for i, h in rows]

    def latest_note(self) -> IndexNote | None:
        with self.log.transaction(commit=False) as session:
            return _latest(session)

    def prove(self, subject: str) -> dict[str, Any]:
        """The resident's completeness proof at the latest indexed size (docs/completeness.md
        "Resident proof"). Read optimistically: the index note is read again at the end, and
        the reads are repeated if an update committed in between (notes are only added)."""
        key, blind = self.secret.derive(subject)
        for _ in range(5):
            with self.log.transaction(commit=False) as session:
                note = _latest(session)
                if note is None:
                    raise NotFound("no completeness index has been signed yet")
                mine = self._residents(session, [key]).get(key)
                records = self._records_of(session, mine.last if mine is not None else None,
                                           note.retained_from, note.size)
                siblings, other = index_tree.prove(lambda ids: self._read_strata(session, ids),
                                                   key)
                neighbour = None
                if other is not None and other != key:
                    value = self._residents(session, [other])[other].value
                    neighbour = {"index_key": b64encode(other), "value": b64encode(value)}
                checkpoint = session.execute(
                    select(checkpoint_table.c.note).where(checkpoint_table.c.tree_size == note.size)
                    .limit(1)).scalar()
            with self.log.transaction(commit=False) as session:
                again = _latest(session)
            if again is not None and again.size == note.size:
                return {
                    "index_note": note.note, "checkpoint": checkpoint,
                    "key_note": sign_key_note(self.origin, key, subject, self.operator_key,
                                              *self.co_signers),
                    "index_key": b64encode(key), "blind": b64encode(blind),
                    "records": [{"index": i, "leaf_hash": b64encode(h)} for i, h in records],
                    "siblings": [b64encode(h) for h in siblings], "neighbour": neighbour,
                }
        raise IntegrityFailure("the completeness index kept changing while it was read; retry")

    def dump(self) -> Iterator[dict[str, Any]]:
        """The latest index, for auditors (``kiroku log completeness-dump``): its note, then one
        line per resident key with its value and records, in key order. No pseudonyms."""
        with self.log.transaction(commit=False) as session:
            note = _latest(session)
            if note is None:
                raise NotFound("no completeness index has been signed yet")
            yield {"index_note": note.note}
            values = {bytes(k): bytes(v) for k, v in session.execute(
                select(resident_table.c.index_key, resident_table.c.value))}
            current: bytes | None = None
            records: list[list[Any]] = []
            rows = session.execute(
                select(record_table.c.index_key, record_table.c.idx, log_entry.c.leaf_hash)
                .join(log_entry, log_entry.c.idx == record_table.c.idx)
                .where(record_table.c.disclosed.is_(True),
                       record_table.c.idx >= note.retained_from, record_table.c.idx < note.size)
                .order_by(record_table.c.index_key, record_table.c.idx))
            for key, idx, digest in rows:
                if key != current:
                    if current is not None:
                        yield _dump_line(current, values, records)
                    current, records = bytes(key), []
                records.append([int(idx), b64encode(bytes(digest))])
            if current is not None:
                yield _dump_line(current, values, records)


@dataclass(frozen=True, slots=True)
class _Resident:
    """A resident's row: chain seed, leaf value, listed records, latest record (any)."""

    seed: bytes
    value: bytes
    count: int
    last: int


def _link(session: Session, records: list[tuple[int, bytes, bool]],
          known: dict[bytes, _Resident]) -> dict[bytes, int]:
    """Write the new records, each naming its resident's previous record, so the writes only
    append (log order is key order); returns each touched resident's latest record."""
    lasts: dict[bytes, int] = {}
    rows = []
    for idx, key, disclosed in records:
        prev = lasts.get(key)
        if prev is None:
            row = known.get(key)
            prev = row.last if row is not None else None
        rows.append((idx, key, disclosed, prev))
        lasts[key] = idx
    if rows:
        _sql(session, "INSERT INTO kiroku_completeness_record (idx, index_key, disclosed, prev) "
                      "VALUES (?, ?, ?, ?)", rows)
    return lasts


@dataclass(frozen=True)
class _Top:
    """The top strata as of the index note this process signed last (size, index root)."""

    size: int
    root: bytes
    strata: index_tree.Strata


def _dump_line(key: bytes, values: dict[bytes, bytes], records: list[list[Any]]) -> dict[str, Any]:
    return {"index_key": b64encode(key), "value": b64encode(values.get(key, b"")),
            "records": records}


def _latest(session: Session) -> IndexNote | None:
    row = session.execute(select(note_table).order_by(note_table.c.tree_size.desc()).limit(1)
                          ).first()
    if row is None:
        return None
    return IndexNote(int(row.tree_size), bytes(row.log_root), bytes(row.index_root),
                     int(row.retained_from), row.note)


def _sql(session: Session, sql: str, params: Any = ()) -> list[Any]:
    """Run ``sql`` (``?`` placeholders) on the session's DB-API connection, as ledger.storage
    writes the log: SQLAlchemy's per-row processing would cost more than the index's own work
    (bench/bench_completeness.py). A list of parameter tuples runs as one executemany. Returns
    the rows a query gives."""
    connection = session.connection()
    if connection.dialect.paramstyle != "qmark":
        sql = sql.replace("?", "%s")
    cursor = connection.connection.cursor()
    try:
        if isinstance(params, list):
            cursor.executemany(sql, params)
            return []
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description is not None else []
    finally:
        cursor.close()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: an update makes tens of thousands of short-lived,
    acyclic containers (parsed payloads, rows), and the collections they trigger walk the whole
    process's heap, ~15 % of an update's time (bench/bench_completeness.py). Reference counting
    still frees them; a cycle made meanwhile, here or in another thread, waits until the end.
    Left alone if someone else already paused it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _marks(chunk: list[bytes]) -> str:
    return ", ".join("?" * len(chunk))


def _chunks(items: list[bytes]) -> Iterator[list[bytes]]:
    for start in range(0, len(items), _IN):
        yield items[start:start + _IN]
