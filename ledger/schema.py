"""kiroku's own tables beside the eventsourcing event table.

Alembic (migrations/) owns the schema; these definitions are what the code reads and writes and
what the first migration creates. Names are stable: outside tools may query them read-only.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
)

metadata = MetaData()

_BigInt = BigInteger().with_variant(Integer(), "sqlite")

#: One row per log entry: its position, the event row it commits to, the exact leaf bytes.
log_entry = Table(
    "kiroku_log_entry",
    metadata,
    Column("idx", _BigInt, primary_key=True, autoincrement=False),
    Column("notification_id", _BigInt, nullable=False, unique=True),
    Column("leaf", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary, nullable=False),
)

#: Roots of the perfect subtrees of the Merkle tree, levels >= 1 (level 0 is log_entry.leaf_hash).
merkle_node = Table(
    "kiroku_merkle_node",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", _BigInt, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

#: Every checkpoint the operator signed, as the exact note text.
checkpoint = Table(
    "kiroku_checkpoint",
    metadata,
    Column("id", _BigInt, primary_key=True, autoincrement=True),
    Column("tree_size", _BigInt, nullable=False),
    Column("root_hash", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),
    Column("signed_at", Text, nullable=False),
    Index("kiroku_checkpoint_size_idx", "tree_size"),
)

#: Witness cosignatures (C2SP tlog-cosignature/v1) the operator received on its checkpoints:
#: the exact signature line, one per witness and tree size. A checkpoint counts as witnessed when
#: k of the configured witnesses have a row for its size and root (api/witnessing.py).
witness_cosignature = Table(
    "kiroku_witness_cosignature",
    metadata,
    Column("tree_size", _BigInt, primary_key=True, autoincrement=False),
    Column("witness", Text, primary_key=True),  # the witness's vkey
    Column("root_hash", LargeBinary, nullable=False),
    Column("line", Text, nullable=False),
    Column("timestamp", _BigInt, nullable=False),  # the cosignature's own time (POSIX seconds)
    Column("received_at", Text, nullable=False),
)

#: Per witness, the tree size it last cosigned as far as the log knows (from its cosignatures
#: and its 409 answers): the old size of the next add-checkpoint request (C2SP tlog-witness).
witness_state = Table(
    "kiroku_witness_state",
    metadata,
    Column("witness", Text, primary_key=True),  # the witness's vkey
    Column("tree_size", _BigInt, nullable=False),
    Column("updated_at", Text, nullable=False),
)
