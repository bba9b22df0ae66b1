"""The API's mapping of resident certificates to pseudonyms (api/schema.py).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kiroku_resident_credential",
        sa.Column("cert_sha256", sa.Text(), primary_key=True),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("serial", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("registered_at", sa.Text(), nullable=False),
        sa.Column("revoked_at", sa.Text(), nullable=True),
    )
    op.create_index("kiroku_resident_credential_subject_idx", "kiroku_resident_credential",
                    ["subject"])


def downgrade() -> None:
    op.drop_index("kiroku_resident_credential_subject_idx",
                  table_name="kiroku_resident_credential")
    op.drop_table("kiroku_resident_credential")
