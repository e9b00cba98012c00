"""Fixtures: one loopback server per provider for the session, a fresh simulator swapped in for every test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from providers.simulators import GitHubSimulator, SimulatorServer, SlackSimulator


@pytest.fixture(scope="session")
def slack_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(SlackSimulator()) as server:
        yield server


@pytest.fixture(scope="session")
def github_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(GitHubSimulator()) as server:
        yield server


@pytest.fixture
def slack(slack_server: SimulatorServer) -> SlackSimulator:
    simulator = SlackSimulator()
    slack_server.app = simulator
    return simulator


@pytest.fixture
def github(github_server: SimulatorServer) -> GitHubSimulator:
    simulator = GitHubSimulator()
    github_server.app = simulator
    return simulator


@pytest.fixture
def slack_http(slack_server: SimulatorServer, slack: SlackSimulator) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=slack_server.url, timeout=5) as client:
        yield client


@pytest.fixture
def github_http(github_server: SimulatorServer, github: GitHubSimulator) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=github_server.url, timeout=5) as client:
        yield client
