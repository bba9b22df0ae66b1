"""Storage of witness cosignatures on the operator's checkpoints (C2SP tlog-witness).

The ledger keeps what witnesses sent back, exactly as received, and per witness the tree size it
last cosigned (the ``old`` size of the next add-checkpoint request). It does not judge the
cosignatures: the service verifies each one when it arrives and again when it publishes
(api/witnessing.py), with the verifier's code, not the writer's.

Writes are one short transaction each and never take the log's write lock, so a slow or absent
witness cannot hold up appends or checkpoints.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from ledger import checkpoints as cps
from ledger.encoding import format_time, now_utc
from ledger.schema import checkpoint as checkpoint_table
from ledger.schema import witness_cosignature, witness_state
from ledger.storage import writing


@dataclass(frozen=True)
class Cosignature:
    witness: str  # the witness's vkey
    tree_size: int
    root_hash: bytes
    line: str  # the note signature line, with its newline
    timestamp: int


class WitnessRecords:
    """Cosignatures and witness sizes in the ledger's database (tables of migration 0005)."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger
        self.log = ledger.log

    def _upsert(self, session: Any, table: Any, values: dict[str, Any], keys: list[str],
                update: dict[str, Any] | None) -> None:
        dialect = session.get_bind().dialect.name
        insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table).values(**values)
        statement = (insert.on_conflict_do_update(index_elements=keys, set_=update) if update
                     else insert.on_conflict_do_nothing(index_elements=keys))
        session.execute(statement)

    def known_size(self, witness: str) -> int:
        """The size this witness last cosigned as far as the log knows (0: never)."""
        with self.log.transaction(commit=False) as session:
            row = session.execute(select(witness_state.c.tree_size)
                                  .where(witness_state.c.witness == witness)).first()
        return 0 if row is None else int(row.tree_size)

    def set_known_size(self, witness: str, size: int) -> None:
        """Record the size the witness reports (its 409 answer) or just cosigned."""
        values = {"witness": witness, "tree_size": size, "updated_at": format_time(now_utc())}
        with writing(), self.log.transaction(commit=True) as session:
            self._upsert(session, witness_state, values, ["witness"],
                         {"tree_size": size, "updated_at": values["updated_at"]})

    def add(self, cosignature: Cosignature) -> None:
        """Store a verified cosignature and advance the witness's known size, atomically.

        A second cosignature by the same witness on the same size keeps the first.
        """
        now = format_time(now_utc())
        with writing(), self.log.transaction(commit=True) as session:
            self._upsert(session, witness_cosignature, {
                "tree_size": cosignature.tree_size, "witness": cosignature.witness,
                "root_hash": cosignature.root_hash, "line": cosignature.line,
                "timestamp": cosignature.timestamp, "received_at": now},
                ["tree_size", "witness"], None)
            self._upsert(session, witness_state, {
                "witness": cosignature.witness, "tree_size": cosignature.tree_size,
                "updated_at": now}, ["witness"],
                {"tree_size": cosignature.tree_size, "updated_at": now})

    def has(self, witness: str, size: int) -> bool:
        with self.log.transaction(commit=False) as session:
            return session.execute(select(witness_cosignature.c.witness).where(
                witness_cosignature.c.witness == witness,
                witness_cosignature.c.tree_size == size)).first() is not None

    def cosignatures(self, size: int, root: bytes) -> list[Cosignature]:
        with self.log.transaction(commit=False) as session:
            rows = session.execute(select(witness_cosignature).where(
                witness_cosignature.c.tree_size == size,
                witness_cosignature.c.root_hash == root)).all()
        return [Cosignature(r.witness, int(r.tree_size), bytes(r.root_hash), r.line,
                            int(r.timestamp)) for r in rows]

    def candidates(self, witnesses: Collection[str], quorum: int, *, min_size: int = 0,
                   limit: int = 5) -> list[int]:
        """Tree sizes (newest first) with at least ``quorum`` stored cosignatures from
        ``witnesses``; the caller verifies them before counting a checkpoint as witnessed."""
        if not witnesses:
            return []
        with self.log.transaction(commit=False) as session:
            rows = session.execute(
                select(witness_cosignature.c.tree_size)
                .where(witness_cosignature.c.witness.in_(list(witnesses)),
                       witness_cosignature.c.tree_size >= min_size)
                .group_by(witness_cosignature.c.tree_size)
                .having(func.count(witness_cosignature.c.witness) >= max(quorum, 1))
                .order_by(witness_cosignature.c.tree_size.desc()).limit(limit)).all()
        return [int(r.tree_size) for r in rows]

    def checkpoint_at(self, size: int) -> cps.Checkpoint | None:
        """The operator's signed checkpoint of ``size`` (its signature re-checked), if any."""
        with self.log.transaction(commit=False) as session:
            row = session.execute(select(checkpoint_table.c.note)
                                  .where(checkpoint_table.c.tree_size == size)
                                  .order_by(checkpoint_table.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        return cps.open_own(row.note, self.ledger.origin, self.ledger.operator_public_keys)
