"""Fixtures: the simulators of the root conftest under short names, and plain HTTP clients for them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from simulators import GitHubSimulator, GoogleSimulator, SimulatorServer, SlackSimulator, ZendeskSimulator


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


@pytest.fixture
def google(google_sim: GoogleSimulator) -> GoogleSimulator:
    return google_sim


@pytest.fixture
def zendesk(zendesk_sim: ZendeskSimulator) -> ZendeskSimulator:
    return zendesk_sim


@pytest.fixture
def google_http(google_server: SimulatorServer, google: GoogleSimulator) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=google_server.url, timeout=5) as client:
        yield client


@pytest.fixture
def zendesk_http(zendesk_server: SimulatorServer, zendesk: ZendeskSimulator) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=zendesk_server.url, timeout=5) as client:
        yield client
