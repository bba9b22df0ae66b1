"""The witness's memory: per log origin, the latest checkpoint it cosigned.

c2sp.org/tlog-witness "add-checkpoint": the witness MUST persist the new checkpoint before
responding, and checking the old size and persisting the new checkpoint must be one atomic step.
Here that step is one SQLite transaction taken with ``BEGIN IMMEDIATE`` (the write lock is held
from the read of the old state to the commit, across threads and processes), in WAL mode with
``synchronous=FULL`` so the commit is on disk (fsync) before ``advance`` returns. A crash at any
point leaves either the old row or the new one, never a state from which the witness could
cosign a second tree of a size it already cosigned.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS witness_checkpoint (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,        -- the checkpoint with the log's signature and our cosignature
    updated_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Latest:
    """The latest cosigned checkpoint of one log."""

    size: int
    root: bytes
    note: str


class WitnessState:
    """Per-origin latest cosigned checkpoint in ``DIR/witness.sqlite3``."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / "witness.sqlite3"
        self._local = threading.local()
        with self._connection() as db:
            db.execute(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def latest(self, origin: str) -> Latest | None:
        row = self._connection().execute(
            "SELECT size, root, note FROM witness_checkpoint WHERE origin = ?", (origin,)
        ).fetchone()
        return None if row is None else Latest(int(row[0]), bytes(row[1]), str(row[2]))

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def advance(self, origin: str, decide: Callable[[Latest | None], tuple[int, bytes, str]]
                ) -> tuple[int, bytes, str]:
        """Atomically read the origin's latest state, let ``decide`` check the request against
        it (raising to refuse), and persist what it returns: ``(size, root, cosigned note)``.

        Returns only after the commit is durable.
        """
        with self._immediate() as db:
            row = db.execute("SELECT size, root, note FROM witness_checkpoint WHERE origin = ?",
                             (origin,)).fetchone()
            current = None if row is None else Latest(int(row[0]), bytes(row[1]), str(row[2]))
            size, root, note = decide(current)
            db.execute(
                "INSERT INTO witness_checkpoint (origin, size, root, note, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(origin) DO UPDATE SET size = excluded.size, "
                "root = excluded.root, note = excluded.note, updated_at = excluded.updated_at",
                (origin, size, root, note, time.time()))
        return size, root, note

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
