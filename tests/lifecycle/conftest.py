"""Every test here runs on SQLite and on PostgreSQL (skipped loudly when no server is reachable)."""

from tests.support.databases import database_url_on_both as database_url  # noqa: F401 - fixture override
