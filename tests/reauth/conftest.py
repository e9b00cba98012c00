"""Fixtures: grantkeeper's web app served for the test's runtime, and the account owner's browser (httpx2)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.runtime import Runtime
from simulators.person import LinkUser, link_user
from tests.support.web import web_server

SLACK_ALICE = "T0SIMTEAM:U0SIMUSER"  # the Slack simulator's default identity
GITHUB_ALICE = "1"  # the GitHub simulator's default user (octocat, id 1)


@pytest.fixture
def env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # These tests are about the provider side of a link, served over HTTP without sign-in, where agent-made
    # connect links are refused by default. Who may open a link is tested in tests/identity/.
    monkeypatch.setenv("GRANTKEEPER_ALLOW_UNVERIFIED_CONNECT_LINKS", "true")
    return {**env, "GRANTKEEPER_ALLOW_UNVERIFIED_CONNECT_LINKS": "true"}


@pytest.fixture
async def web(runtime: Runtime) -> AsyncIterator[str]:
    async with web_server(runtime) as url:
        yield url


@pytest.fixture
async def user() -> AsyncIterator[LinkUser]:
    async with link_user() as person:
        yield person
