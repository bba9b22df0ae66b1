"""Alerts (docs/alerts.md): residents' subscriptions (e-mail addresses, webhook URLs and their
secrets: personal data, so the operator's own table, never the log, never exported), the outbox
the alert projection fills, and that projection's tracking table.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # eventsourcing_sqlalchemy.models.NotificationTrackingRecord, as the views' tracking tables
    op.create_table(
        "kiroku_alert_tracking",
        sa.Column("application_name", sa.String(length=32), primary_key=True),
        sa.Column("notification_id", BigInt),
    )
    op.create_table(
        "kiroku_alert_subscription",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("confirm_token", sa.Text(), nullable=True),
        sa.Column("confirmed_at", BigInt, nullable=True),
        sa.Column("created_at", BigInt, nullable=False),
    )
    op.create_index("kiroku_alert_subscription_subject", "kiroku_alert_subscription",
                    ["subject"])
    op.create_table(
        "kiroku_alert_outbox",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("record_idx", BigInt, nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", BigInt, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", BigInt, nullable=False),
        sa.Column("sent_at", BigInt, nullable=True),
    )
    op.create_index("kiroku_alert_outbox_due", "kiroku_alert_outbox",
                    ["state", "next_attempt_at"])
    op.create_index("kiroku_alert_outbox_subscription", "kiroku_alert_outbox",
                    ["subscription_id"])


def downgrade() -> None:
    op.drop_table("kiroku_alert_outbox")
    op.drop_table("kiroku_alert_subscription")
    op.drop_table("kiroku_alert_tracking")
