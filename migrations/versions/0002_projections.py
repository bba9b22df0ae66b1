"""Projections: the resident's record view, the per-agency audit tables, and one tracking table per
projection in the exact shape of eventsourcing-sqlalchemy's ``NotificationTrackingRecord``.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TRACKING_TABLES = ("kiroku_resident_tracking", "kiroku_audit_tracking")


def upgrade() -> None:
    for name in TRACKING_TABLES:
        # eventsourcing_sqlalchemy.models.NotificationTrackingRecord
        op.create_table(
            name,
            sa.Column("application_name", sa.String(length=32), primary_key=True),
            sa.Column("notification_id", BigInt),
        )
    op.create_table(
        "kiroku_resident_record",
        sa.Column("idx", BigInt, primary_key=True, autoincrement=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("requested_at", BigInt, nullable=False),
        sa.Column("provided_at", BigInt, nullable=True),
        sa.Column("requester", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.Column("affair", sa.Text(), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("non_disclosure", sa.Boolean(), nullable=False),
    )
    op.create_index("kiroku_resident_record_subject_time", "kiroku_resident_record",
                    ["subject", "requested_at", "idx"])
    op.create_table(
        "kiroku_audit_provision",
        sa.Column("idx", BigInt, primary_key=True, autoincrement=False),
        sa.Column("requester", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("submitter", sa.Text(), nullable=False),
        sa.Column("affair", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("operator", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("requested_at", BigInt, nullable=False),
        sa.Column("non_disclosure", sa.Boolean(), nullable=False),
    )
    op.create_index("kiroku_audit_provision_requester", "kiroku_audit_provision",
                    ["requester", "idx"])
    op.create_index("kiroku_audit_provision_provider", "kiroku_audit_provision",
                    ["provider", "idx"])
    op.create_table(
        "kiroku_audit_count",
        sa.Column("agency", sa.Text(), primary_key=True),
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("affair", sa.Text(), primary_key=True),
        sa.Column("outcome", sa.String(32), primary_key=True),
        sa.Column("reason", sa.Text(), primary_key=True),
        sa.Column("n", BigInt, nullable=False),
        sa.Column("non_disclosed", BigInt, nullable=False),
    )
    op.create_table(
        "kiroku_audit_operator",
        sa.Column("agency", sa.Text(), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("operator", sa.Text(), primary_key=True),
        sa.Column("n", BigInt, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kiroku_audit_operator")
    op.drop_table("kiroku_audit_count")
    op.drop_index("kiroku_audit_provision_provider", table_name="kiroku_audit_provision")
    op.drop_index("kiroku_audit_provision_requester", table_name="kiroku_audit_provision")
    op.drop_table("kiroku_audit_provision")
    op.drop_index("kiroku_resident_record_subject_time", table_name="kiroku_resident_record")
    op.drop_table("kiroku_resident_record")
    for name in reversed(TRACKING_TABLES):
        op.drop_table(name)
