"""Migrations bring an empty SQLite or PostgreSQL database to the schema the models describe."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from server.vault.database import current_revision, head_revision, make_engine, migrate


def test_workers_starting_together_migrate_an_empty_database_once_to_a_schema_matching_the_models(settings):
    engines = [make_engine(settings.effective_database_url) for _ in range(3)]
    try:
        with ThreadPoolExecutor(3) as pool:  # three workers starting at the same moment
            list(pool.map(migrate, engines))
        assert current_revision(engines[0]) == head_revision() == "0007_signin_flow_address"
        migrate(engines[0])  # already at head: nothing to do
        with engines[0].connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
        assert differences == []
    finally:
        for engine in engines:
            engine.dispose()
