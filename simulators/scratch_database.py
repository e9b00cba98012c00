"""A scratch PostgreSQL schema for a run against simulators (tests, benchmarks, a fleet of workers): created empty,
reached through a database URL whose connections use it (`search_path`), dropped afterwards, so runs never see each
other's rows.

    with scratch_schema("postgresql://postgres@127.0.0.1:5432/test") as url:
        env["GRANTKEEPER_DATABASE_URL"] = url  # every worker started with it shares the schema
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def printable(url: str) -> str:
    """The URL without its password or query, for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.username or ''}@{parts.hostname or ''}:{parts.port or 5432}{parts.path}"


def postgres_unreachable_reason(url: str) -> str | None:
    """None when a PostgreSQL server answers at `url`; otherwise why not, in words."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except Exception as exc:
        return f"no PostgreSQL at {printable(url)} ({type(exc).__name__}: {str(exc).strip()[:200]})"
    return None


def with_search_path(url: str, schema: str) -> str:
    """`url` with its connections' search_path set to `schema` (any `options` it had are replaced)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@contextmanager
def scratch_schema(url: str) -> Iterator[str]:
    """A fresh, empty schema on the server at `url`; yields a database URL whose connections use it."""
    import psycopg

    schema = f"gk_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_search_path(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
