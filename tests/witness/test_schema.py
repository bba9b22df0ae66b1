"""Migration 0005 creates exactly the witness tables the ledger code reads and writes."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine

from ledger.schema import witness_cosignature, witness_state
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database


def _differences(url: str) -> list[object]:
    wanted = MetaData()
    for table in (witness_cosignature, witness_state):
        table.to_metadata(wanted)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={
                "include_name": lambda name, kind, _parent: kind != "table"
                or name in wanted.tables})
            return list(compare_metadata(context, wanted))
    finally:
        engine.dispose()


def test_sqlite_witness_tables_match_the_schema() -> None:
    with sqlite_database() as url:
        assert _differences(url) == []


@pytest.mark.postgres
def test_postgres_witness_tables_match_the_schema() -> None:
    if not postgres_available():
        pytest.skip(PG_SKIP_REASON)
    with postgres_database() as url:
        assert _differences(url) == []
