"""Replay protection shared by every worker process.

A request signature's nonce, or a login challenge, may be used once within its validity window.
Each worker first checks its own memory (``NonceCache``), then records the token in the database
table ``kiroku_used_nonce`` under a primary key: a second use, on whichever worker, violates it and
is refused. Expired rows are swept as new ones arrive.

The table lives in the ledger's database but is written through its own connections with SQLite
``synchronous=NORMAL`` (WAL): recording a nonce costs no fsync; a power cut can forget only the
last few, and those could be replayed at most until their clock window closes.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa
from eventsourcing.persistence import IntegrityError as LibraryIntegrityError
from sqlalchemy import delete, insert

from api.errors import Unauthenticated
from api.request_signing import NonceCache
from ledger.storage import KirokuDatastore

used_nonce = sa.Table(
    "kiroku_used_nonce",
    sa.MetaData(),
    sa.Column("scope", sa.Text(), primary_key=True),
    sa.Column("token", sa.Text(), primary_key=True),
    sa.Column("expires_at", sa.Float(), nullable=False),
)

_SWEEP_EVERY = 500  # inserts between deletions of expired rows


class NonceDatastore(KirokuDatastore):
    SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


class SharedNonces:
    """Tokens of one ``scope`` ("request", "challenge"), each usable once until it expires."""

    def __init__(self, datastore: NonceDatastore, scope: str, window: int) -> None:
        self._datastore = datastore
        self._scope = scope
        self._window = window
        self._local = NonceCache(window)
        self._inserts = 0
        self._lock = threading.Lock()

    def check_and_add(self, key_id: str, nonce: str, now: float) -> None:
        self._local.check_and_add(key_id, nonce, now)
        with self._lock:
            self._inserts += 1
            sweep = self._inserts % _SWEEP_EVERY == 0
        try:
            with self._datastore.transaction(commit=True) as session:
                if sweep:
                    session.execute(delete(used_nonce).where(used_nonce.c.expires_at < now))
                session.execute(insert(used_nonce).values(
                    scope=self._scope, token=f"{key_id} {nonce}",
                    expires_at=now + 2 * self._window))
        except (sa.exc.IntegrityError, LibraryIntegrityError):
            raise Unauthenticated(
                "this request signature or challenge was already used (replay refused)") from None
