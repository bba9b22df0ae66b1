"""Proxies (代理人): a resident lets someone read their records on their behalf.

Registering and cancelling a proxy are log entries (kinds ``proxy.registered`` and
``proxy.cancelled``, docs/log-format.md), signed by the operator as registrar after the
resident's authenticated request (residents hold card keys, not statement keys), or, for a
cancellation by an authority, on the operator's command. Their payloads carry no personal data:
the principal and the proxy (the *holder*) appear only as salted digests, and the operator's
table ``kiroku_proxy`` (written in the same transaction as the entry) holds who they are, so an
auditor with the table can check each row against the signed entry while an export alone
reveals nothing about anyone.

Registrations are keyed on the principal's pseudonym, never on a certificate: a revoked or
reissued card changes nothing here. The holder is whatever the proxy's login certificate maps
to in ``kiroku_resident_credential``: a resident's pseudonym (a parent using their own card), or
a proxy identity ``proxy:<uuid>`` for someone who is not a resident of this log.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    insert,
    select,
    update,
)

from ledger.domain import Logged, LoggedAggregate
from ledger.encoding import b64encode
from ledger.errors import AlreadyRegistered, LedgerError, NotFound
from ledger.storage import AppendedEntry

if TYPE_CHECKING:
    from ledger.application import Ledger, Receipt

REGISTERED = "proxy.registered"
CANCELLED = "proxy.cancelled"
#: A holder that is not a resident of this log: ``proxy:`` and a random id.
PROXY_IDENTITY_PREFIX = "proxy:"
#: Kinds of representation (My Portal's 代理人: statutory, guardian, appointed).
RELATIONSHIPS = frozenset({"legal_representative", "adult_guardian", "appointed"})
CANCEL_REASONS = frozenset({"principal_request", "court_order", "representation_ended",
                            "principal_deceased", "set_in_error"})
CANCELLED_BY = frozenset({"principal", "authority"})
_PRINCIPAL_DOMAIN = b"kiroku/proxy/principal/v1\n"
_HOLDER_DOMAIN = b"kiroku/proxy/holder/v1\n"

metadata = MetaData()
_BigInt = BigInteger().with_variant(Integer(), "sqlite")

#: One row per registration (migrations/versions/0008_disclosure.py). ``salt`` opens the
#: digests of the registration entry; it never leaves the operator's database.
proxy_table = Table(
    "kiroku_proxy",
    metadata,
    Column("id", Text, primary_key=True),  # the registration id; also the proxy's handle
    Column("principal", Text, nullable=False),  # the resident's pseudonym
    Column("holder", Text, nullable=False),  # the proxy's identity (see the module docstring)
    Column("relationship", Text, nullable=False),
    Column("salt", LargeBinary, nullable=False),
    Column("registered_at", Text, nullable=False),
    Column("registered_idx", _BigInt, nullable=False),
    Column("cancelled_at", Text, nullable=True),
    Column("cancelled_idx", _BigInt, nullable=True),
    Column("cancelled_by", Text, nullable=True),
    Column("cancel_reason", Text, nullable=True),
    Index("kiroku_proxy_principal_idx", "principal"),
    Index("kiroku_proxy_holder_idx", "holder"),
)


class ProxyError(LedgerError):
    code = "proxy-error"


class UnknownProxy(NotFound):
    """No such registration in force (or not the caller's: the answer is the same)."""

    code = "unknown-proxy"


class InvalidProxy(ProxyError):
    """A registration or cancellation the ledger refuses (unknown relationship or reason, a
    resident naming themself as their own proxy)."""

    code = "invalid-proxy"


class ProxyAlreadyRegistered(AlreadyRegistered):
    code = "proxy-already-registered"


class Proxy(LoggedAggregate):
    """One registration of a proxy for a principal, until it is cancelled."""

    class Registered(Aggregate.Created, Logged):
        pass

    class Cancelled(Logged):
        pass


@dataclass(frozen=True)
class ProxyRegistration:
    id: str
    principal: str
    holder: str
    relationship: str
    registered_at: str
    registered_idx: int
    cancelled_at: str | None = None
    cancelled_by: str | None = None
    cancel_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.cancelled_at is None

    def to_json(self) -> dict[str, Any]:
        """What the principal sees of their registration (the holder's identity is not shown:
        the resident knows whom they named)."""
        return {"id": self.id, "relationship": self.relationship,
                "registered_at": self.registered_at, "registered_index": self.registered_idx,
                "cancelled_at": self.cancelled_at, "cancelled_by": self.cancelled_by,
                "cancel_reason": self.cancel_reason}


def digest(domain: bytes, salt: bytes, value: str) -> str:
    """b64(SHA-256(domain ‖ salt ‖ UTF-8 value)): binds an entry to a table row, hides the value."""
    return b64encode(hashlib.sha256(domain + salt + value.encode()).digest())


# Commands --------------------------------------------------------------------------------------
def register_proxy(ledger: Ledger, principal: str, holder: str, relationship: str
                   ) -> tuple[ProxyRegistration, Receipt]:
    if relationship not in RELATIONSHIPS:
        raise InvalidProxy(f"relationship must be one of {sorted(RELATIONSHIPS)}")
    if holder == principal:
        raise InvalidProxy("a resident cannot be their own proxy")
    registration_id = str(uuid.uuid4())
    salt = os.urandom(32)
    payload = {"proxy": registration_id, "relationship": relationship,
               "principal": digest(_PRINCIPAL_DOMAIN, salt, principal),
               "holder": digest(_HOLDER_DOMAIN, salt, holder)}
    signed = ledger._operator_sign(REGISTERED, payload, None)
    aggregate = Proxy._create(Proxy.Registered, id=uuid.UUID(registration_id),
                              **ledger._fields(signed))
    appended: list[AppendedEntry] = []
    with ledger.log.write_transaction() as session:
        if session.execute(select(proxy_table.c.id).where(
                proxy_table.c.principal == principal, proxy_table.c.holder == holder,
                proxy_table.c.cancelled_at.is_(None))).first() is not None:
            raise ProxyAlreadyRegistered("this proxy is already registered for you")
        _insert(ledger, session, aggregate, appended)
        stamp = aggregate.logged_at
        session.execute(insert(proxy_table).values(
            id=registration_id, principal=principal, holder=holder, relationship=relationship,
            salt=salt, registered_at=stamp, registered_idx=appended[0].index))
    registration = ProxyRegistration(registration_id, principal, holder, relationship, stamp,
                                     appended[0].index)
    return registration, _receipt(registration_id, appended[0])


def cancel_proxy(ledger: Ledger, registration_id: str, *, by: str, reason: str,
                 principal: str | None = None) -> Receipt:
    """Cancel a registration: ``by="principal"`` needs ``principal`` (only their own
    registrations; another's answers like a missing one), ``by="authority"`` is the operator's
    command on an authority's decision."""
    if by not in CANCELLED_BY:
        raise InvalidProxy(f"a proxy is cancelled by one of {sorted(CANCELLED_BY)}")
    if reason not in CANCEL_REASONS:
        raise InvalidProxy(f"reason must be one of {sorted(CANCEL_REASONS)}")
    if by == "principal" and principal is None:
        raise InvalidProxy("a cancellation by the principal names the principal")
    try:
        aggregate_id = uuid.UUID(registration_id)
    except ValueError:
        raise UnknownProxy(f"no proxy registration {registration_id!r}") from None
    appended: list[AppendedEntry] = []
    with ledger.log.write_transaction() as session:
        row = session.execute(select(proxy_table).where(
            proxy_table.c.id == str(aggregate_id))).first()
        if row is None or (principal is not None and row.principal != principal):
            raise UnknownProxy(f"no proxy registration {registration_id} of yours")
        if row.cancelled_at is not None:
            raise UnknownProxy(f"proxy registration {registration_id} is already cancelled")
        payload = {"proxy": str(aggregate_id), "by": by, "reason": reason}
        fields = ledger._fields(ledger._operator_sign(CANCELLED, payload, None))
        aggregate: Proxy = ledger.repository.get(aggregate_id)
        aggregate.trigger_event(Proxy.Cancelled, **fields)
        _insert(ledger, session, aggregate, appended)
        session.execute(update(proxy_table).where(proxy_table.c.id == str(aggregate_id)).values(
            cancelled_at=fields["logged_at"],
            cancelled_idx=appended[0].index, cancelled_by=by, cancel_reason=reason))
    return _receipt(str(aggregate_id), appended[0])


def _insert(ledger: Ledger, session: Any, aggregate: Proxy, appended: list[AppendedEntry]
            ) -> None:
    events = aggregate.collect_events()
    ledger.log.insert_events([ledger.mapper.to_stored_event(e) for e in events],
                             session=session,
                             log_entries=[e.log_entry() for e in events],  # type: ignore[attr-defined]
                             appended=appended)


def _receipt(registration_id: str, entry: AppendedEntry) -> Receipt:
    from ledger.application import Receipt

    return Receipt(uuid.UUID(registration_id), entry.index, entry.leaf, entry.leaf_hash)


# Queries ---------------------------------------------------------------------------------------
def list_for_principal(ledger: Ledger, principal: str, *, include_cancelled: bool = False
                       ) -> list[ProxyRegistration]:
    """The principal's registrations, oldest first (in force only, unless asked)."""
    query = select(proxy_table).where(proxy_table.c.principal == principal)
    if not include_cancelled:
        query = query.where(proxy_table.c.cancelled_at.is_(None))
    return _rows(ledger, query.order_by(proxy_table.c.registered_idx))


def list_for_holder(ledger: Ledger, holder: str) -> list[ProxyRegistration]:
    """The registrations in force that name ``holder`` as proxy: whom they may act for."""
    return _rows(ledger, select(proxy_table).where(
        proxy_table.c.holder == holder, proxy_table.c.cancelled_at.is_(None))
        .order_by(proxy_table.c.registered_idx))


def get_for_holder(ledger: Ledger, holder: str, registration_id: str
                   ) -> ProxyRegistration | None:
    """The registration ``registration_id`` if it is in force and names ``holder``; None for
    anything else (missing, cancelled, another proxy's), so callers answer alike."""
    found = _rows(ledger, select(proxy_table).where(
        proxy_table.c.id == registration_id, proxy_table.c.holder == holder,
        proxy_table.c.cancelled_at.is_(None)))
    return found[0] if found else None


def _rows(ledger: Ledger, query: Any) -> list[ProxyRegistration]:
    with ledger.log.transaction(commit=False) as session:
        rows = session.execute(query).all()
    return [ProxyRegistration(r.id, r.principal, r.holder, r.relationship, r.registered_at,
                              int(r.registered_idx), r.cancelled_at, r.cancelled_by,
                              r.cancel_reason) for r in rows]


def new_proxy_identity() -> str:
    """A holder identity for a proxy who is not a resident of this log."""
    return PROXY_IDENTITY_PREFIX + str(uuid.uuid4())
