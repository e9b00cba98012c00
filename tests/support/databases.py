"""The databases a test runs on: SQLite always, PostgreSQL when one is reachable.

Each PostgreSQL test gets a schema of its own (`search_path` in the URL), created before and dropped after it, so
tests never see each other's rows and worker processes reach the same schema through `GRANTKEEPER_DATABASE_URL`.
Set `GRANTKEEPER_TEST_REQUIRE_POSTGRES=1` (CI does) to turn an unreachable server into an error instead of a skip.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
SKIPPED_FOR_POSTGRES: list[str] = []  # test ids skipped because no server answered, for the closing summary


# Read once at import, before the suite's isolation fixture clears GRANTKEEPER_* from the environment.
_POSTGRES_URL = os.environ.get("GRANTKEEPER_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
_POSTGRES_REQUIRED = os.environ.get("GRANTKEEPER_TEST_REQUIRE_POSTGRES", "").lower() in ("1", "true", "yes")


def postgres_url() -> str:
    return _POSTGRES_URL


def postgres_required() -> bool:
    return _POSTGRES_REQUIRED


def _printable(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{parts.username or ''}@{host}:{parts.port or 5432}{parts.path}"


@functools.cache
def postgres_unreachable_reason() -> str | None:
    """None when the test server answers; otherwise why not (asked once per test session)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    try:
        psycopg.connect(postgres_url(), connect_timeout=3).close()
    except Exception as exc:
        return f"no PostgreSQL at {_printable(postgres_url())} ({type(exc).__name__}: {str(exc).strip()[:200]})"
    return None


def with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh, empty schema; yields a database URL whose connections use it."""
    import psycopg

    schema = f"gk_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url(), autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_search_path(postgres_url(), schema)
    finally:
        with psycopg.connect(postgres_url(), autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def require_postgres(request: pytest.FixtureRequest) -> None:
    reason = postgres_unreachable_reason()
    if reason is None:
        return
    if postgres_required():
        pytest.fail(f"GRANTKEEPER_TEST_REQUIRE_POSTGRES is set but {reason}")
    SKIPPED_FOR_POSTGRES.append(request.node.nodeid)
    pytest.skip(f"POSTGRESQL TEST SKIPPED: {reason}; set GRANTKEEPER_TEST_POSTGRES_URL to run it")


@pytest.fixture(name="database_url", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url_on_both(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Parametrises a test over SQLite (None: the default file in the test's data directory) and PostgreSQL."""
    if request.param == "sqlite":
        yield None
        return
    require_postgres(request)
    with postgres_schema() as url:
        yield url
