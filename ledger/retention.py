"""Erasure at the end of retention (the Act keeps provision records for 7 years).

Erasing removes a provision's payload and salt from its stored event. The leaf, the chain, every
proof and the agency's signature stay checkable, because the signature covers only the salted
commitment (docs/log-format.md); without the salt, the commitment cannot confirm a guessed payload.
Registration entries are never erased: verifiers need them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import cast

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from sqlalchemy import select, update

from ledger.application import Ledger
from ledger.domain import Logged, Provision
from ledger.encoding import parse_time

RETENTION_YEARS = 7
_CHUNK = 1000


def erase_payloads(ledger: Ledger, before: datetime,
                   progress: Callable[[int], None] | None = None) -> int:
    """Erase payloads of provisions logged before ``before``; returns how many were erased."""
    table = ledger.log.events_record_cls.__table__
    topic = get_topic(Provision.Recorded)
    erased, last = 0, 0
    while True:
        with ledger.log.write_transaction() as session:
            rows = session.execute(
                select(table.c.id, table.c.originator_id, table.c.originator_version,
                       table.c.topic, table.c.state)
                .where(table.c.id > last, table.c.topic == topic)
                .order_by(table.c.id).limit(_CHUNK)
            ).all()
            if not rows:
                return erased
            for row in rows:
                last = int(row.id)
                event = cast(Logged, ledger.mapper.to_domain_event(StoredEvent(
                    originator_id=row.originator_id, originator_version=row.originator_version,
                    topic=row.topic, state=bytes(row.state))))
                if event.payload is None:
                    continue
                if parse_time(event.logged_at, field="logged_at") >= before:
                    return erased  # log order is time order: nothing later is due
                blank = dataclasses.replace(event, payload=None, salt=None)  # type: ignore[call-arg]
                session.execute(update(table).where(table.c.id == row.id).values(
                    state=ledger.mapper.to_stored_event(blank).state))
                erased += 1
        if progress is not None:
            progress(len(rows))
