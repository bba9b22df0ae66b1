"""kiroku's own tables beside the eventsourcing event table.

Alembic (migrations/) owns the schema; these definitions are what the code reads and writes and
what the first migration creates. Names are stable: outside tools may query them read-only.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
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

# Completeness index (docs/completeness.md): the state as of the latest signed index note.

#: Every provision entry the index has read whose payload was still there: which index key its
#: subject has, whether the resident sees it (not 不開示), and the resident's previous record
#: (a chain from the resident's ``last``, so writes only append in log order: no index on the
#: random keys). Rows below the retention horizon are deleted once their payloads are erased.
completeness_record = Table(
    "kiroku_completeness_record",
    metadata,
    Column("idx", _BigInt, primary_key=True, autoincrement=False),
    Column("index_key", LargeBinary, nullable=False),
    Column("disclosed", Boolean, nullable=False),
    Column("prev", _BigInt, nullable=True),
)

#: Records withheld at the latest index note only by flags that all lapse (disclose_after): when
#: the first checkpoint whose moment reaches ``disclose_after`` (µs since the epoch) is indexed,
#: the record's flags are re-read and it enters the index if nothing else is in force.
completeness_pending = Table(
    "kiroku_completeness_pending",
    metadata,
    Column("idx", _BigInt, primary_key=True, autoincrement=False),
    Column("index_key", LargeBinary, nullable=False),
    Column("disclose_after", _BigInt, nullable=False),
    Index("kiroku_completeness_pending_due_idx", "disclose_after"),
)

#: One row per resident with records: the chain seed, the leaf value and how many disclosed
#: records it chains (0: no leaf), and the resident's latest record (the head of the chain).
completeness_resident = Table(
    "kiroku_completeness_resident",
    metadata,
    Column("index_key", LargeBinary, primary_key=True),
    Column("seed", LargeBinary, nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("count", _BigInt, nullable=False),
    Column("last", _BigInt, nullable=False),
)

#: The sparse Merkle tree's stored positions, 8 levels to a row (ledger.index_tree "Storage").
completeness_stratum = Table(
    "kiroku_completeness_stratum",
    metadata,
    Column("stratum_id", LargeBinary, primary_key=True),
    Column("nodes", LargeBinary, nullable=False),
)

#: Every index note the operator signed, one per indexed tree size.
completeness_note = Table(
    "kiroku_completeness_note",
    metadata,
    Column("tree_size", _BigInt, primary_key=True, autoincrement=False),
    Column("log_root", LargeBinary, nullable=False),
    Column("index_root", LargeBinary, nullable=False),
    Column("retained_from", _BigInt, nullable=False),
    Column("note", Text, nullable=False),
    Column("signed_at", Text, nullable=False),
)

#: The link-code registry (符号; ledger.linkcodes): each code an agency was issued for a resident,
#: and the ledger's internal pseudonym it stands for. Never exported, never in the log: it is
#: what would let one agency's records be linked with another's.
link_code = Table(
    "kiroku_link_code",
    metadata,
    Column("agency", Text, primary_key=True),
    Column("code", Text, primary_key=True),
    Column("subject", Text, nullable=False),
    Column("issued_at", Text, nullable=False),
    Index("kiroku_link_code_agency_subject", "agency", "subject", unique=True),
    Index("kiroku_link_code_code", "code"),
)
