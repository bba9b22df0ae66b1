"""The ledger: eventsourcing's event table (exact library shape), the log entries with their hash
chain, the Merkle tree's stored subtree roots, and signed checkpoints.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy_utils.types.uuid import UUIDType

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Shape of eventsourcing_sqlalchemy.models.StoredEventRecord for the application "Ledger".
    op.create_table(
        "ledger_events",
        sa.Column("id", BigInt, primary_key=True, autoincrement=True),
        sa.Column("originator_id", UUIDType(), nullable=False),
        sa.Column("originator_version", BigInt, nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
    )
    op.create_index(
        "ledger_events_aggregate_idx",
        "ledger_events",
        ["originator_id", "originator_version"],
        unique=True,
    )
    op.create_table(
        "kiroku_log_entry",
        sa.Column("idx", BigInt, primary_key=True, autoincrement=False),
        sa.Column("notification_id", BigInt, nullable=False, unique=True),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "kiroku_merkle_node",
        sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("idx", BigInt, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "kiroku_checkpoint",
        sa.Column("id", BigInt, primary_key=True, autoincrement=True),
        sa.Column("tree_size", BigInt, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.Text(), nullable=False),
    )
    op.create_index("kiroku_checkpoint_size_idx", "kiroku_checkpoint", ["tree_size"])


def downgrade() -> None:
    op.drop_table("kiroku_checkpoint")
    op.drop_table("kiroku_merkle_node")
    op.drop_table("kiroku_log_entry")
    op.drop_index("ledger_events_aggregate_idx", table_name="ledger_events")
    op.drop_table("ledger_events")
