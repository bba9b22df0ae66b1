"""The link-code registry (符号): per-agency codes and the internal pseudonym each stands for
(ledger/linkcodes.py, docs/log-format.md "Provision payload, version 2").

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kiroku_link_code",
        sa.Column("agency", sa.Text(), primary_key=True),
        sa.Column("code", sa.Text(), primary_key=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.Text(), nullable=False),
    )
    # One code per resident and agency; codes are looked up alone to tell "another agency's
    # code" from "no such code".
    op.create_index("kiroku_link_code_agency_subject", "kiroku_link_code", ["agency", "subject"],
                    unique=True)
    op.create_index("kiroku_link_code_code", "kiroku_link_code", ["code"])


def downgrade() -> None:
    op.drop_index("kiroku_link_code_code", table_name="kiroku_link_code")
    op.drop_index("kiroku_link_code_agency_subject", table_name="kiroku_link_code")
    op.drop_table("kiroku_link_code")
