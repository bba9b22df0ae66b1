"""Alerts on provisions: residents' subscriptions and the outbox a projection fills from the log.

Subscriptions (e-mail addresses, webhook URLs and their secrets) are personal data: they live in
the operator's own table ``kiroku_alert_subscription``, never in the log, are never exported and
never logged. The outbox ``kiroku_alert_outbox`` holds one row per message to deliver; the
sender (api/alerts.py) delivers from it.

The alert projection follows the log like the views (projections.runner) with its own tracking
record ``kiroku_alert_tracking``: each batch's outbox rows and the new position commit in ONE
transaction by compare-and-set, so a provision yields its alert rows exactly once whatever
crashes. It is not one of ``projections.views.VIEWS`` on purpose: ``projections rebuild`` clears
and replays the views, and replaying alerts would send them again.

Which provisions alert: one about the subscriber (a v1 ``subject`` or v2 link codes, resolved by
projections.decode) logged while the subscription was active (e-mail: confirmed; webhook: from
creation), so a new subscriber is not told about years of old records.

Non-disclosure (不開示) is decided when the alert is SENT, not when its row is written: the sender
only delivers an alert whose record the resident view shows at that moment
(``projections.flags.disclosed``). A record withheld by its payload (``non_disclosure``, a future
``disclose_after``) or by a later ``provision.flagged`` entry keeps its alert pending; once the
flag is lifted or ``disclose_after`` passes, the next sender pass delivers it, with no job and no
extra entry. A flag appended after the alert was delivered cannot recall it; the alert says no
more than "a new record is in your view", and the page it links to withholds the record.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from eventsourcing.persistence import IntegrityError, Tracking
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import Session

from ledger.application import Ledger
from projections.decode import ProvisionFact
from projections.errors import ProjectionError
from projections.flags import disclosed, now_micros
from projections.schema import resident_record
from projections.store import ViewStore, ViewTrackingRecorder

metadata = MetaData()
_BigInt = BigInteger().with_variant(Integer(), "sqlite")

ALERT_TRACKING = "kiroku_alert_tracking"
APPLICATION = Ledger.name
EMAIL, WEBHOOK = "email", "webhook"
ALERT, CONFIRM = "alert", "confirm"
PENDING, SENT, DEAD = "pending", "sent", "dead"
MAX_SUBSCRIPTIONS = 10
CONFIRM_TTL_US = 24 * 3600 * 1_000_000
#: Namespace of delivery ids: uuid5(namespace, "subscription:provision") is the same on every
#: replay and every retry, so a receiver deduplicates on it (Message-ID, Kiroku-Delivery).
DELIVERY_NAMESPACE = uuid.UUID("6b1d7c1e-2f0a-5c55-9a44-6b69726f6b75")

subscription = Table(
    "kiroku_alert_subscription",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("subject", Text, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("target", Text, nullable=False),  # the address or the URL
    Column("secret", Text, nullable=True),  # webhook HMAC key (base64url)
    Column("confirm_token", Text, nullable=True),  # e-mail, until confirmed
    Column("confirmed_at", _BigInt, nullable=True),  # µs; NULL: not active yet
    Column("created_at", _BigInt, nullable=False),
    Index("kiroku_alert_subscription_subject", "subject"),
)

outbox = Table(
    "kiroku_alert_outbox",
    metadata,
    Column("id", Uuid(), primary_key=True),  # the delivery id receivers deduplicate on
    Column("subscription_id", Uuid(), nullable=False),
    Column("kind", String(16), nullable=False),  # alert | confirm
    Column("record_idx", _BigInt, nullable=True),  # the provision's log index (alerts)
    Column("state", String(16), nullable=False),  # pending | sent | dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", _BigInt, nullable=False),  # µs; also the claim's lease
    Column("last_error", Text, nullable=True),
    Column("created_at", _BigInt, nullable=False),
    Column("sent_at", _BigInt, nullable=True),
    Index("kiroku_alert_outbox_due", "state", "next_attempt_at"),
    Index("kiroku_alert_outbox_subscription", "subscription_id"),
)


class InvalidSubscription(ProjectionError):
    code = "invalid-subscription"


class TooManySubscriptions(ProjectionError):
    code = "too-many-subscriptions"


class InvalidConfirmation(ProjectionError):
    code = "invalid-confirmation"


class UnknownSubscription(ProjectionError):
    code = "unknown-subscription"


# Subscriptions ----------------------------------------------------------------------------------
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                      r"[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def check_address(address: str) -> str:
    """An addr-spec without quoting or comments (RFC 5321 §4.5.3.1: at most 254 octets)."""
    if len(address) > 254 or not _ADDRESS.match(address):
        raise InvalidSubscription("address must be a plain e-mail address (name@example.jp)")
    return address


def check_url(url: str) -> str:
    """https to any host; plain http only to 127.0.0.1 (tests, a local relay). No credentials
    in the URL: the signature header authenticates us, and a URL is logged by many proxies."""
    if len(url) > 2048:
        raise InvalidSubscription("url is longer than 2048 characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise InvalidSubscription("url is not a valid URL") from None
    if parts.username is not None or parts.password is not None or not parts.hostname:
        raise InvalidSubscription("url must name a host and carry no user or password")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname == "127.0.0.1"):
        return url
    raise InvalidSubscription("url must be https:// (or http://127.0.0.1 for local testing)")


@dataclass(frozen=True)
class Subscription:
    id: str
    channel: str
    target: str
    active: bool
    created_at: int
    secret: str | None = None  # only when just created

    def to_json(self, *, with_secret: bool = False) -> dict[str, Any]:
        from projections.decode import format_micros

        out: dict[str, Any] = {
            "id": self.id, "channel": self.channel, "target": self.target,
            "status": "active" if self.active else "pending_confirmation",
            "created_at": format_micros(self.created_at)}
        if with_secret and self.secret is not None:
            out["secret"] = self.secret
        return out


def create(session: Session, subject: str, channel: str, target: str
           ) -> tuple[Subscription, uuid.UUID | None]:
    """A new subscription; for e-mail also the confirmation message's outbox row (returned)."""
    if channel == EMAIL:
        target = check_address(target)
    elif channel == WEBHOOK:
        target = check_url(target)
    else:
        raise InvalidSubscription("channel must be 'email' or 'webhook'")
    count = session.execute(select(func.count()).select_from(subscription)
                            .where(subscription.c.subject == subject)).scalar() or 0
    if count >= MAX_SUBSCRIPTIONS:
        raise TooManySubscriptions(f"at most {MAX_SUBSCRIPTIONS} subscriptions per resident; "
                                   "delete one first")
    now = now_micros()
    sid = uuid.uuid4()
    secret = secrets.token_urlsafe(32) if channel == WEBHOOK else None
    token = secrets.token_urlsafe(16) if channel == EMAIL else None
    session.execute(subscription.insert().values(
        id=sid, subject=subject, channel=channel, target=target, secret=secret,
        confirm_token=token, confirmed_at=now if channel == WEBHOOK else None, created_at=now))
    confirm: uuid.UUID | None = None
    if channel == EMAIL:
        confirm = uuid.uuid4()
        session.execute(outbox.insert().values(
            id=confirm, subscription_id=sid, kind=CONFIRM, record_idx=None, state=PENDING,
            attempts=0, next_attempt_at=now, last_error=None, created_at=now, sent_at=None))
    return Subscription(str(sid), channel, target, channel == WEBHOOK, now, secret), confirm


def list_for(session: Session, subject: str) -> list[Subscription]:
    s = subscription.c
    rows = session.execute(select(s.id, s.channel, s.target, s.confirmed_at, s.created_at)
                           .where(s.subject == subject).order_by(s.created_at, s.id)).all()
    return [Subscription(str(r.id), r.channel, r.target, r.confirmed_at is not None,
                         int(r.created_at)) for r in rows]


def _own(session: Session, subject: str, subscription_id: str) -> Any:
    try:
        sid = uuid.UUID(subscription_id)
    except ValueError:
        raise UnknownSubscription("you have no subscription with this id") from None
    row = session.execute(select(subscription).where(subscription.c.id == sid,
                                                     subscription.c.subject == subject)).first()
    if row is None:  # another resident's subscription answers exactly like a missing one
        raise UnknownSubscription("you have no subscription with this id")
    return row


def remove(session: Session, subject: str, subscription_id: str) -> Subscription:
    """Delete the subscription and every message not yet delivered to it (the resident no longer
    wants them; the address leaves the database with them). Returns what was deleted."""
    row = _own(session, subject, subscription_id)
    session.execute(delete(outbox).where(outbox.c.subscription_id == row.id))
    session.execute(delete(subscription).where(subscription.c.id == row.id))
    return Subscription(str(row.id), row.channel, row.target, row.confirmed_at is not None,
                        int(row.created_at))


def confirm(session: Session, subject: str, subscription_id: str, token: str) -> Subscription:
    """Activate an e-mail subscription with the token its confirmation message carried."""
    row = _own(session, subject, subscription_id)
    if row.confirmed_at is not None:
        return Subscription(str(row.id), row.channel, row.target, True, int(row.created_at))
    expired = now_micros() - int(row.created_at) > CONFIRM_TTL_US
    if (row.confirm_token is None or expired
            or not secrets.compare_digest(row.confirm_token.encode(), token.encode())):
        raise InvalidConfirmation("the confirmation token is wrong or older than 24 hours; "
                                  "subscribe again for a new one")
    session.execute(update(subscription).where(subscription.c.id == row.id)
                    .values(confirmed_at=now_micros(), confirm_token=None))
    return Subscription(str(row.id), row.channel, row.target, True, int(row.created_at))


# The projection ---------------------------------------------------------------------------------
def delivery_id(subscription_id: uuid.UUID, provision: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(DELIVERY_NAMESPACE, f"{subscription_id}:{provision}")


class AlertProjection:
    """Log → outbox, with its tracking record in the same transaction (see the module doc)."""

    def __init__(self, ledger: Ledger, store: ViewStore | None = None, *, batch: int = 10_000
                 ) -> None:
        from projections.runner import Runner

        self.store = store or ViewStore(ledger.settings.database_url)
        self.reader = Runner(ledger, self.store, batch=batch)
        with warnings.catch_warnings():
            # The library names every tracking record class alike; the tables differ.
            warnings.filterwarnings("ignore", "This declarative base already contains")
            self.tracking = ViewTrackingRecorder(self.store.datastore,
                                                 tracking_table_name=ALERT_TRACKING)

    def position(self) -> int:
        return self.tracking.max_tracking_id(APPLICATION) or 0

    def step(self) -> int:
        """Process one batch; the number of notifications advanced over (0: current, or
        another process committed this batch first)."""
        after = self.position()
        top, anyone = self._head(after)
        if top <= after:
            return 0
        if not anyone:
            # Nobody is subscribed: nothing logged so far can raise an alert (an alert is only
            # for records logged after its subscription was confirmed), so the position moves
            # to the log's head without reading a single entry — on a large log the first
            # start after an upgrade would otherwise decode every entry for nobody.
            try:
                with self.store.write() as session:
                    self.tracking._insert_tracking(session, Tracking(APPLICATION, top))
            except IntegrityError:
                return 0
            return top - after
        batch = self.reader.read(after)
        if batch.position <= after:
            return 0
        try:
            with self.store.write() as session:
                write_alerts(session, [f for f in batch.facts if isinstance(f, ProvisionFact)])
                self.tracking._insert_tracking(session, Tracking(APPLICATION, batch.position))
        except IntegrityError:
            return 0
        return batch.position - after

    def _head(self, after: int) -> tuple[int, bool]:
        """The log's last notification id, and whether any subscription is confirmed (asked
        only when the log has moved on). The head is read first: a subscription confirmed later
        alerts only on later records (the ordering the projection relies on when it reads
        subscriptions per batch)."""
        events = self.reader._events
        with self.store.read() as session:
            top = int(session.execute(select(func.max(events.c.id))).scalar() or 0)
            if top <= after:
                return top, True
            confirmed = session.execute(select(subscription.c.id).where(
                subscription.c.confirmed_at.is_not(None)).limit(1)).first()
        return top, confirmed is not None

    def catch_up(self) -> int:
        total = 0
        while advanced := self.step():
            total += advanced
        return total


def write_alerts(session: Session, facts: Sequence[ProvisionFact]) -> None:
    if not facts:
        return
    s = subscription.c
    subjects = sorted({f.subject for f in facts})
    subs: dict[str, list[Any]] = {}
    for start in range(0, len(subjects), 500):
        for row in session.execute(select(s.id, s.subject, s.confirmed_at).where(
                s.subject.in_(subjects[start:start + 500]), s.confirmed_at.is_not(None))):
            subs.setdefault(row.subject, []).append(row)
    if not subs:
        return
    now = now_micros()
    rows = [{"id": delivery_id(sub.id, f.id), "subscription_id": sub.id, "kind": ALERT,
             "record_idx": f.index, "state": PENDING, "attempts": 0, "next_attempt_at": now,
             "last_error": None, "created_at": now, "sent_at": None}
            for f in facts for sub in subs.get(f.subject, ())
            if int(sub.confirmed_at) <= f.logged_at]
    if rows:
        session.execute(outbox.insert(), rows)


# The sender's queries ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    id: uuid.UUID
    kind: str
    channel: str
    target: str
    secret: str | None
    token: str | None
    subscription_id: uuid.UUID
    attempts: int


def claim(session: Session, *, limit: int, lease_us: int, channels: Sequence[str]
          ) -> list[Message]:
    """Due messages, each claimed by moving its ``next_attempt_at`` ahead by the lease
    (compare-and-set, so two senders never hold the same row; a sender killed while holding
    one lets it fall due again when the lease ends). Alerts only for records shown now."""
    now = now_micros()
    o, s = outbox.c, subscription.c
    visible = and_(o.kind == ALERT, select(resident_record.c.idx)
                   .where(resident_record.c.idx == o.record_idx, disclosed(now)).exists())
    rows = session.execute(
        select(o.id, o.kind, o.attempts, o.next_attempt_at, o.subscription_id, s.channel,
               s.target, s.secret, s.confirm_token)
        .join(subscription, s.id == o.subscription_id)
        .where(o.state == PENDING, o.next_attempt_at <= now, s.channel.in_(list(channels)),
               or_(o.kind == CONFIRM, visible))
        .order_by(o.next_attempt_at, o.id).limit(limit)).all()
    if not rows:
        return []
    won = _claim(session, [r.id for r in rows], now, lease_us)
    claimed, done = [], []
    for r in rows:
        if r.id not in won:
            continue
        if r.kind == CONFIRM and r.confirm_token is None:
            done.append(r.id)  # confirmed meanwhile: the code is no longer needed
        else:
            claimed.append(Message(r.id, r.kind, r.channel, r.target, r.secret, r.confirm_token,
                                   r.subscription_id, int(r.attempts)))
    if done:
        session.execute(update(outbox).where(o.id.in_(done)).values(state=SENT, sent_at=now))
    return claimed


def _claim(session: Session, ids: list[uuid.UUID], now: int, lease_us: int) -> set[uuid.UUID]:
    """Move the due rows among ``ids`` ahead by the lease; the ids this call moved (another
    sender that moved a row first made it not due, so each row is won once). One UPDATE …
    RETURNING for the batch; row by row where the database lacks RETURNING."""
    o = outbox.c
    due = and_(o.state == PENDING, o.next_attempt_at <= now)
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql" or (dialect.name == "sqlite"
                                        and sqlite3.sqlite_version_info >= (3, 35)):
        return set(session.execute(update(outbox).where(o.id.in_(ids), due)
                                   .values(next_attempt_at=now + lease_us)
                                   .returning(o.id)).scalars())
    return {i for i in ids if _rowcount(session.execute(
        update(outbox).where(o.id == i, due).values(next_attempt_at=now + lease_us))) == 1}


def mark_sent(session: Session, message_ids: Sequence[uuid.UUID]) -> None:
    """Mark messages the transport accepted as sent."""
    now = now_micros()
    for start in range(0, len(message_ids), 500):
        session.execute(update(outbox).where(outbox.c.id.in_(message_ids[start:start + 500]))
                        .values(state=SENT, sent_at=now, last_error=None))


def mark_failed(session: Session, message_id: uuid.UUID, error: str, *, retry_in_us: int | None
                ) -> None:
    """One more failed attempt: due again after ``retry_in_us``, or dead-lettered (None)."""
    values: dict[str, Any] = {"attempts": outbox.c.attempts + 1, "last_error": error[:500]}
    if retry_in_us is None:
        values["state"] = DEAD
    else:
        values["next_attempt_at"] = now_micros() + retry_in_us
    session.execute(update(outbox).where(outbox.c.id == message_id).values(**values))


def dead_letters(session: Session) -> list[dict[str, Any]]:
    """Dead-lettered messages for the operator: ids, channel, attempts and the last error; no
    address, no URL, no resident."""
    from projections.decode import format_micros

    o, s = outbox.c, subscription.c
    rows = session.execute(select(o.id, o.kind, s.channel, o.attempts, o.last_error,
                                  o.created_at)
                           .join(subscription, s.id == o.subscription_id)
                           .where(o.state == DEAD).order_by(o.created_at, o.id)).all()
    return [{"id": str(r.id), "kind": r.kind, "channel": r.channel, "attempts": int(r.attempts),
             "last_error": r.last_error, "created_at": format_micros(int(r.created_at))}
            for r in rows]


def replay(session: Session, ids: Sequence[str] | None) -> int:
    """Put dead letters back in the queue (all of them when ``ids`` is None), due now with a
    fresh attempt count; the delivery id stays, so receivers still deduplicate."""
    condition = outbox.c.state == DEAD
    if ids is not None:
        try:
            wanted = [uuid.UUID(i) for i in ids]
        except ValueError:
            raise UnknownSubscription("a dead-letter id is not a UUID") from None
        condition = and_(condition, outbox.c.id.in_(wanted))
    return _rowcount(session.execute(update(outbox).where(condition).values(
        state=PENDING, attempts=0, next_attempt_at=now_micros())))


def _rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE matched (a DML result is a CursorResult; the stub types say Result)."""
    return int(cast(CursorResult[Any], result).rowcount)
