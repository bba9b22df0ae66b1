"""E-applications (docs/applications.md): the operator's table of applications (who applied:
the internal pseudonym, never exported; the receiving agency; where it stands) and the partners
each resident consented to forward an address change to, with the index of each receipt.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "kiroku_application",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("agency", sa.Text(), nullable=False),
        sa.Column("applicant_code", sa.Text(), nullable=False),
        sa.Column("notice", sa.Text(), nullable=False),
        sa.Column("form", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("submitted_idx", BigInt, nullable=False),
        sa.Column("submitted_at", sa.Text(), nullable=False),
        sa.Column("received_idx", BigInt, nullable=True),
        sa.Column("decided_idx", BigInt, nullable=True),
    )
    op.create_index("kiroku_application_subject_idx", "kiroku_application", ["subject"])
    op.create_index("kiroku_application_agency_idx", "kiroku_application", ["agency"])
    op.create_table(
        "kiroku_application_forward",
        sa.Column("application", sa.Text(), primary_key=True),
        sa.Column("partner", sa.Text(), primary_key=True),
        sa.Column("received_idx", BigInt, nullable=True),
        sa.Column("received_at", sa.Text(), nullable=True),
    )
    op.create_index("kiroku_application_forward_partner_idx", "kiroku_application_forward",
                    ["partner"])


def downgrade() -> None:
    op.drop_index("kiroku_application_forward_partner_idx", "kiroku_application_forward")
    op.drop_table("kiroku_application_forward")
    op.drop_index("kiroku_application_agency_idx", "kiroku_application")
    op.drop_index("kiroku_application_subject_idx", "kiroku_application")
    op.drop_table("kiroku_application")
