"""Restoring a ledger from an export (docs/backup.md): ``kiroku log import``.

An export (docs/log-format.md "Export") holds every leaf, and every payload and salt not yet
erased; registrations are log entries too. So an export plus the operator's vkey is a complete
logical backup of the log: this module rebuilds the event store, the log entries and the Merkle
nodes from it, so that the new ledger has the same root at every size and continues the same log.

Order of work, so that nothing is written from a bad export:

1. the export is checked in full by the independent verifier (``verifier/``: chain, signatures,
   commitments, key validity and, with a checkpoint, its signature, size and root); a bad entry
   is reported with its index and nothing is written;
2. the entries are read again and written through ``LogRecorder.insert_events`` (the same code
   that appends), in ONE transaction that holds the log's write lock, into a database whose log
   is empty. The recorder computes each leaf again from the event; the result must be the
   export's exact leaf bytes, each payload must match its commitment, and the final root must be
   the verified one: a file changed between the two reads rolls everything back;
3. the operator key is checked against the log's current operator key (before the commit), and a
   checkpoint of the imported size is signed (same root as the source's). Signing also builds the
   completeness index, which resolves version-2 link codes through ``kiroku_link_code``, a table
   an export does not hold: when it is missing the entries stay imported and the report says what
   to restore before ``kiroku log checkpoint``.

Memory is bounded: the file is streamed, and one chunk of events is held at a time.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from sqlalchemy import func, select

from ledger.application import Ledger
from ledger.applications import EVENTS as APPLICATION_EVENTS
from ledger.applications import SUBMITTED as APPLICATION_SUBMITTED
from ledger.applications import Application
from ledger.domain import (
    NAMESPACE,
    Agency,
    Catalog,
    Logged,
    OperatorKey,
    Provision,
    agency_id,
    catalog_id,
    operator_key_id,
    provision_id,
)
from ledger.encoding import parse_time
from ledger.errors import LedgerError
from ledger.flags import KIND as FLAG_KIND
from ledger.flags import ProvisionFlagged
from ledger.notices import KIND as NOTICE_KIND
from ledger.notices import Notice, notice_uuid
from ledger.proxies import Proxy
from ledger.schema import checkpoint as checkpoint_table
from ledger.schema import log_entry
from ledger.shards import FROZEN as SHARD_FROZEN
from ledger.shards import OPENED as SHARD_OPENED
from ledger.shards import ShardEnd, ShardStart, seal
from ledger.shards import aggregate_id as shard_aggregate_id
from ledger.signing import verify_commitment
from ledger.storage import AppendedEntry, writing

_CHUNK = 1000
#: Keys the log adds to a statement to make its leaf (docs/log-format.md "Log entries").
_LEAF_ONLY = ("index", "prev", "logged_at", "signature")


class RestoreError(LedgerError):
    """The export cannot be imported; nothing was written."""

    code = "restore-refused"


class TargetNotEmpty(RestoreError):
    code = "target-not-empty"


class ExportChanged(RestoreError):
    """The export read for writing differs from the one that was verified."""

    code = "export-changed"


class OperatorKeyMismatch(RestoreError):
    code = "operator-key-mismatch"


@dataclass(frozen=True)
class ImportReport:
    entries: int
    erased: int
    root: bytes
    #: The checkpoint signed for the imported size, or None with ``checkpoint_problem`` saying
    #: why it could not be signed yet (then: restore what it names, run 'kiroku log checkpoint').
    checkpoint_note: str | None
    checkpoint_problem: str | None = None


def log_is_empty(ledger: Ledger) -> bool:
    """Whether the ledger's database holds no event, log entry or checkpoint."""
    events = ledger.log.events_record_cls.__table__
    with ledger.log.transaction(commit=False) as session:
        return _empty(session, events)


def _empty(session: Any, events: Any) -> bool:
    for table in (events, log_entry, checkpoint_table):
        if session.execute(select(func.count()).select_from(table)).scalar():
            return False
    return True


def import_export(ledger: Ledger, path: Path, verified_root: bytes, first_operator_key: bytes,
                  *, progress: Callable[[int], None] | None = None) -> ImportReport:
    """Write the (already verified) export at ``path`` into ``ledger``'s empty log, then sign a
    checkpoint of its size. ``verified_root``: the root the verifier computed over the export;
    ``first_operator_key``: the raw public key of the vkey it was verified with. The ledger's
    operator key must be the log's current one (that key, or the last rotation's): checkpoints of
    the restored log must verify with the keys verifiers already hold.

    Raises TargetNotEmpty, ExportChanged or OperatorKeyMismatch, with nothing written.
    """
    events_table = ledger.log.events_record_cls.__table__
    size = erased = 0
    appended: list[AppendedEntry] = []
    operator_public = ledger.operator_key.public_bytes
    with writing(), ledger.log.transaction(commit=True) as session:
        # The write lock first: another process appending meanwhile cannot make the log non-empty
        # between this check and the import.
        ledger.log._lock_table(session)
        if not _empty(session, events_table):
            raise TargetNotEmpty(
                "the target database already holds a log; import into a new, empty database "
                "('kiroku db upgrade' on a fresh database, without 'kiroku init')")
        current_operator = None  # the operator key after the last rotation entry, if any
        last_kind = None
        for chunk in _chunks(_read_lines(path), _CHUNK):
            stored, bodies, leaves = _events(ledger, session, chunk)
            for line in chunk:
                if line.leaf_json["kind"] == "operator.key_rotated" and line.payload:
                    current_operator = base64.b64decode(line.payload["public_key"])
                erased += line.payload is None
                last_kind = line.leaf_json["kind"]
            appended.clear()
            ledger.log.insert_events(stored, session=session, log_entries=bodies,
                                     appended=appended)
            for line, entry, leaf in zip(chunk, appended, leaves):
                if entry.leaf != leaf or entry.index != line.index:
                    raise ExportChanged(
                        f"entry {line.index}: the leaf rebuilt from the export differs from the "
                        "export's leaf bytes (was the file changed after it was verified?); "
                        "nothing was imported")
            size += len(chunk)
            if progress is not None:
                progress(len(chunk))
        expected = current_operator or first_operator_key
        if expected != operator_public:
            raise OperatorKeyMismatch(
                f"the operator key in {ledger.settings.operator_key_path} is not the log's "
                "current operator key (the --vkey key, or the last operator.key_rotated entry's); "
                "put the operator's key there to continue the log; nothing was imported")
        if last_kind == SHARD_FROZEN:
            # A frozen shard restored stays frozen: the database refuses later entries, as the
            # source's did (ledger.shards.freeze), in the import's own transaction.
            seal(session)
    ledger.refresh_registry()
    root = ledger.get_root(size)
    if root != verified_root:
        # Cannot happen unless the file changed between the reads in a way that kept every leaf
        # equal; kept as the last guard, after the commit, with a message saying what to do.
        raise ExportChanged(
            f"the imported root {root.hex()} differs from the verified root "
            f"{verified_root.hex()}; drop this database and import again")
    try:
        note: str | None = ledger.checkpoint().note
        problem = None
    except LedgerError as exc:
        # The entries are in and verified; signing needs what an export does not hold (the
        # completeness index resolves version-2 link codes through kiroku_link_code).
        note, problem = None, f"{exc.code}: {exc}"
    return ImportReport(size, erased, root, note, problem)


@dataclass(frozen=True)
class _Line:
    index: int
    leaf: bytes
    leaf_json: dict[str, Any]
    payload: dict[str, Any] | None
    salt: str | None


def _read_lines(path: Path) -> Iterator[_Line]:
    with path.open("rb") as handle:
        for position, raw in enumerate(handle):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                leaf = base64.b64decode(line["leaf"], validate=True)
                body = json.loads(leaf)
                payload, salt = line.get("payload"), line.get("salt")
            except (ValueError, KeyError, TypeError) as exc:
                raise ExportChanged(f"line {position + 1} is not an export line ({exc}); "
                                    "nothing was imported") from None
            yield _Line(int(line["index"]), leaf, body, payload, salt)


def _chunks(lines: Iterator[_Line], size: int) -> Iterator[list[_Line]]:
    chunk: list[_Line] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


#: kind → (event class, aggregate class when the event creates its aggregate)
_EVENTS: dict[str, tuple[type[Logged], type[Aggregate] | None]] = {
    "provision": (Provision.Recorded, Provision),
    FLAG_KIND: (ProvisionFlagged, None),
    "agency.registered": (Agency.Registered, Agency),
    "agency.key_added": (Agency.KeyAdded, None),
    "agency.key_revoked": (Agency.KeyRevoked, None),
    "catalog.loaded": (Catalog.Loaded, Catalog),
    "catalog.replaced": (Catalog.Replaced, None),
    "operator.key_rotated": (OperatorKey.Rotated, OperatorKey),
    "proxy.registered": (Proxy.Registered, Proxy),
    "proxy.cancelled": (Proxy.Cancelled, None),
    NOTICE_KIND: (Notice.Issued, Notice),
    # Sharded logs (ledger.shards): a shard's first and last entries, each its own aggregate.
    SHARD_OPENED: (ShardStart.Opened, ShardStart),
    SHARD_FROZEN: (ShardEnd.Frozen, ShardEnd),
    # E-applications (ledger.applications): one aggregate per application, its steps after it.
    **{kind: (event, Application if kind == APPLICATION_SUBMITTED else None)
       for kind, event in APPLICATION_EVENTS.items()},
}


def _aggregate_id(line: _Line) -> uuid.UUID:
    """The aggregate an entry belongs to, as the appending code chose it (ledger.domain)."""
    kind, statement, payload = line.leaf_json["kind"], line.leaf_json, line.payload
    if kind == "provision":
        if payload is None:
            # An erased payload took the request id with it, so the provision's id cannot be
            # derived again; a fixed id per log index keeps the entry, and nothing reads an
            # erased provision by id (flags, views and proofs refuse or skip it).
            return uuid.uuid5(NAMESPACE, f"erased-provision:{line.index}")
        return provision_id(statement["agency"], payload["request_id"])
    if kind == APPLICATION_SUBMITTED and payload is None:
        # As an erased provision: the application id went with the payload; its later steps
        # (received, decided, forwarded) keep naming it and follow on their own.
        return uuid.uuid5(NAMESPACE, f"erased-application:{line.index}")
    assert payload is not None  # only provisions and applications are erased (ledger.retention)
    if kind == FLAG_KIND:
        return uuid.UUID(payload["provision"])
    if kind == "agency.registered":
        return agency_id(payload["code"])
    if kind in ("agency.key_added", "agency.key_revoked"):
        return agency_id(payload["agency"])
    if kind in ("catalog.loaded", "catalog.replaced"):
        return catalog_id()
    if kind == "operator.key_rotated":
        return operator_key_id(payload["key_id"])
    if kind == NOTICE_KIND:
        return notice_uuid(statement["agency"], payload["notice_id"])
    if kind in APPLICATION_EVENTS:
        return uuid.UUID(payload["application"])
    if kind in (SHARD_OPENED, SHARD_FROZEN):
        return shard_aggregate_id(kind, payload["origin"])
    return uuid.UUID(payload["proxy"])


def _events(ledger: Ledger, session: Any, chunk: list[_Line]
            ) -> tuple[list[StoredEvent], list[dict[str, Any]], list[bytes]]:
    """The stored events of a chunk of lines, their leaf bodies and the expected leaf bytes."""
    for line in chunk:
        kind = line.leaf_json.get("kind")
        if kind not in _EVENTS:
            raise RestoreError(f"entry {line.index}: kind {kind!r} cannot be imported")
        if line.payload is None and kind not in ("provision", APPLICATION_SUBMITTED):
            raise RestoreError(f"entry {line.index}: a {kind} entry without its payload cannot "
                               "be imported (only provision and application payloads are "
                               "erased)")
        if line.payload is not None:
            # The verifier checked this already; checked again because the file is read twice.
            try:
                verify_commitment(line.leaf_json, line.payload, line.salt or "")
            except LedgerError as exc:
                raise ExportChanged(f"entry {line.index}: {exc}; nothing was imported") from None
    ids = [_aggregate_id(line) for line in chunk]
    versions = _last_versions(ledger, session, {
        uid for uid, line in zip(ids, chunk) if _EVENTS[line.leaf_json["kind"]][1] is None})
    stored: list[StoredEvent] = []
    bodies: list[dict[str, Any]] = []
    for uid, line in zip(ids, chunk):
        event_class, created = _EVENTS[line.leaf_json["kind"]]
        statement = {k: v for k, v in line.leaf_json.items() if k not in _LEAF_ONLY}
        fields: dict[str, Any] = {
            "originator_id": uid,
            "timestamp": parse_time(line.leaf_json["logged_at"], field="logged_at"),
            "statement": statement, "signature": line.leaf_json["signature"],
            "payload": line.payload, "salt": line.salt,
            "logged_at": line.leaf_json["logged_at"]}
        if created is not None:
            fields["originator_version"] = Aggregate.INITIAL_VERSION
            fields["originator_topic"] = get_topic(created)
        else:
            # A flag on a provision whose payload was erased: the provision was its version 1
            # (the log refuses flags on unknown provisions) but sits under another id here.
            fields["originator_version"] = versions.get(uid, Aggregate.INITIAL_VERSION) + 1
        versions[uid] = fields["originator_version"]
        event = cast(Logged, event_class(**fields))
        stored.append(ledger.mapper.to_stored_event(event))
        bodies.append(event.log_entry())
    return stored, bodies, [line.leaf for line in chunk]


def _last_versions(ledger: Ledger, session: Any, ids: set[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not ids:
        return {}
    events = ledger.log.events_record_cls.__table__
    rows = session.execute(
        select(events.c.originator_id, func.max(events.c.originator_version))
        .where(events.c.originator_id.in_(sorted(ids))).group_by(events.c.originator_id)).all()
    return {row[0]: int(row[1]) for row in rows}


def backup_sqlite(database_url: str, out: Path) -> int:
    """Copy a live SQLite database to ``out`` with SQLite's online backup API; returns its size
    in bytes. Safe while the service appends (docs/backup.md): copying the file itself is not,
    since in WAL mode committed transactions may still sit in the ``-wal`` file.

    The copy is made in one step (``pages=-1``), which reads one consistent snapshot under a read
    transaction; in WAL mode that never blocks writers, and, unlike a stepwise copy, it cannot be
    restarted over and over by a busy writer. It is written beside ``out``, checked with
    ``PRAGMA integrity_check``, fsynced and renamed, so ``out`` is either complete or absent.
    """
    import os
    import sqlite3

    from sqlalchemy.engine import make_url

    from ledger.errors import ConfigurationError

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise ConfigurationError(
            f"{url.render_as_string(hide_password=True)} is not a SQLite file; back PostgreSQL up "
            "with pg_basebackup and WAL archiving (docs/backup.md)")
    if not Path(url.database).exists():
        raise ConfigurationError(f"no database at {url.database}")
    if out.exists():
        raise ConfigurationError(f"{out} exists; give a new file name")
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    source = sqlite3.connect(url.database, timeout=60)
    try:
        target = sqlite3.connect(partial)
        try:
            source.backup(target)
            verdict = target.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise RestoreError(f"the backup copy fails PRAGMA integrity_check: {verdict}")
            # A standalone file: fold any WAL content in and leave no -wal/-shm beside it.
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(out)
        directory = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    return out.stat().st_size
