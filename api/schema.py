"""The service's one table beside the ledger's: which resident certificate belongs to whom.

Alembic owns it (migrations/versions/0003_api.py). The mapping is held by the log operator, the
way J-LIS holds the link between a JPKI user certificate's serial number and the person: the
certificate itself carries no My Number and no pseudonym.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, MetaData, Table, Text

metadata = MetaData()

#: One row per registered resident certificate (by SHA-256 fingerprint of its DER bytes).
resident_credential = Table(
    "kiroku_resident_credential",
    metadata,
    Column("cert_sha256", Text, primary_key=True),
    Column("issuer", Text, nullable=False),
    Column("serial", Text, nullable=False),
    Column("subject", Text, nullable=False),  # the resident's pseudonym in the log
    Column("registered_at", Text, nullable=False),
    Column("revoked_at", Text, nullable=True),
    Index("kiroku_resident_credential_subject_idx", "subject"),
)

#: Certificates the operator re-issued: the old one is revoked and the new one maps to the same
#: pseudonym (docs/residents.md: a resident who emigrates, 国外転出, loses the card's certificate
#: and keeps access). The reason is a fixed code, never free text: no personal data here.
resident_reissue = Table(
    "kiroku_resident_reissue",
    metadata,
    Column("old_cert_sha256", Text, primary_key=True),
    Column("new_cert_sha256", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("reissued_at", Text, nullable=False),
)
