"""Witness cosignatures on checkpoints and each witness's last cosigned size (C2SP tlog-witness).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "kiroku_witness_cosignature",
        sa.Column("tree_size", _BigInt, primary_key=True, autoincrement=False),
        sa.Column("witness", sa.Text(), primary_key=True),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("timestamp", _BigInt, nullable=False),
        sa.Column("received_at", sa.Text(), nullable=False),
    )
    op.create_table(
        "kiroku_witness_state",
        sa.Column("witness", sa.Text(), primary_key=True),
        sa.Column("tree_size", _BigInt, nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kiroku_witness_state")
    op.drop_table("kiroku_witness_cosignature")
