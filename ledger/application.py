"""The ledger application: commands that append signed statements, queries over the log.

Layering follows eventsourcing: domain (ledger.domain) → application (this module) →
persistence (ledger.storage). Commands validate a whole batch before anything is written and
append it in one transaction; a refused statement leaves the log untouched.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

import orjson
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, JSONTranscoder, StoredEvent
from eventsourcing.utils import get_topic
from sqlalchemy import Engine, select

from ledger import checkpoints as cps
from ledger.catalog import Catalog as CatalogData
from ledger.completeness import CompletenessIndex
from ledger.config import Settings
from ledger.domain import (
    OPERATOR,
    REGISTRATION_EVENTS,
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
from ledger.encoding import b64encode, format_time, now_utc, parse_time
from ledger.errors import (
    AlreadyRegistered,
    BatchRejected,
    BatchTooLarge,
    DuplicateConflict,
    InconsistentCheckpoint,
    IntegrityFailure,
    InvalidRequest,
    InvalidRevocation,
    MalformedStatement,
    NotFound,
    OperatorKeyError,
    StatementRejected,
    SubmitterNotParty,
    UnknownAgency,
    UnknownKey,
)
from ledger.group_commit import GroupCommit
from ledger.keys import (
    RETIRING_KEY_FILE,
    SigningKey,
    check_statement_key,
    possession_message,
    raw_public_key,
    statement_key_id,
)
from ledger.linkcodes import LinkCodeRegistry
from ledger.merkle import StoredTree
from ledger.provision import CLOCK_SKEW, ProvisionPayload
from ledger.registry import Registry
from ledger.schema import checkpoint as checkpoint_table
from ledger.schema import log_entry
from ledger.signing import SignatureChecks, check_shape, sign_statement, verify_commitment
from ledger.storage import AppendedEntry, KirokuFactory, LogRecorder

MAX_BATCH = 10_000


def provision_state(timestamp: datetime, submission: dict[str, Any], logged_at: str) -> bytes:
    """The stored state of a Provision.Recorded event, byte for byte what eventsourcing's
    mapper and JSONTranscoder write for it (its fields in declaration order, the timestamp as
    the transcoder's datetime_iso object), for a submission that passed check_shape and
    ProvisionPayload.parse (JSON types only, so the transcoder's object hook is never needed)."""
    # orjson writes what json.JSONEncoder(separators=(",", ":"), ensure_ascii=False) writes for
    # such values, keys in insertion order (tests/ledger/test_stored_provision.py compares).
    return orjson.dumps({
        "timestamp": {"_type_": "datetime_iso", "_data_": timestamp.isoformat()},
        "originator_topic": _PROVISION_TOPIC, "statement": submission["statement"],
        "signature": submission["signature"], "payload": submission["payload"],
        "salt": submission["salt"], "logged_at": logged_at})

_REGISTRATION_TOPICS = [get_topic(cls) for cls in REGISTRATION_EVENTS.values()]
_PROVISION_TOPIC = get_topic(Provision)
_RECORDED_TOPIC = get_topic(Provision.Recorded)  # the stored event's topic
_STALE_REGISTRY_SIGNS = (UnknownAgency, UnknownKey, MalformedStatement)


@dataclass(frozen=True)
class Receipt:
    """Proof of acceptance: where the statement sits in the log and its exact leaf."""

    id: UUID
    index: int
    leaf: bytes
    leaf_hash: bytes

    @property
    def entry(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.leaf))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "index": self.index,
            "leaf_hash": b64encode(self.leaf_hash),
            "leaf": b64encode(self.leaf),
            "entry": self.entry,
        }


@dataclass(frozen=True)
class _Checked:
    """A statement that passed every check that needs no lock."""

    position: int
    id: UUID
    submission: dict[str, Any]
    time: datetime
    entry: dict[str, Any]  # the statement part of its leaf (Logged.log_entry)
    stored: StoredEvent  # prepared while signatures are being checked


class Ledger(Application[UUID]):
    """kiroku's event-sourced ledger: ``Ledger(settings, operator_key)`` opens it and re-verifies
    its latest checkpoint before anything is served or appended."""

    name = "Ledger"

    def __init__(self, settings: Settings, operator_key: SigningKey, *, check: bool = True) -> None:
        self.settings = settings
        self.operator_key = operator_key
        # The previous operator key while it co-signs checkpoints (docs/key-rotation.md).
        self.retiring_key: SigningKey | None = None
        super().__init__(
            env={
                "PERSISTENCE_MODULE": get_topic(KirokuFactory),
                "SQLALCHEMY_URL": settings.database_url,
                "CREATE_TABLE": "no",
            }
        )
        self.registry = Registry()
        self._group_commit = GroupCommit(self.append_each)
        self._refreshed_at = 0.0
        self.refresh_registry()
        if check:
            self.verify_latest_checkpoint()

    @property
    def log(self) -> LogRecorder:  # type: ignore[override]
        return cast(LogRecorder, self.recorder)

    @functools.cached_property
    def embedded(self) -> bool:
        """The log is kept in an embedded SQLite database (no database server)."""
        engine = self.log.datastore.engine
        return engine is not None and engine.dialect.name == "sqlite"

    def close(self) -> None:
        engine = self.log.datastore.engine
        super().close()
        if isinstance(engine, Engine):
            engine.dispose()

    # Registry -------------------------------------------------------------------------------
    def refresh_registry(self, *, force: bool = True, top: int | None = None) -> None:
        """Apply registration entries committed since the last refresh (in log order).

        Unforced refreshes run at most once a second: they only speed up checks that are
        repeated under the write lock (``force=True``) before anything is appended.
        """
        now = time.monotonic()
        if not force and now - self._refreshed_at < 1.0:
            return
        top, notifications = self.log.notifications_after(
            self.registry.position, _REGISTRATION_TOPICS, top
        )
        rotated = False
        for notification in notifications:
            event = cast(Logged, self.mapper.to_domain_event(notification))
            assert event.payload is not None
            self.registry.apply(event.statement["kind"], event.payload, event.statement["time"])
            rotated = rotated or event.statement["kind"] == "operator.key_rotated"
        self.registry.position = max(self.registry.position, top)
        self._refreshed_at = now
        if rotated:
            self._follow_operator_key()

    # Operator keys (docs/key-rotation.md) ------------------------------------------------------
    def _follow_operator_key(self) -> None:
        """After a rotation entry (perhaps written by another process), sign with the key the
        log names as current: from the key directory when this process holds the old one."""
        current = self.registry.operator_key_id
        if current is None or current == self.operator_key.key_id:
            self._load_retiring_key()
            return
        path = self.settings.operator_key_path
        if path.exists():
            key = SigningKey.load(path)
            if key.key_id == current:
                if self.operator_key.key_id in self.registry.operator_keys:
                    self.retiring_key = self.operator_key
                self.operator_key = key
        self._load_retiring_key()

    def _load_retiring_key(self) -> None:
        if self.retiring_key is not None:
            return
        path = self.settings.key_dir / RETIRING_KEY_FILE
        if path.exists():
            key = SigningKey.load(path)
            known = self.registry.operator_keys.get(key.key_id)
            if known is not None and known.retired_at is not None:
                self.retiring_key = key

    def co_signing_keys(self, at: datetime | None = None) -> list[SigningKey]:
        """Retired operator keys this process holds that are still in their window at ``at``."""
        moment = at or now_utc()
        window = {k.key_id for k in self.registry.co_signing_keys(moment)}
        held = self.retiring_key
        return [held] if held is not None and held.key_id in window else []

    @property
    def operator_public_keys(self) -> list[bytes]:
        """Every operator public key the log knows (current first): checkpoints signed before a
        rotation carry only an older key's signature and stay valid."""
        keys = [self.operator_key.public_bytes]
        keys += [k.public_key for k in self.registry.operator_keys.values()
                 if k.public_key not in keys]
        return keys

    @property
    def vkeys(self) -> list[str]:
        """The note vkeys a verifier may hold now: the current key's, then a retiring key's
        while checkpoints still carry its signature."""
        from ledger.keys import vkey

        keys = [self.vkey]
        for state in self.registry.co_signing_keys(now_utc()):
            keys.append(vkey(self.origin, state.public_key))
        return keys

    def _current_operator_key(self) -> SigningKey:
        """The key to sign with now: after another process rotated, the new key from the key
        file (``kiroku operator rotate-key`` writes it); OperatorKeyError while it is not there."""
        current = self.registry.operator_key_id
        if current is not None and current != self.operator_key.key_id:
            self._follow_operator_key()
        self._check_operator_key_current(self.operator_key.key_id)
        return self.operator_key

    def _check_operator_key_current(self, signed_with: str) -> None:
        """Registrar entries after a rotation must be signed by the new key (the verifier
        refuses the retired one); refuse when another process rotated meanwhile."""
        current = self.registry.operator_key_id
        if current is not None and current != signed_with:
            raise OperatorKeyError(
                f"the log's operator key is now {current}, this process signs with {signed_with}; "
                f"restart it with the new key in {self.settings.operator_key_path}")

    def rotate_operator_key(self, new_key: SigningKey, *, window: timedelta) -> Receipt:
        """Append ``operator.key_rotated``: signed by the current key, with the new key's proof
        of possession; from this entry on registrar entries are signed by the new key, and
        checkpoints by both until ``valid_from + window``."""
        self.refresh_registry()
        if window < timedelta(0):
            raise InvalidRequest("the rotation window cannot be negative")
        now = now_utc()
        if self.registry.co_signing_keys(now):
            raise OperatorKeyError("a rotation window is still open; rotate again after it ends")
        old = self._current_operator_key()
        if new_key.key_id == old.key_id or new_key.key_id in self.registry.operator_keys:
            raise OperatorKeyError(f"key {new_key.key_id} was an operator key already; use a new one")
        payload: dict[str, Any] = {
            "key_id": new_key.key_id, "public_key": b64encode(new_key.public_bytes),
            "previous_public_key": b64encode(old.public_bytes),
            "valid_from": format_time(now), "retired_at": format_time(now + window)}
        payload["possession"] = b64encode(new_key.sign(possession_message(payload)))
        signed = self._operator_sign("operator.key_rotated", payload, now)
        aggregate = OperatorKey._create(OperatorKey.Rotated, id=operator_key_id(new_key.key_id),
                                        **self._fields(signed))

        def still_current(top: int) -> None:
            self.refresh_registry(top=top)
            self._check_operator_key_current(old.key_id)

        receipt = self._save([aggregate], precommit=still_current)[0]
        self.refresh_registry()
        self.operator_key, self.retiring_key = new_key, old
        return receipt

    # Registrar commands (signed by the operator) ----------------------------------------------
    def register_agency(
        self,
        code: str,
        *,
        name_ja: str,
        name_en: str,
        kind: str,
        roles: Sequence[str],
        registered_at: datetime | None = None,
    ) -> Receipt:
        self.refresh_registry()
        if code in self.registry.agencies:
            raise AlreadyRegistered(f"agency {code!r} is already registered")
        unknown = set(roles) - set(self.registry.catalog.roles if self.registry.catalog else ())
        if unknown:
            raise MalformedStatement(f"roles not in the legal-basis catalog: {sorted(unknown)}")
        payload = {"code": code, "name_ja": name_ja, "name_en": name_en, "kind": kind,
                   "roles": sorted(roles)}
        signed = self._operator_sign("agency.registered", payload, registered_at)
        agency = Agency._create(Agency.Registered, id=agency_id(code), **self._fields(signed))

        def still_new(top: int) -> None:
            self.refresh_registry(top=top)
            if code in self.registry.agencies:
                raise AlreadyRegistered(f"agency {code!r} is already registered")

        return self._save([agency], precommit=still_new)[0]

    def add_agency_key(
        self, code: str, public_key: bytes, *, valid_from: datetime | None = None
    ) -> Receipt:
        self.refresh_registry()
        self.registry.agency(code)
        check_statement_key(public_key)
        key_id = statement_key_id(public_key)
        if key_id in self.registry.keys:
            raise AlreadyRegistered(f"key {key_id} is already registered")
        payload = {"agency": code, "key_id": key_id, "public_key": b64encode(public_key),
                   "valid_from": format_time(valid_from or now_utc())}
        return self._agency_event(code, Agency.KeyAdded, "agency.key_added", payload)

    def revoke_agency_key(self, code: str, key_id: str, *, revoked_at: datetime | None = None,
                          past_limit: timedelta | None = None) -> Receipt:
        """Revoke ``key_id`` from ``revoked_at`` (default now; later: a planned end).

        It may not precede the key's valid_from, nor come after a revocation already in force
        (it would change nothing); an earlier one brings a planned end forward. With
        ``past_limit`` (the CLI passes CLOCK_SKEW) it may lie at most that far in the past: a
        revocation governs only entries logged after it (docs/log-format.md rule 4), so an
        earlier time cannot un-accept what the log already holds (docs/key-rotation.md).
        """
        self.refresh_registry()
        at = revoked_at or now_utc()
        self._check_revocation(code, key_id, at, now_utc(), past_limit)
        payload = {"agency": code, "key_id": key_id, "revoked_at": format_time(at)}
        return self._agency_event(code, Agency.KeyRevoked, "agency.key_revoked", payload)

    def rotate_agency_key(self, code: str, public_key: bytes, *, old_key_id: str | None = None,
                          overlap: timedelta = timedelta(days=7),
                          valid_from: datetime | None = None) -> tuple[Receipt, Receipt]:
        """Add ``public_key`` for ``code`` from ``valid_from`` (default now) and revoke the old
        key at ``valid_from + overlap``, in one transaction: during the overlap statements
        signed by either key are accepted, after it only the new key's."""
        self.refresh_registry()
        agency = self.registry.agency(code)
        if overlap < timedelta(0):
            raise InvalidRequest("the overlap cannot be negative")
        now = now_utc()
        if old_key_id is None:
            live = [k for k in agency.keys.values() if k.revoked_at is None]
            if len(live) != 1:
                raise InvalidRequest(
                    f"agency {code!r} has {len(live)} keys without a revocation; name the one "
                    "to retire (--old KEY_ID)")
            old_key_id = live[0].key_id
        check_statement_key(public_key)
        new_id = statement_key_id(public_key)
        if new_id in self.registry.keys:
            raise AlreadyRegistered(f"key {new_id} is already registered")
        since = valid_from or now
        self._check_revocation(code, old_key_id, since + overlap, now, CLOCK_SKEW)
        added = {"agency": code, "key_id": new_id, "public_key": b64encode(public_key),
                 "valid_from": format_time(since)}
        revoked = {"agency": code, "key_id": old_key_id,
                   "revoked_at": format_time(since + overlap)}
        aggregate = cast(Agency, self.repository.get(agency_id(code)))
        aggregate.trigger_event(Agency.KeyAdded, **self._fields(
            self._operator_sign("agency.key_added", added, None)))
        aggregate.trigger_event(Agency.KeyRevoked, **self._fields(
            self._operator_sign("agency.key_revoked", revoked, None)))

        def still_valid(top: int) -> None:
            self.refresh_registry(top=top)
            self._check_operator_key_current(self.operator_key.key_id)
            if new_id in self.registry.keys:
                raise AlreadyRegistered(f"key {new_id} is already registered")
            self._check_revocation(code, old_key_id, since + overlap, now, CLOCK_SKEW)

        first, second = self._save([aggregate], precommit=still_valid)
        return first, second

    def _check_revocation(self, code: str, key_id: str, at: datetime, now: datetime,
                          past_limit: timedelta | None) -> None:
        key = self.registry.keys.get(key_id)
        if key is None or key.agency != code:
            raise UnknownKey(f"agency {code!r} has no key {key_id!r}")
        if at < key.valid_from:
            raise InvalidRevocation(
                f"key {key_id} is valid from {format_time(key.valid_from)}; a revocation at "
                f"{format_time(at)} would precede it")
        if past_limit is not None and at < now - past_limit:
            raise InvalidRevocation(
                f"revocation time {format_time(at)} is more than {int(past_limit.total_seconds())}"
                " s in the past: a revocation applies to entries logged after it, so give now "
                "(the default) or a later time; see docs/key-rotation.md for entries already "
                "logged")
        if key.revoked_at is not None and key.revoked_at <= at:
            raise InvalidRevocation(
                f"key {key_id} is already revoked from {format_time(key.revoked_at)}")

    def load_catalog(self, catalog: CatalogData) -> Receipt | None:
        """Load (or replace) the legal-basis catalog; None when this version is already in force."""
        self.refresh_registry()
        if self.registry.catalog_version == catalog.version:
            return None
        payload = catalog.to_payload()
        if self.registry.catalog is None:
            signed = self._operator_sign("catalog.loaded", payload, None)
            aggregate = Catalog._create(Catalog.Loaded, id=catalog_id(), **self._fields(signed))
        else:
            signed = self._operator_sign("catalog.replaced", payload, None)
            aggregate = self.repository.get(catalog_id())
            aggregate.trigger_event(Catalog.Replaced, **self._fields(signed))
        return self._save([aggregate])[0]

    def _agency_event(self, code: str, event: type[Logged], kind: str, payload: dict[str, Any]
                      ) -> Receipt:
        agency = cast(Agency, self.repository.get(agency_id(code)))
        signed = self._operator_sign(kind, payload, None)
        signer = signed["statement"]["key_id"]  # the key in force when it was signed
        agency.trigger_event(event, **self._fields(signed))

        def registry_current(top: int) -> None:
            self.refresh_registry(top=top)
            self._check_operator_key_current(signer)
            if kind == "agency.key_revoked":
                key = self.registry.keys[payload["key_id"]]
                at = parse_time(payload["revoked_at"], field="revoked_at")
                if key.revoked_at is not None and key.revoked_at <= at:
                    raise InvalidRevocation(
                        f"key {key.key_id} is already revoked from {format_time(key.revoked_at)}")

        return self._save([agency], precommit=registry_current)[0]

    def _operator_sign(self, kind: str, payload: dict[str, Any], time: datetime | None
                       ) -> dict[str, Any]:
        key = self._current_operator_key()
        return sign_statement(payload, kind=kind, agency=OPERATOR, key=key, time=time)

    @staticmethod
    def _fields(signed: dict[str, Any]) -> dict[str, Any]:
        return {"statement": signed["statement"], "signature": signed["signature"],
                "payload": signed["payload"], "salt": signed["salt"],
                "logged_at": format_time(now_utc())}

    # Provisions -----------------------------------------------------------------------------
    def append(self, submission: Any) -> Receipt:
        """Append one signed provision statement; the same statement again gets the same receipt.

        Concurrent callers (threads of a server) are committed together: one transaction and one
        fsync for all statements waiting at that moment, each still accepted or refused on its own.
        """
        result = self._group_commit.submit(submission)
        if isinstance(result, StatementRejected):
            raise result
        return result

    def append_each(self, submissions: Sequence[Any]) -> list[Receipt | StatementRejected]:
        """Append independent statements in one transaction: each is accepted or refused alone."""
        if not submissions:
            return []
        self.refresh_registry(force=False)
        results = self._append_retrying(submissions, strict=False)
        stale = [i for i, r in enumerate(results) if isinstance(r, _STALE_REGISTRY_SIGNS)]
        if stale:
            # Another process may have registered the agency or key a moment ago.
            self.refresh_registry(force=True)
            again = self._append_retrying([submissions[i] for i in stale], strict=False)
            for i, result in zip(stale, again):
                results[i] = result
        return results

    def append_batch(self, submissions: Sequence[Any]) -> list[Receipt]:
        """Append statements all-or-nothing, in order. Raises BatchRejected listing every refusal."""
        if len(submissions) > MAX_BATCH:
            raise BatchTooLarge(f"a batch holds at most {MAX_BATCH} statements, got {len(submissions)}")
        if not submissions:
            return []
        self.refresh_registry(force=False)
        try:
            results = self._append_retrying(submissions, strict=True)
        except BatchRejected as exc:
            if not any(isinstance(e, _STALE_REGISTRY_SIGNS) for _, e in exc.errors):
                raise
            self.refresh_registry(force=True)
            results = self._append_retrying(submissions, strict=True)
        return cast(list[Receipt], results)

    def _append_retrying(self, submissions: Sequence[Any], *, strict: bool
                         ) -> list[Receipt | StatementRejected]:
        # Re-submissions are rare, so the first attempt inserts optimistically; the unique
        # (aggregate id, version) index refuses a request id seen before, and the next attempt
        # looks the earlier statements up to answer with their receipts (or a conflict).
        for attempt in range(3):
            try:
                return self._append_checked(submissions, lookup=attempt > 0, strict=strict)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _append_checked(self, submissions: Sequence[Any], *, lookup: bool, strict: bool
                        ) -> list[Receipt | StatementRejected]:
        """Validate, then append what passed. ``strict``: any refusal refuses everything."""
        now = now_utc()
        stamp = format_time(now)  # logged_at of everything this call appends
        errors: dict[int, StatementRejected] = {}
        checked: list[_Checked] = []
        seen: dict[UUID, int] = {}
        prechecked: list[tuple[int, Any, ProvisionPayload]] = []
        content: list[_Checked | StatementRejected] = []
        # Signatures are checked on other cores as soon as each statement's key is known, while
        # this thread goes on with the content checks; a bad signature still takes precedence
        # over whatever the content check found.
        signatures = SignatureChecks(parallel=len(submissions) >= 32)
        self.link_codes.prefetch(submissions)  # one registry read for the batch's link codes
        for position, submission in enumerate(submissions):
            try:
                payload, moment, key = self._precheck(submission, now)
            except StatementRejected as exc:
                errors[position] = exc
                continue
            signatures.add(submission["statement"], submission["signature"], key)
            prechecked.append((position, submission, payload))
            try:
                content.append(self._postcheck(position, submission, payload, moment, stamp))
            except StatementRejected as exc:
                content.append(exc)
        for (position, submission, payload), bad, outcome in zip(
                prechecked, signatures.results(), content):
            try:
                if bad is not None:
                    raise bad
                if isinstance(outcome, StatementRejected):
                    raise outcome
                item = outcome
                if item.id in seen:
                    first = checked[seen[item.id]].submission
                    if (first["statement"], first["signature"]) != (
                        submission["statement"], submission["signature"]):
                        raise DuplicateConflict(
                            f"request id {payload.request_id!r} appears twice "
                            "with different statements"
                        )
                else:
                    seen[item.id] = len(checked)
                checked.append(item)
            except StatementRejected as exc:
                errors[position] = exc
        existing = self._existing_receipts([c.id for c in checked]) if lookup and checked else {}
        for item in checked:
            found = existing.get(item.id)
            if found is not None and (found[0], found[1]) != (
                item.submission["statement"], item.submission["signature"]):
                errors[item.position] = DuplicateConflict(
                    f"request id {item.submission['payload']['request_id']!r} of agency "
                    f"{item.submission['statement']['agency']!r} was already recorded with a "
                    f"different statement (index {found[2].index}); use a new request id")
        if errors and strict:
            raise BatchRejected(sorted(errors.items()))
        checked = [item for item in checked if item.position not in errors]

        receipts: dict[UUID, Receipt] = {uid: found[2] for uid, found in existing.items()}
        fresh: list[_Checked] = []
        taken: set[UUID] = set(existing)
        for item in checked:
            if item.id not in taken:
                taken.add(item.id)
                fresh.append(item)
        while fresh:
            try:
                for receipt in self._save_provisions(fresh, now):
                    receipts[receipt.id] = receipt
                break
            except BatchRejected as late:
                # A key was revoked by another writer between our checks and the lock.
                if strict:
                    raise
                for position, error in late.errors:
                    errors[position] = error
                fresh = [item for item in fresh if item.position not in errors]
        results: list[Receipt | StatementRejected] = []
        by_position = {item.position: item for item in checked}
        for position in range(len(submissions)):
            if position in errors:
                results.append(errors[position])
            else:
                results.append(receipts[by_position[position].id])
        return results

    def _save_provisions(self, fresh: list[_Checked], logged_at: datetime) -> list[Receipt]:
        def keys_still_valid(top: int) -> None:
            self.refresh_registry(top=top)
            late = []
            for item in fresh:
                statement = item.submission["statement"]
                try:
                    self.registry.key_for(statement["agency"], statement["key_id"], item.time,
                                          logged_at)
                except StatementRejected as exc:
                    late.append((item.position, exc))
            if late:
                raise BatchRejected(late)

        appended: list[AppendedEntry] = []
        self.recorder.insert_events([item.stored for item in fresh],
                                    log_entries=[item.entry for item in fresh],
                                    appended=appended, precommit=keys_still_valid)
        return [Receipt(item.id, a.index, a.leaf, a.leaf_hash) for item, a in zip(fresh, appended)]

    @staticmethod
    def _now_naive() -> datetime:
        return Provision.Recorded.create_timestamp()

    def _precheck(self, submission: Any, now: datetime
                  ) -> tuple[ProvisionPayload, datetime, bytes]:
        """Checks before the signature: shape, key validity, times. Returns the public key."""
        check_shape(submission)
        statement = submission["statement"]
        if statement["kind"] != "provision":
            raise MalformedStatement(
                f"statement.kind {statement['kind']!r} cannot be appended by an agency; "
                "use 'provision'"
            )
        payload = ProvisionPayload.parse(submission["payload"], version=statement["v"])
        submitter = statement["agency"]
        moment = parse_time(statement["time"], field="statement.time")
        agency = self.registry.agency(submitter)
        key = self.registry.key_for(submitter, statement["key_id"], moment, now)
        payload.check_times(moment, now, agency.registered_at)
        return payload, moment, key.public_key

    def _postcheck(self, position: int, submission: Any, payload: ProvisionPayload,
                   moment: datetime, stamp: str) -> _Checked:
        """Checks of a signed statement's content: commitment, parties, legal basis."""
        statement = submission["statement"]
        verify_commitment(statement, submission["payload"], submission["salt"], validated=True)
        submitter = statement["agency"]
        if submitter not in (payload.requester, payload.provider):
            raise SubmitterNotParty(
                f"agency {submitter!r} is neither the requester ({payload.requester!r}) nor the "
                f"provider ({payload.provider!r}) of this provision"
            )
        requester = self.registry.agency(payload.requester)
        provider = self.registry.agency(payload.provider)
        if payload.version == 2:
            assert payload.requester_code is not None and payload.provider_code is not None
            self.link_codes.resolve(payload.requester, payload.requester_code,
                                    payload.provider, payload.provider_code)
        if payload.application is not None:  # docs/applications.md
            from ledger.applications import check_provision

            check_provision(self, payload)
        if self.registry.catalog is None:
            raise MalformedStatement("no legal-basis catalog is loaded yet")
        self.registry.catalog.check(payload.basis, payload.affair, requester.roles,
                                    provider.roles, payload.items)
        # Each provision is a new aggregate with exactly one event, so its stored form is made
        # directly (the bytes the library's mapper writes for Provision.Recorded, see
        # provision_state), while other cores still check signatures: building event and
        # aggregate objects nobody reads cost a fifth of a batch.
        uid = provision_id(submitter, payload.request_id)
        entry = {**statement, "signature": submission["signature"], "logged_at": stamp}
        if self._plain_mapper:
            stored = StoredEvent(originator_id=uid, originator_version=Provision.INITIAL_VERSION,
                                 topic=_RECORDED_TOPIC, state=provision_state(
                                     self._now_naive(), submission, stamp))
        else:
            stored = self.mapper.to_stored_event(Provision.Recorded(  # type: ignore[call-arg]
                originator_id=uid, originator_version=Provision.INITIAL_VERSION,
                timestamp=self._now_naive(), originator_topic=_PROVISION_TOPIC,
                statement=statement, signature=submission["signature"],
                payload=submission["payload"], salt=submission["salt"], logged_at=stamp))
        return _Checked(position, uid, submission, moment, entry, stored)

    @functools.cached_property
    def _plain_mapper(self) -> bool:
        """The mapper writes plain JSON (no compression or encryption configured)."""
        return (self.mapper.compressor is None and self.mapper.cipher is None
                and isinstance(self.mapper.transcoder, JSONTranscoder))

    def _existing_receipts(self, ids: Sequence[UUID]
                           ) -> dict[UUID, tuple[dict[str, Any], str, Receipt]]:
        table = self.log.events_record_cls.__table__
        found: dict[UUID, tuple[dict[str, Any], str, Receipt]] = {}
        unique = list(dict.fromkeys(ids))
        with self.log.transaction(commit=False) as session:
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                rows = session.execute(
                    select(table.c.id, table.c.originator_id, table.c.originator_version,
                           table.c.topic, table.c.state, log_entry.c.idx, log_entry.c.leaf,
                           log_entry.c.leaf_hash)
                    .join(log_entry, log_entry.c.notification_id == table.c.id)
                    .where(table.c.originator_id.in_(chunk), table.c.originator_version == 1)
                ).all()
                for row in rows:
                    event = cast(Logged, self.mapper.to_domain_event(StoredEvent(
                        originator_id=row.originator_id, originator_version=row.originator_version,
                        topic=row.topic, state=bytes(row.state))))
                    found[row.originator_id] = (event.statement, event.signature, Receipt(
                        row.originator_id, int(row.idx), bytes(row.leaf), bytes(row.leaf_hash)))
        return found

    def _save(self, aggregates: Sequence[Any], precommit: Any = None) -> list[Receipt]:
        events = [event for aggregate in aggregates for event in aggregate.pending_events]
        entries = [cast(Logged, event).log_entry() for event in events]
        appended: list[AppendedEntry] = []
        self.save(*aggregates, log_entries=entries, appended=appended, precommit=precommit)
        if not all(isinstance(event, Provision.Recorded) for event in events):
            self._refreshed_at = 0.0  # our own registration: read it back on the next check
        return [Receipt(event.originator_id, a.index, a.leaf, a.leaf_hash)
                for event, a in zip(events, appended)]

    # Flags and proxies (ledger.flags, ledger.proxies) -----------------------------------------
    def append_flag(self, submission: Any) -> Receipt:
        """Append one signed ``provision.flagged`` statement (不開示, 自己情報提供不可, delayed
        disclosure); the receipt's id is the flagged provision's."""
        from ledger.flags import append_flag

        return append_flag(self, submission)

    def get_flag_history(self, provision: UUID) -> Any:
        """The provision's flag history (ledger.flags.FlagHistory), or None if unknown/erased."""
        from ledger.flags import get_history

        return get_history(self, provision)[0]

    def register_proxy(self, principal: str, holder: str, relationship: str) -> Any:
        """Register ``holder`` as proxy (代理人) of ``principal``: (registration, receipt)."""
        from ledger.proxies import register_proxy

        return register_proxy(self, principal, holder, relationship)

    def cancel_proxy(self, registration_id: str, *, by: str, reason: str,
                     principal: str | None = None) -> Receipt:
        from ledger.proxies import cancel_proxy

        return cancel_proxy(self, registration_id, by=by, reason=reason, principal=principal)

    # Queries --------------------------------------------------------------------------------
    def tree_size(self) -> int:
        return self.log.tree_size()

    def get_root(self, size: int | None = None) -> bytes:
        current = self.tree_size()
        size = current if size is None else size
        if not 0 <= size <= current:
            raise InvalidRequest(f"tree size {size} is out of range 0..{current}")
        return StoredTree(self.log, size).root()

    def get_leaf(self, index: int) -> tuple[bytes, bytes]:
        with self.log.transaction(commit=False) as session:
            row = session.execute(
                select(log_entry.c.leaf, log_entry.c.leaf_hash).where(log_entry.c.idx == index)
            ).first()
        if row is None:
            raise NotFound(f"no log entry at index {index}")
        return bytes(row.leaf), bytes(row.leaf_hash)

    def prove_inclusion(self, index: int, size: int | None = None) -> dict[str, Any]:
        """Inclusion proof JSON (docs/log-format.md), RFC 9162 §2.1.3.1.

        One read transaction: the tree size, then the leaf hash and every stored subtree root
        the root and the path need, in one query."""
        with self.log.transaction(commit=False) as session:
            current = LogRecorder.size_in(session)
            size = current if size is None else size
            if not 0 < size <= current:
                raise InvalidRequest(f"tree size must be in 1..{current}, got {size}")
            if not 0 <= index < size:
                raise InvalidRequest(f"leaf index must be in 0..{size - 1}, got {index}")
            digest, root, path = StoredTree(LogRecorder.reader(session), size).inclusion_bundle(
                index, size)
        return {"leaf_index": index, "tree_size": size, "leaf_hash": b64encode(digest),
                "root_hash": b64encode(root), "proof": [b64encode(h) for h in path]}

    def prove_inclusions(self, indices: Sequence[int], size: int) -> dict[int, dict[str, Any]]:
        """Inclusion proof JSON for several leaves in one tree, sharing node reads (a page of
        records checked against one checkpoint costs one query for all their paths)."""
        current = self.tree_size()
        if not 0 < size <= current:
            raise InvalidRequest(f"tree size must be in 1..{current}, got {size}")
        wanted = sorted(set(indices))
        if wanted and not 0 <= wanted[0] <= wanted[-1] < size:
            raise InvalidRequest(f"leaf indices must be in 0..{size - 1}")
        tree = StoredTree(self.log, size)
        root = b64encode(tree.root())
        digests = {i: leaf_hash for i, (_, leaf_hash) in self.get_leaves(wanted).items()}
        return {i: {"leaf_index": i, "tree_size": size, "leaf_hash": b64encode(digests[i]),
                    "root_hash": root, "proof": [b64encode(h) for h in path]}
                for i, path in tree.inclusion_proofs(wanted, size).items()}

    def get_leaves(self, indices: Sequence[int]) -> dict[int, tuple[bytes, bytes]]:
        """(leaf bytes, leaf hash) of each index present, in one query."""
        if not indices:
            return {}
        with self.log.transaction(commit=False) as session:
            rows = session.execute(
                select(log_entry.c.idx, log_entry.c.leaf, log_entry.c.leaf_hash)
                .where(log_entry.c.idx.in_(sorted(set(indices))))
            ).all()
        return {int(r.idx): (bytes(r.leaf), bytes(r.leaf_hash)) for r in rows}

    def prove_consistency(self, old: int, new: int | None = None) -> dict[str, Any]:
        """Consistency proof JSON (docs/log-format.md), RFC 9162 §2.1.4.1 (one read
        transaction, one query for the nodes)."""
        with self.log.transaction(commit=False) as session:
            current = LogRecorder.size_in(session)
            new = current if new is None else new
            if not 0 < old <= new <= current:
                raise InvalidRequest(
                    f"need 0 < old <= new <= {current}, got old={old} new={new}")
            old_root, new_root, proof = StoredTree(
                LogRecorder.reader(session), new).consistency_bundle(old, new)
        return {"old_size": old, "new_size": new, "old_root": b64encode(old_root),
                "new_root": b64encode(new_root), "proof": [b64encode(h) for h in proof]}

    def export(self, start: int = 0, end: int | None = None) -> Iterator[dict[str, Any]]:
        """Export lines (docs/log-format.md) in log order, read in bounded chunks."""
        end = self.tree_size() if end is None else end
        chunk = 2000
        for low in range(start, end, chunk):
            high = min(low + chunk, end)
            yield from self._export_where((log_entry.c.idx >= low) & (log_entry.c.idx < high))

    def export_entries(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Export lines of the given indices (those present), in log order, in one query."""
        if not indices:
            return []
        return list(self._export_where(log_entry.c.idx.in_(sorted(set(indices)))))

    def _export_where(self, condition: Any) -> Iterator[dict[str, Any]]:
        table = self.log.events_record_cls.__table__
        with self.log.transaction(commit=False) as session:
            rows = session.execute(
                select(log_entry.c.idx, log_entry.c.leaf, log_entry.c.leaf_hash,
                       table.c.originator_id, table.c.originator_version, table.c.topic,
                       table.c.state)
                .join(table, table.c.id == log_entry.c.notification_id)
                .where(condition)
                .order_by(log_entry.c.idx)
            ).all()
        for row in rows:
            event = cast(Logged, self.mapper.to_domain_event(StoredEvent(
                originator_id=row.originator_id, originator_version=row.originator_version,
                topic=row.topic, state=bytes(row.state))))
            yield {"index": int(row.idx), "leaf": b64encode(bytes(row.leaf)),
                   "leaf_hash": b64encode(bytes(row.leaf_hash)), "payload": event.payload,
                   "salt": event.salt, "erased": event.payload is None}

    # Checkpoints ----------------------------------------------------------------------------
    @property
    def origin(self) -> str:
        return self.settings.origin

    def latest_checkpoint(self) -> cps.Checkpoint | None:
        with self.log.transaction(commit=False) as session:
            row = session.execute(
                select(checkpoint_table.c.note).order_by(checkpoint_table.c.id.desc()).limit(1)
            ).first()
        if row is None:
            return None
        return cps.open_own(row.note, self.origin, self.operator_public_keys)

    def list_checkpoints(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.log.transaction(commit=False) as session:
            rows = session.execute(
                select(checkpoint_table).order_by(checkpoint_table.c.id.desc()).limit(limit)
            ).all()
        return [{"tree_size": int(r.tree_size), "root_hash": b64encode(bytes(r.root_hash)),
                 "signed_at": r.signed_at, "note": r.note} for r in rows]

    def checkpoint(self) -> cps.Checkpoint:
        """Sign and store a checkpoint of the current tree (or return the latest if unchanged).

        Refuses (InconsistentCheckpoint) when the stored tree no longer reproduces the root the
        operator signed last, so the operator never signs two inconsistent checkpoints.
        """
        self.refresh_registry(force=False)
        # After a rotation only the new key may sign alone; a process still holding the old
        # one (its key file not yet replaced) must not publish what new-key verifiers refuse.
        self._current_operator_key()
        with self.log.write_transaction() as session:
            size = self.log.tree_size()
            latest = self.latest_checkpoint()
            if latest is not None:
                if size < latest.size:
                    raise InconsistentCheckpoint(
                        f"the log has {size} entries but checkpoint {latest.size} was signed")
                if StoredTree(self.log, size).root(latest.size) != latest.root:
                    raise InconsistentCheckpoint(
                        f"stored data no longer reproduces the root signed at size {latest.size}")
                if size == latest.size:
                    self.completeness.update(session, size, latest.root)  # if not yet indexed
                    return latest
            root = StoredTree(self.log, size).root()
            # docs/key-rotation.md: during a rotation window the retiring key signs too.
            signed = cps.sign(self.origin, size, root, self.operator_key,
                              *self.co_signing_keys())
            session.execute(checkpoint_table.insert().values(
                tree_size=size, root_hash=root, note=signed.note, signed_at=format_time(now_utc())))
            # docs/completeness.md: the index note for this size is signed in the same
            # transaction, so no checkpoint is ever published without its index.
            self.completeness.update(session, size, root)
        return signed

    @property
    def link_codes(self) -> LinkCodeRegistry:
        """The link-code registry (ledger.linkcodes); its key K_link is read on first use."""
        registry: LinkCodeRegistry | None = getattr(self, "_link_codes", None)
        if registry is None:
            from ledger.linkcodes import key_path

            registry = LinkCodeRegistry(self.log, key_path(self.settings.key_dir))
            self._link_codes = registry
        return registry

    def issue_link_codes(self, agency: str, subjects: Sequence[str]) -> dict[str, str]:
        """The network operator's act: issue (or look up) agency's link codes for residents
        (pseudonym → code). Recorded in the registry only, never in the log."""
        self.refresh_registry()
        self.registry.agency(agency)  # UnknownAgency for a code nobody registered
        return self.link_codes.issue_many(agency, subjects)

    @property
    def completeness(self) -> CompletenessIndex:
        """The completeness index (ledger.completeness); its secret is created on first use."""
        index: CompletenessIndex | None = getattr(self, "_completeness", None)
        if index is None:
            from ledger.completeness import secret_path

            index = CompletenessIndex(self.log, self.origin, self.operator_key,
                                      secret_path(self.settings.key_dir))
            self._completeness = index
        # The keys in force now: a rotation may have happened since the index was opened.
        index.operator_key = self.operator_key
        index.co_signers = tuple(self.co_signing_keys())
        return index

    def verify_latest_checkpoint(self) -> None:
        """Start-up check: the latest signed checkpoint still holds over stored data."""
        latest = self.latest_checkpoint()
        if latest is None:
            return
        size = self.tree_size()
        if size < latest.size:
            raise IntegrityFailure(
                f"the log has {size} entries, fewer than the {latest.size} of its latest checkpoint")
        try:
            root = StoredTree(self.log, size).root(latest.size)
        except LookupError as exc:
            raise IntegrityFailure(f"stored tree is incomplete: {exc}") from None
        if root != latest.root:
            raise IntegrityFailure(
                f"the root recomputed at size {latest.size} is {base64.b64encode(root).decode()}, "
                f"the signed checkpoint says {base64.b64encode(latest.root).decode()}; "
                "run 'kiroku log fsck' to find the altered entries")

    @property
    def vkey(self) -> str:
        from ledger.keys import vkey

        return vkey(self.origin, raw_public_key(self.operator_key.private.public_key()))
