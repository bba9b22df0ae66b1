"""Re-issued resident certificates: which certificate replaced which, and why, in the operator's
own table (api/schema.py, docs/residents.md). Nothing in the log changes.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kiroku_resident_reissue",
        sa.Column("old_cert_sha256", sa.Text(), primary_key=True),
        sa.Column("new_cert_sha256", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reissued_at", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kiroku_resident_reissue")
