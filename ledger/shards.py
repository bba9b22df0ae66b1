"""Sharded logs: one deployment, several logs, each with its own origin and checkpoints.

A shard is a whole kiroku log (its own database, origin and signed checkpoints; docs/shards.md).
The deployment lists its shards oldest first in a TOML file (``KIROKU_SHARDS``); appends go to the
last one, the *open* shard. Older shards are *frozen*: their last entry is ``shard.frozen`` and
their final checkpoint covers it, after which the database itself refuses every new log entry
(a trigger on ``kiroku_log_entry``), so no process, however configured, can extend a frozen log.

A new shard is self-describing: its entry 0 is ``shard.opened``, naming the previous shard's
origin, final size and root and carrying its final checkpoint note, followed by the legal-basis
catalog, the agencies and their keys still in force, so that its export and the operator's vkey
verify offline and the verifier can chain it to the shard before (verifier.shards).

This module wraps ``Ledger`` instances; it does not change how a ledger appends.
"""

from __future__ import annotations

import base64
import json
import re
import tomllib
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from eventsourcing.domain import Aggregate
from sqlalchemy import MetaData, Table, create_engine, select, text
from sqlalchemy.dialects import postgresql, sqlite

from ledger.application import Ledger, Receipt
from ledger.checkpoints import Checkpoint
from ledger.config import Settings
from ledger.domain import NAMESPACE, OPERATOR, Logged, LoggedAggregate
from ledger.encoding import b64encode, format_time, now_utc
from ledger.errors import ConfigurationError, LedgerError
from ledger.keys import SigningKey
from ledger.schema import log_entry
from ledger.signing import sign_statement

OPENED = "shard.opened"
FROZEN = "shard.frozen"
TRIGGER = "kiroku_log_frozen"
#: The operator's registries kept outside the log that a new shard carries over, so residents keep
#: their credentials, agencies their link codes and notice attributes, residents their alerts.
#: Every one has a natural (text or UUID) key: copying rows keeps them unique without sequences.
CARRIED_TABLES = ("kiroku_resident_credential", "kiroku_resident_reissue", "kiroku_link_code",
                  "kiroku_resident_attribute", "kiroku_alert_subscription")
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_FROZEN_MESSAGE = "kiroku: this log is frozen (shard.frozen); append to the open shard"


class ShardError(LedgerError):
    """A shard operation that the shards' state does not allow (the message says what to run)."""

    code = "shard-error"


class ShardFrozen(LedgerError):
    """An append to a frozen shard: its final checkpoint is signed and it takes no new entries."""

    code = "shard-frozen"


# Domain: two aggregates, each created by its one entry ---------------------------------------
class ShardStart(LoggedAggregate):
    """Entry 0 of a shard: the link to the previous shard's final checkpoint."""

    class Opened(Aggregate.Created, Logged):
        pass


class ShardEnd(LoggedAggregate):
    """The last entry of a frozen shard."""

    class Frozen(Aggregate.Created, Logged):
        pass


def aggregate_id(kind: str, origin: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{kind}:{origin}")


# Configuration --------------------------------------------------------------------------------
def slug_of(origin: str) -> str:
    """The origin as one URL path segment (``kiroku.example/2026`` → ``kiroku.example-2026``)."""
    return _SLUG.sub("-", origin).strip("-")


@dataclass(frozen=True)
class ShardSpec:
    """One shard of the deployment's configuration."""

    origin: str
    database_url: str
    key_dir: Path | None = None  # default: the deployment's KIROKU_KEY_DIR

    @property
    def slug(self) -> str:
        return slug_of(self.origin)

    def settings(self, base: Settings) -> Settings:
        return Settings(home=base.home, database_url=self.database_url,
                        key_dir=self.key_dir or base.key_dir, origin=self.origin)


def load_config(path: Path) -> list[ShardSpec]:
    """The shards a TOML file lists (``[[shard]]`` tables, oldest first; docs/shards.md)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the shard list {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"the shard list {path} is not TOML: {exc}") from None
    entries = document.get("shard")
    if not isinstance(entries, list) or not entries:
        raise ConfigurationError(f"the shard list {path} has no [[shard]] table")
    specs: list[ShardSpec] = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{path}: shard {number} is not a table")
        unknown = set(entry) - {"origin", "database_url", "key_dir"}
        origin, url = entry.get("origin"), entry.get("database_url")
        if unknown or not isinstance(origin, str) or not isinstance(url, str) or not origin \
                or not url or "\n" in origin or " " in origin:
            raise ConfigurationError(
                f"{path}: shard {number} needs origin = \"host/path\" and database_url = \"…\" "
                f"(and optionally key_dir){'; unknown: ' + ', '.join(sorted(unknown)) if unknown else ''}")
        key_dir = entry.get("key_dir")
        if key_dir is not None and not isinstance(key_dir, str):
            raise ConfigurationError(f"{path}: shard {number}: key_dir must be a path")
        specs.append(ShardSpec(origin, url, Path(key_dir) if key_dir else None))
    for attribute in ("origin", "slug", "database_url"):
        values = [getattr(s, attribute) for s in specs]
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ConfigurationError(f"{path}: two shards share the {attribute} {twice[0]}")
    return specs


def write_config(path: Path, specs: Sequence[ShardSpec]) -> None:
    """Write the shard list (atomically: a temporary file renamed over the old one)."""
    lines: list[str] = ["# kiroku shards, oldest first; the last one takes appends (docs/shards.md)"]
    for spec in specs:
        lines += ["", "[[shard]]", f"origin = {json.dumps(spec.origin)}",
                  f"database_url = {json.dumps(spec.database_url)}"]
        if spec.key_dir is not None:
            lines.append(f"key_dir = {json.dumps(str(spec.key_dir))}")
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temporary.replace(path)


# State ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardState:
    """What a shard's own log says about it."""

    origin: str
    size: int
    frozen: bool
    #: The previous shard's final checkpoint as this shard's ``shard.opened`` names it.
    previous: dict[str, Any] | None = None
    final: Checkpoint | None = None  # the final checkpoint, once frozen

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "slug": slug_of(self.origin),
                "state": "frozen" if self.frozen else "open", "tree_size": self.size,
                "previous": None if self.previous is None else {
                    key: self.previous[key] for key in ("origin", "size", "root")},
                "final_checkpoint": None if self.final is None else self.final.note}


def _kind(leaf: bytes) -> str:
    return str(json.loads(leaf).get("kind", ""))


def state_of(ledger: Ledger) -> ShardState:
    size = ledger.tree_size()
    if size == 0:
        return ShardState(ledger.origin, 0, False)
    last, _ = ledger.get_leaf(size - 1)
    frozen = _kind(last) == FROZEN
    previous = None
    first = ledger.export_entries([0])
    if first and _kind(base64.b64decode(first[0]["leaf"])) == OPENED:
        payload = first[0]["payload"] or {}
        previous = payload.get("previous")
    final = ledger.latest_checkpoint() if frozen else None
    return ShardState(ledger.origin, size, frozen, previous, final)


def is_frozen(ledger: Ledger) -> bool:
    size = ledger.tree_size()
    return size > 0 and _kind(ledger.get_leaf(size - 1)[0]) == FROZEN


T = TypeVar("T")


def refusing_when_frozen(ledger: Ledger, append: Callable[[], T]) -> T:
    """Run an append; if it fails because the log is frozen, say so (ShardFrozen).

    The database trigger refuses the insert however the append was made; checking the log's
    last entry only after a failure keeps the common path free of an extra query.
    """
    try:
        return append()
    except LedgerError as exc:
        if isinstance(exc, ShardFrozen) or not is_frozen(ledger):
            raise
        raise ShardFrozen(_frozen_detail(ledger)) from None
    except Exception:
        if is_frozen(ledger):
            raise ShardFrozen(_frozen_detail(ledger)) from None
        raise


def _frozen_detail(ledger: Ledger) -> str:
    return (f"the log {ledger.origin} is frozen at size {ledger.tree_size()} (its final "
            "checkpoint is signed); appends go to the deployment's open shard")


# Freezing -------------------------------------------------------------------------------------
def _operator_entry(ledger: Ledger, kind: str, payload: dict[str, Any]) -> tuple[Any, Any]:
    signed = sign_statement(payload, kind=kind, agency=OPERATOR, key=ledger.operator_key)
    fields = {"statement": signed["statement"], "signature": signed["signature"],
              "payload": signed["payload"], "salt": signed["salt"],
              "logged_at": format_time(now_utc())}
    if kind == OPENED:
        return ShardStart._create(ShardStart.Opened, id=aggregate_id(kind, ledger.origin),
                                  **fields), fields
    return ShardEnd._create(ShardEnd.Frozen, id=aggregate_id(kind, ledger.origin),
                            **fields), fields


def _save_entry(ledger: Ledger, aggregate: Any, session: Any = None,
                precommit: Callable[[int], None] | None = None) -> Receipt:
    events = list(aggregate.pending_events)
    entries = [cast(Logged, event).log_entry() for event in events]
    appended: list[Any] = []
    extra: dict[str, Any] = {"session": session} if session is not None else {}
    ledger.save(aggregate, log_entries=entries, appended=appended, precommit=precommit, **extra)
    first = appended[0]
    return Receipt(events[0].originator_id, first.index, first.leaf, first.leaf_hash)


def _seal_sql(dialect: str) -> list[str]:
    """The trigger that makes the database refuse every later log entry."""
    if dialect == "postgresql":
        return [
            (f"CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{_FROZEN_MESSAGE}' USING ERRCODE = 'P0001'; END $$"),
            f"DROP TRIGGER IF EXISTS {TRIGGER} ON kiroku_log_entry",
            (f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON kiroku_log_entry "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {TRIGGER}()"),
        ]
    return [(f"CREATE TRIGGER IF NOT EXISTS {TRIGGER} BEFORE INSERT ON kiroku_log_entry "
            f"BEGIN SELECT RAISE(ABORT, '{_FROZEN_MESSAGE}'); END")]


def seal(session: Any) -> None:
    """Install the trigger in the session's transaction (freezing, or importing a frozen
    shard's export)."""
    for statement in _seal_sql(session.get_bind().dialect.name):
        session.execute(text(statement))


def freeze(ledger: Ledger) -> Checkpoint:
    """Freeze the shard: append ``shard.frozen`` and seal the database in one transaction, then
    sign the final checkpoint (which covers that entry). Idempotent: freezing a frozen shard
    (for instance after a crash between the two steps) only makes sure the final checkpoint
    exists, and returns it."""
    if not is_frozen(ledger):
        aggregate, _ = _operator_entry(ledger, FROZEN, {"origin": ledger.origin})
        with ledger.log.write_transaction() as session:
            last = session.execute(select(log_entry.c.leaf).order_by(log_entry.c.idx.desc())
                                   .limit(1)).first()
            if last is not None and _kind(bytes(last.leaf)) == FROZEN:
                raise ShardError(f"the log {ledger.origin} was frozen meanwhile")
            _save_entry(ledger, aggregate, session=session)
            seal(session)
    final = ledger.checkpoint()
    if final.size != ledger.tree_size():
        raise ShardError(f"the final checkpoint of {ledger.origin} covers {final.size} entries, "
                         f"the log holds {ledger.tree_size()}; run 'kiroku log fsck'")
    return final


# Opening a shard ------------------------------------------------------------------------------
@dataclass
class OpenReport:
    origin: str
    previous: dict[str, Any] | None
    agencies: int = 0
    keys: int = 0
    copied: dict[str, int] = field(default_factory=dict)
    checkpoint: Checkpoint | None = None


def link_to(previous: Ledger) -> dict[str, Any]:
    """What a new shard's ``shard.opened`` says about the frozen shard before it."""
    if not is_frozen(previous):
        raise ShardError(f"the shard {previous.origin} is still open; run 'kiroku shard freeze' "
                         "first, so that the new shard can name its final checkpoint")
    final = previous.latest_checkpoint()
    assert final is not None  # freeze() signed it
    return {"origin": previous.origin, "size": final.size, "root": b64encode(final.root),
            "checkpoint": final.note}


def open_shard(new: Ledger, previous: Ledger | None, *, catalog: Any = None) -> OpenReport:
    """Start ``new`` (an empty, migrated database) as the shard after ``previous`` (frozen).

    Writes ``shard.opened``, then the catalog, the agencies and their keys in force, signs a
    checkpoint, and copies the operator's registries (CARRIED_TABLES). Safe to run again after
    an interruption: each step skips what is already there.
    """
    link = link_to(previous) if previous is not None else None
    report = OpenReport(new.origin, link)
    if previous is not None and previous.origin == new.origin:
        raise ShardError("a new shard needs an origin of its own")
    size = new.tree_size()
    if size == 0:
        aggregate, _ = _operator_entry(new, OPENED, {"origin": new.origin, "previous": link})

        def still_empty(top: int) -> None:
            if top != 0:
                raise ShardError(f"the database of {new.origin} received entries meanwhile")

        _save_entry(new, aggregate, precommit=still_empty)
    else:
        first = new.export_entries([0])
        payload = first[0]["payload"] if first else None
        if not first or _kind(base64.b64decode(first[0]["leaf"])) != OPENED \
                or payload is None or payload.get("previous") != link:
            raise ShardError(f"the database for {new.origin} already holds a log that does not "
                             "start as this shard; give the new shard an empty database")
    new.refresh_registry()
    if previous is not None:
        previous.refresh_registry()
        catalog = previous.registry.catalog
    if catalog is None:
        from ledger.catalog import load_catalog

        catalog = load_catalog()
    new.load_catalog(catalog)
    if previous is not None:
        _carry_registrations(previous, new, report)
        report.copied = copy_registries(previous.settings.database_url, new.settings.database_url)
    report.checkpoint = new.checkpoint()
    return report


def _carry_registrations(previous: Ledger, new: Ledger, report: OpenReport) -> None:
    now = now_utc()
    new.refresh_registry()
    for agency in list(previous.registry.agencies.values()):
        if agency.code not in new.registry.agencies:
            new.register_agency(agency.code, name_ja=agency.name_ja, name_en=agency.name_en,
                                kind=agency.kind, roles=sorted(agency.roles),
                                registered_at=agency.registered_at)
            report.agencies += 1
        for key in list(agency.keys.values()):
            # A key revoked by now signs nothing the new shard can accept (rule 4: logged_at
            # must precede revoked_at), so only keys in force, or with a planned end, carry over.
            if key.revoked_at is not None and key.revoked_at <= now:
                continue
            if key.key_id not in new.registry.keys:
                new.add_agency_key(agency.code, key.public_key, valid_from=key.valid_from)
                report.keys += 1
            new.refresh_registry()
            if key.revoked_at is not None and new.registry.keys[key.key_id].revoked_at is None:
                new.revoke_agency_key(agency.code, key.key_id, revoked_at=key.revoked_at)


def copy_registries(source_url: str, target_url: str,
                    tables: Sequence[str] = CARRIED_TABLES) -> dict[str, int]:
    """Copy the operator's registries kept outside the log; rows already there are kept."""
    source, target = create_engine(source_url), create_engine(target_url)
    copied: dict[str, int] = {}
    try:
        metadata = MetaData()
        metadata.reflect(bind=source, only=list(tables))
        dialect = target.dialect.name
        with source.connect() as reading, target.begin() as writing:
            for name in tables:
                table: Table = metadata.tables[name]
                insert = (postgresql.insert(table) if dialect == "postgresql"
                          else sqlite.insert(table)).on_conflict_do_nothing()
                count = 0
                result = reading.execution_options(yield_per=5000).execute(select(table))
                for rows in result.partitions():
                    writing.execute(insert, [dict(row._mapping) for row in rows])
                    count += len(rows)
                copied[name] = count
    finally:
        source.dispose()
        target.dispose()
    return copied


# The deployment's shards ----------------------------------------------------------------------
@dataclass
class Shard:
    spec: ShardSpec
    ledger: Ledger
    position: int  # 0 = the oldest

    @property
    def origin(self) -> str:
        return self.spec.origin

    @property
    def slug(self) -> str:
        return self.spec.slug

    def state(self) -> ShardState:
        return state_of(self.ledger)


class ShardSet:
    """Every shard's ledger, oldest first; ``open`` is the last, the one that takes appends.

    Opening checks that every shard but the last is frozen: an open shard listed before another
    would let two logs take appends at once.
    """

    def __init__(self, specs: Sequence[ShardSpec], base: Settings, *,
                 open_ledger: Callable[[Settings], Ledger] | None = None,
                 reuse: Ledger | None = None) -> None:
        opener = open_ledger or _default_open
        self.shards: list[Shard] = []
        try:
            for position, spec in enumerate(specs):
                settings = spec.settings(base)
                if reuse is not None and reuse.origin == spec.origin \
                        and reuse.settings.database_url == spec.database_url:
                    ledger = reuse
                else:
                    ledger = opener(settings)
                self.shards.append(Shard(spec, ledger, position))
            for shard in self.shards[:-1]:
                if not is_frozen(shard.ledger):
                    raise ConfigurationError(
                        f"shard {shard.origin} is listed before {self.shards[-1].origin} but is "
                        f"not frozen; run 'kiroku shard freeze {shard.origin}' (docs/shards.md)")
        except BaseException:
            self.close(keep=reuse)
            raise

    @property
    def open(self) -> Shard:
        return self.shards[-1]

    def get(self, slug_or_origin: str) -> Shard | None:
        for shard in self.shards:
            if slug_or_origin in (shard.slug, shard.origin):
                return shard
        return None

    def newest_first(self) -> Iterator[Shard]:
        return reversed(self.shards)

    def close(self, keep: Ledger | None = None) -> None:
        for shard in self.shards:
            if shard.ledger is not keep:
                shard.ledger.close()
        self.shards = []


def _default_open(settings: Settings) -> Ledger:
    from ledger.opening import open_ledger

    return open_ledger(settings)


def open_configured(path: Path, base: Settings, *, reuse: Ledger | None = None) -> ShardSet:
    return ShardSet(load_config(path), base, reuse=reuse)


@contextmanager
def opened(settings: Settings, key: SigningKey | None = None) -> Iterator[Ledger]:
    """A ledger for a shard's settings, closed afterwards."""
    from ledger.opening import open_ledger

    ledger = Ledger(settings, key) if key is not None else open_ledger(settings)
    try:
        yield ledger
    finally:
        ledger.close()
