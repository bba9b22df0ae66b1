"""Non-disclosure as events, delayed disclosure and proxies: the views' flag tables
(projections/schema.py), an index to find a record by provision id, and the operator's proxy
registrations (ledger/proxies.py).

The resident and audit views are emptied and their positions reset, so the runner replays them
from index 0 with the flags that provision payloads set themselves (views are derived data;
docs/projections.md). Until it has caught up (about 20,000 entries a second) readers see fewer
records, never a withheld one.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_VIEW_TABLES = ("kiroku_resident_record", "kiroku_audit_provision", "kiroku_audit_count",
                "kiroku_audit_operator")
_TRACKING = ("kiroku_resident_tracking", "kiroku_audit_tracking")


def _reset_views() -> None:
    for table in (*_VIEW_TABLES, *_TRACKING):
        op.execute(sa.text(f"DELETE FROM {table}"))


def upgrade() -> None:
    op.create_table(
        "kiroku_resident_flag",
        sa.Column("idx", _BigInt, primary_key=True, autoincrement=False),
        sa.Column("flag", sa.String(32), primary_key=True),
        sa.Column("disclose_after", _BigInt, nullable=True),
    )
    op.create_table(
        "kiroku_record_flag",
        sa.Column("idx", _BigInt, primary_key=True, autoincrement=False),
        sa.Column("provision", sa.Uuid(), nullable=False),
        sa.Column("agency", sa.Text(), nullable=False),
        sa.Column("flag", sa.String(32), nullable=False),
        sa.Column("is_set", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("disclose_after", _BigInt, nullable=True),
        sa.Column("logged_at", _BigInt, nullable=False),
    )
    op.create_index("kiroku_record_flag_provision", "kiroku_record_flag", ["provision", "idx"])
    op.create_index("kiroku_resident_record_id", "kiroku_resident_record", ["id"])
    op.create_table(
        "kiroku_proxy",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("relationship", sa.Text(), nullable=False),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("registered_at", sa.Text(), nullable=False),
        sa.Column("registered_idx", _BigInt, nullable=False),
        sa.Column("cancelled_at", sa.Text(), nullable=True),
        sa.Column("cancelled_idx", _BigInt, nullable=True),
        sa.Column("cancelled_by", sa.Text(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
    )
    op.create_index("kiroku_proxy_principal_idx", "kiroku_proxy", ["principal"])
    op.create_index("kiroku_proxy_holder_idx", "kiroku_proxy", ["holder"])
    _reset_views()


def downgrade() -> None:
    op.drop_index("kiroku_proxy_holder_idx", table_name="kiroku_proxy")
    op.drop_index("kiroku_proxy_principal_idx", table_name="kiroku_proxy")
    op.drop_table("kiroku_proxy")
    op.drop_index("kiroku_resident_record_id", table_name="kiroku_resident_record")
    op.drop_index("kiroku_record_flag_provision", table_name="kiroku_record_flag")
    op.drop_table("kiroku_record_flag")
    op.drop_table("kiroku_resident_flag")
    _reset_views()  # replayed without flags, as before this revision
