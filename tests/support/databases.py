"""The databases a test runs on: SQLite always, PostgreSQL when one is reachable.

Each PostgreSQL test gets a schema of its own (`search_path` in the URL), created before and dropped after it, so
tests never see each other's rows and worker processes reach the same schema through `GRANTKEEPER_DATABASE_URL`
(the schema itself: simulators/scratch_database.py, which the benchmarks use too).
Set `GRANTKEEPER_TEST_REQUIRE_POSTGRES=1` (CI does) to turn an unreachable server into an error instead of a skip.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from simulators.scratch_database import DEFAULT_POSTGRES_URL, scratch_schema
from simulators.scratch_database import postgres_unreachable_reason as unreachable_reason

SKIPPED_FOR_POSTGRES: list[str] = []  # test ids skipped because no server answered, for the closing summary


# Read once at import, before the suite's isolation fixture clears GRANTKEEPER_* from the environment.
_POSTGRES_URL = os.environ.get("GRANTKEEPER_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
_POSTGRES_REQUIRED = os.environ.get("GRANTKEEPER_TEST_REQUIRE_POSTGRES", "").lower() in ("1", "true", "yes")


def postgres_url() -> str:
    return _POSTGRES_URL


def postgres_required() -> bool:
    return _POSTGRES_REQUIRED


@functools.cache
def postgres_unreachable_reason() -> str | None:
    """None when the test server answers; otherwise why not (asked once per test session)."""
    return unreachable_reason(postgres_url())


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh, empty schema on the test server; yields a database URL whose connections use it."""
    with scratch_schema(postgres_url()) as url:
        yield url


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
