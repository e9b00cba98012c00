"""Fixtures: the simulators of the root conftest under short names, and plain HTTP clients for them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from providers.simulators import GitHubSimulator, SimulatorServer, SlackSimulator


@pytest.fixture
def slack(slack_sim: SlackSimulator) -> SlackSimulator:
    return slack_sim


@pytest.fixture
def github(github_sim: GitHubSimulator) -> GitHubSimulator:
    return github_sim


@pytest.fixture
def slack_http(slack_server: SimulatorServer, slack: SlackSimulator) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=slack_server.url, timeout=5) as client:
        yield client


@pytest.fixture
def github_http(github_server: SimulatorServer, github: GitHubSimulator) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=github_server.url, timeout=5) as client:
        yield client
