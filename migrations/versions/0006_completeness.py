"""The completeness index: per-record index keys, records withheld until a time, residents'
leaf values, the sparse Merkle tree's strata and the signed index notes (docs/completeness.md).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "kiroku_completeness_record",
        sa.Column("idx", _BigInt, primary_key=True, autoincrement=False),
        sa.Column("index_key", sa.LargeBinary(), nullable=False),
        sa.Column("disclosed", sa.Boolean(), nullable=False),
        # The resident's previous record: a per-resident chain instead of an index on the
        # random keys, so record writes only append (bench/README.md).
        sa.Column("prev", _BigInt, nullable=True),
    )
    # Records withheld only until a disclose_after (docs/completeness.md "Which records").
    op.create_table(
        "kiroku_completeness_pending",
        sa.Column("idx", _BigInt, primary_key=True, autoincrement=False),
        sa.Column("index_key", sa.LargeBinary(), nullable=False),
        sa.Column("disclose_after", _BigInt, nullable=False),
    )
    op.create_index("kiroku_completeness_pending_due_idx", "kiroku_completeness_pending",
                    ["disclose_after"])
    op.create_table(
        "kiroku_completeness_resident",
        sa.Column("index_key", sa.LargeBinary(), primary_key=True),
        sa.Column("seed", sa.LargeBinary(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("count", _BigInt, nullable=False),
        sa.Column("last", _BigInt, nullable=False),
    )
    # The sparse Merkle tree's positions, 8 levels to a row (ledger.index_tree "Storage").
    op.create_table(
        "kiroku_completeness_stratum",
        sa.Column("stratum_id", sa.LargeBinary(), primary_key=True),
        sa.Column("nodes", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "kiroku_completeness_note",
        sa.Column("tree_size", _BigInt, primary_key=True, autoincrement=False),
        sa.Column("log_root", sa.LargeBinary(), nullable=False),
        sa.Column("index_root", sa.LargeBinary(), nullable=False),
        sa.Column("retained_from", _BigInt, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kiroku_completeness_note")
    op.drop_table("kiroku_completeness_stratum")
    op.drop_table("kiroku_completeness_resident")
    op.drop_index("kiroku_completeness_pending_due_idx", table_name="kiroku_completeness_pending")
    op.drop_table("kiroku_completeness_pending")
    op.drop_table("kiroku_completeness_record")
