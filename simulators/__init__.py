"""Loopback simulators of Slack, GitHub, Google (Gmail + Calendar), Zendesk, a standards-following OAuth 2.0
provider (OAuth + APIs) and an OpenID Connect identity provider, with fault injection, for tests, demos and agent developers."""

from .base import FaultError, ProviderSimulator
from .faults import Counters, Faults
from .github import DEFAULT_GITHUB_IDENTITY, GitHubSimulator
from .google import DEFAULT_GOOGLE_IDENTITY, GoogleSimulator
from .grants import GrantFailure, GrantStore, TokenPolicy, TokenSet, TokenStatus, pkce_s256, redact
from .oauth2 import DEFAULT_OAUTH2_IDENTITY, OAuth2Simulator
from .oidc import DEFAULT_PEOPLE, OIDCSimulator, sign_in_over_http
from .server import SimulatorServer
from .slack import DEFAULT_SLACK_IDENTITY, SlackSimulator
from .zendesk import DEFAULT_ZENDESK_IDENTITY, ZendeskSimulator

__all__ = [
    "DEFAULT_GITHUB_IDENTITY",
    "DEFAULT_GOOGLE_IDENTITY",
    "DEFAULT_OAUTH2_IDENTITY",
    "DEFAULT_PEOPLE",
    "DEFAULT_SLACK_IDENTITY",
    "DEFAULT_ZENDESK_IDENTITY",
    "Counters",
    "FaultError",
    "Faults",
    "GitHubSimulator",
    "GoogleSimulator",
    "GrantFailure",
    "GrantStore",
    "OAuth2Simulator",
    "OIDCSimulator",
    "ProviderSimulator",
    "SimulatorServer",
    "SlackSimulator",
    "TokenPolicy",
    "TokenSet",
    "TokenStatus",
    "ZendeskSimulator",
    "pkce_s256",
    "redact",
    "sign_in_over_http",
]
