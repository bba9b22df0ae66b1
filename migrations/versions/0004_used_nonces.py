"""Single-use request nonces and login challenges, shared by every worker process.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kiroku_used_nonce",
        sa.Column("scope", sa.Text(), primary_key=True),
        sa.Column("token", sa.Text(), primary_key=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_index("kiroku_used_nonce_expiry_idx", "kiroku_used_nonce", ["expires_at"])


def downgrade() -> None:
    op.drop_index("kiroku_used_nonce_expiry_idx", table_name="kiroku_used_nonce")
    op.drop_table("kiroku_used_nonce")
