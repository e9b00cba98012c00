"""What both benchmarks need: a simulator, a vault on SQLite or PostgreSQL, and the worker environment."""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from simulators import GitHubSimulator, SimulatorServer, SlackSimulator
from simulators.scratch_database import DEFAULT_POSTGRES_URL, postgres_unreachable_reason, scratch_schema

BENCH_VAULT_KEY = "bench:" + base64.urlsafe_b64encode(b"b" * 32).decode().rstrip("=")
# The PostgreSQL server the benchmarks make a scratch schema on: the test suite's.
POSTGRES_URL = os.environ.get("GRANTKEEPER_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


@dataclass
class Bench:
    slack: SlackSimulator
    env: dict[str, str]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def bench_environment(database: str, **settings: str) -> Iterator[Bench]:
    """Simulators on loopback, a fresh vault (`database`: sqlite | postgresql), GRANTKEEPER_* set in os.environ."""
    if database == "postgresql" and (reason := postgres_unreachable_reason(POSTGRES_URL)):
        raise SystemExit(f"cannot run on PostgreSQL: {reason}")
    slack = SlackSimulator()
    with (
        SimulatorServer(slack) as slack_server,
        SimulatorServer(GitHubSimulator()) as github_server,
        tempfile.TemporaryDirectory() as home,
    ):
        env = {
            "GRANTKEEPER_HOME": str(Path(home) / "home"),
            "GRANTKEEPER_VAULT_KEY": BENCH_VAULT_KEY,
            "GRANTKEEPER_ORG": "acme",
            "GRANTKEEPER_USER": "alice",
            "GRANTKEEPER_LOG_LEVEL": "warning",
            "GRANTKEEPER_SLACK_CLIENT_ID": "sim-slack-client",
            "GRANTKEEPER_SLACK_CLIENT_SECRET": "sim-slack-secret",
            "GRANTKEEPER_SLACK_API_BASE_URL": f"{slack_server.url}/api",
            "GRANTKEEPER_SLACK_OAUTH_BASE_URL": slack_server.url,
            "GRANTKEEPER_GITHUB_CLIENT_ID": "sim-github-client",
            "GRANTKEEPER_GITHUB_CLIENT_SECRET": "sim-github-secret",
            "GRANTKEEPER_GITHUB_API_BASE_URL": github_server.url,
            "GRANTKEEPER_GITHUB_OAUTH_BASE_URL": github_server.url,
            **{f"GRANTKEEPER_{k.upper()}": v for k, v in settings.items()},
        }
        with scratch_schema(POSTGRES_URL) if database == "postgresql" else _no_schema() as url:
            if url:
                env["GRANTKEEPER_DATABASE_URL"] = url
            saved = dict(os.environ)
            os.environ.update(env)
            try:
                yield Bench(slack, env)
            finally:
                os.environ.clear()
                os.environ.update(saved)


@contextmanager
def _no_schema() -> Iterator[None]:
    yield None
