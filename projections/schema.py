"""The projections' tables. Alembic (migrations/versions/0002_projections.py) creates them; these
definitions are what the code reads and writes.

Times are stored as integer microseconds since the Unix epoch (UTC), so they sort and compare the
same way on SQLite and PostgreSQL whatever the text form the agency used. Rows carry the log index
(``idx``) of the entry they come from: that is what ``as_of`` filters on.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)

metadata = MetaData()

_BigInt = BigInteger().with_variant(Integer(), "sqlite")

#: Tracking tables, one per projection, in the exact shape of eventsourcing-sqlalchemy's
#: ``NotificationTrackingRecord`` (one row per upstream application: its last processed
#: notification id).
RESIDENT_TRACKING = "kiroku_resident_tracking"
AUDIT_TRACKING = "kiroku_audit_tracking"

#: The resident's record view: one row per provision entry, non-disclosed ones included (they are
#: filtered out at query time, and counted for auditors).
resident_record = Table(
    "kiroku_resident_record",
    metadata,
    Column("idx", _BigInt, primary_key=True, autoincrement=False),
    Column("id", Uuid(), nullable=False),
    Column("subject", Text, nullable=False),
    Column("requested_at", _BigInt, nullable=False),
    Column("provided_at", _BigInt, nullable=True),
    Column("requester", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("basis", Text, nullable=False),
    Column("affair", Text, nullable=False),
    Column("items", Text, nullable=False),  # JSON array of item codes, in the statement's order
    Column("outcome", Text, nullable=False),
    Column("reason", Text, nullable=True),
    Column("non_disclosure", Boolean, nullable=False),
    Index("kiroku_resident_record_subject_time", "subject", "requested_at", "idx"),
)

#: The audit detail: one row per provision entry, for anomaly detection and ``as_of`` reports.
audit_provision = Table(
    "kiroku_audit_provision",
    metadata,
    Column("idx", _BigInt, primary_key=True, autoincrement=False),
    Column("requester", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("submitter", Text, nullable=False),
    Column("affair", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("reason", Text, nullable=True),
    Column("operator", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("requested_at", _BigInt, nullable=False),
    Column("non_disclosure", Boolean, nullable=False),
    Index("kiroku_audit_provision_requester", "requester", "idx"),
    Index("kiroku_audit_provision_provider", "provider", "idx"),
)

#: Counts per agency × role × month (JST) × affair × outcome × reason ('' when none).
audit_count = Table(
    "kiroku_audit_count",
    metadata,
    Column("agency", Text, primary_key=True),
    Column("role", String(16), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("affair", Text, primary_key=True),
    Column("outcome", String(32), primary_key=True),
    Column("reason", Text, primary_key=True),
    Column("n", _BigInt, nullable=False),
    Column("non_disclosed", _BigInt, nullable=False),
)

#: Requests per requesting agency × month (JST) × staff operator.
audit_operator = Table(
    "kiroku_audit_operator",
    metadata,
    Column("agency", Text, primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("operator", Text, primary_key=True),
    Column("n", _BigInt, nullable=False),
)

# Flags (projections/flags.py; migrations/versions/0008_disclosure.py) -------------------------

#: The resident view's flags in force: one row per (record, flag) while the flag is set;
#: ``disclose_after`` (µs) ends it without a further entry, NULL keeps it until lifted. Whether a
#: record is shown is decided when it is read, against the current time.
resident_flag = Table(
    "kiroku_resident_flag",
    metadata,
    Column("idx", _BigInt, primary_key=True, autoincrement=False),  # the record's log index
    Column("flag", String(32), primary_key=True),
    Column("disclose_after", _BigInt, nullable=True),
)

#: The audit view's flag history: every change in log order (the provision's own entry for a
#: flag its payload set, with reason "recorded", else the provision.flagged entry).
record_flag = Table(
    "kiroku_record_flag",
    metadata,
    Column("idx", _BigInt, primary_key=True, autoincrement=False),  # the changing entry
    Column("provision", Uuid(), nullable=False),
    Column("agency", Text, nullable=False),  # who signed the change
    Column("flag", String(32), nullable=False),
    Column("is_set", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("disclose_after", _BigInt, nullable=True),
    Column("logged_at", _BigInt, nullable=False),
    Index("kiroku_record_flag_provision", "provision", "idx"),
)

#: Flags name a provision by id; the resident view finds its row through this index.
resident_record_id = Index("kiroku_resident_record_id", resident_record.c.id)
