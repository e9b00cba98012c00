"""Fixtures: simulators on loopback, settings pointing at them, a runtime over a real SQLite vault."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import retry_policy
from server.monitoring.logging import configure_logging
from server.runtime import Runtime
from server.settings import Settings
from simulators import (
    GitHubSimulator,
    GoogleSimulator,
    OAuth2Simulator,
    SimulatorServer,
    SlackSimulator,
    ZendeskSimulator,
)
from simulators.environment import simulator_environment
from tests.support import databases
from tests.support.logs import logging_restored

TEST_VAULT_KEY = "test:" + base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Every line logged during the test, as debug-level JSON: for the tests that search the logs for secrets."""
    stream = io.StringIO()
    with logging_restored():
        configure_logging("debug", "json", stream)
        yield stream


@pytest.fixture
def retry_waits_skipped() -> Iterator[None]:
    """Provider calls are retried exactly as in production, without paying the waits (a Retry-After, a backoff)."""
    with retry_policy.testing():
        yield


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No GRANTKEEPER_ setting from the developer's shell leaks in; the data directory is per test."""
    for key in list(os.environ):
        if key.startswith("GRANTKEEPER_") and key != "GRANTKEEPER_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("GRANTKEEPER_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def slack_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(SlackSimulator()) as server:
        yield server


@pytest.fixture(scope="session")
def github_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(GitHubSimulator()) as server:
        yield server


@pytest.fixture
def slack_sim(slack_server: SimulatorServer) -> SlackSimulator:
    """A fresh Slack simulator per test, served at the session's loopback URL."""
    slack_server.app = SlackSimulator()
    return slack_server.app


@pytest.fixture
def github_sim(github_server: SimulatorServer) -> GitHubSimulator:
    github_server.app = GitHubSimulator()
    return github_server.app


@pytest.fixture(scope="session")
def google_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(GoogleSimulator()) as server:
        yield server


@pytest.fixture(scope="session")
def zendesk_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(ZendeskSimulator()) as server:
        yield server


@pytest.fixture
def google_sim(google_server: SimulatorServer) -> GoogleSimulator:
    google_server.app = GoogleSimulator()
    return google_server.app


@pytest.fixture
def zendesk_sim(zendesk_server: SimulatorServer) -> ZendeskSimulator:
    zendesk_server.app = ZendeskSimulator()
    return zendesk_server.app


@pytest.fixture
def database_url() -> str | None:
    """SQLite in the test's data directory. tests/lifecycle and tests/vault override this to run on both
    SQLite and PostgreSQL (tests/support/databases.py)."""
    return None


@pytest.fixture
def env(
    isolated_environment: Path,
    slack_server: SimulatorServer,
    github_server: SimulatorServer,
    google_server: SimulatorServer,
    zendesk_server: SimulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str | None,
) -> dict[str, str]:
    values = {
        **simulator_environment(
            slack_server.url, github_server.url, google_url=google_server.url, zendesk_url=zendesk_server.url
        ),
        "GRANTKEEPER_HOME": str(isolated_environment),
        "GRANTKEEPER_VAULT_KEY": TEST_VAULT_KEY,
        "GRANTKEEPER_ORG": "acme",
        "GRANTKEEPER_USER": "alice",
        "GRANTKEEPER_RETRY_INITIAL_WAIT_SECONDS": "0.01",
        "GRANTKEEPER_RETRY_MAX_WAIT_SECONDS": "0.05",
    }
    if database_url is not None:
        values["GRANTKEEPER_DATABASE_URL"] = database_url
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return Settings()


@pytest.fixture
async def runtime(settings: Settings) -> Runtime:
    runtime = Runtime.open(settings)
    yield runtime
    await runtime.aclose()


@pytest.fixture
def runtime_sync(settings: Settings) -> Iterator[Runtime]:
    """A runtime for synchronous tests that only use its vault (worker processes do the calls)."""
    import anyio

    runtime = Runtime.open(settings)
    yield runtime
    anyio.run(runtime.aclose)


def pytest_report_header(config: pytest.Config) -> str:
    reason = databases.postgres_unreachable_reason()
    return "postgresql: " + ("reachable, PostgreSQL variants run" if reason is None else f"SKIPPED — {reason}")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    skipped = databases.SKIPPED_FOR_POSTGRES
    if skipped:
        terminalreporter.write_sep(
            "!",
            f"WARNING: {len(skipped)} PostgreSQL test(s) SKIPPED — {databases.postgres_unreachable_reason()}",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def oauth2_server() -> Iterator[SimulatorServer]:
    """The standards-following OAuth 2.0 simulator that declared (custom) providers are tested against."""
    with SimulatorServer(OAuth2Simulator()) as server:
        yield server
