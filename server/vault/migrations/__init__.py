"""Alembic migrations for the vault schema (run by `server.vault.database.migrate`)."""
