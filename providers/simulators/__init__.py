"""Loopback simulators of Slack and GitHub OAuth + APIs, with fault injection, for tests, demos and agent developers."""

from .base import FaultError, ProviderSimulator
from .faults import Counters, Faults
from .github import DEFAULT_GITHUB_IDENTITY, GitHubSimulator
from .grants import GrantFailure, GrantStore, TokenPolicy, TokenSet, TokenStatus, pkce_s256, redact
from .server import SimulatorServer
from .slack import DEFAULT_SLACK_IDENTITY, SlackSimulator

__all__ = [
    "DEFAULT_GITHUB_IDENTITY",
    "DEFAULT_SLACK_IDENTITY",
    "Counters",
    "FaultError",
    "Faults",
    "GitHubSimulator",
    "GrantFailure",
    "GrantStore",
    "ProviderSimulator",
    "SimulatorServer",
    "SlackSimulator",
    "TokenPolicy",
    "TokenSet",
    "TokenStatus",
    "pkce_s256",
    "redact",
]
