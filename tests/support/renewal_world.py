"""The world of the renewal tests: a GitHub simulator whose refresh tokens end ten minutes after they are issued."""

from __future__ import annotations

import pytest

from simulators import GitHubSimulator, SimulatorServer

REFRESH_LIFETIME = 600  # seconds a refresh token lives at the simulator
GITHUB_ALICE = "1"  # the simulator's default user


@pytest.fixture
def github_sim_with_ending_refresh_tokens(github_server: SimulatorServer) -> GitHubSimulator:
    github_server.app = GitHubSimulator(access_ttl=3600, refresh_ttl=REFRESH_LIFETIME)
    return github_server.app
