"""Notices (お知らせ, docs/notices.md): the agencies' resident attributes that group notices are
matched against (never exported, never in the log), the notices view with its tracking table,
and the residents' read marks (kept across view rebuilds: they are not derived from the log).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "kiroku_resident_attribute",
        sa.Column("agency", sa.Text(), primary_key=True),
        sa.Column("subject", sa.Text(), primary_key=True),
        sa.Column("birth_date", sa.Text(), nullable=True),
        sa.Column("municipality", sa.Text(), nullable=True),
        sa.Column("district", sa.Text(), nullable=True),
        sa.Column("household_type", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Text(), nullable=False),
    )
    op.create_index("kiroku_resident_attribute_subject", "kiroku_resident_attribute",
                    ["subject"])
    # eventsourcing_sqlalchemy.models.NotificationTrackingRecord
    op.create_table(
        "kiroku_notice_tracking",
        sa.Column("application_name", sa.String(length=32), primary_key=True),
        sa.Column("notification_id", BigInt),
    )
    op.create_table(
        "kiroku_notice",
        sa.Column("idx", BigInt, primary_key=True, autoincrement=False),
        sa.Column("id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("agency", sa.Text(), nullable=False),
        sa.Column("notice_id", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("title_ja", sa.Text(), nullable=False),
        sa.Column("title_en", sa.Text(), nullable=True),
        sa.Column("body_ja", sa.Text(), nullable=False),
        sa.Column("body_en", sa.Text(), nullable=True),
        sa.Column("valid_from", BigInt, nullable=False),
        sa.Column("valid_until", BigInt, nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("age_min", sa.Integer(), nullable=True),
        sa.Column("age_max", sa.Integer(), nullable=True),
        sa.Column("municipality", sa.Text(), nullable=True),
        sa.Column("district", sa.Text(), nullable=True),
        sa.Column("household_type", sa.Text(), nullable=True),
        sa.Column("form", sa.Text(), nullable=True),
        sa.Column("issued_at", BigInt, nullable=False),
    )
    op.create_index("kiroku_notice_subject", "kiroku_notice", ["subject", "idx"])
    op.create_index("kiroku_notice_agency", "kiroku_notice", ["agency", "idx"])
    op.create_table(
        "kiroku_notice_read",
        sa.Column("notice", sa.Uuid(), primary_key=True),
        sa.Column("subject", sa.Text(), primary_key=True),
        sa.Column("read_at", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kiroku_notice_read")
    op.drop_index("kiroku_notice_agency", "kiroku_notice")
    op.drop_index("kiroku_notice_subject", "kiroku_notice")
    op.drop_table("kiroku_notice")
    op.drop_table("kiroku_notice_tracking")
    op.drop_index("kiroku_resident_attribute_subject", "kiroku_resident_attribute")
    op.drop_table("kiroku_resident_attribute")
