"""Settings that point grantkeeper at the built-in provider simulators. `grantkeeper demo` (the example triage
agent, examples/triage_agent/demo.py), the tests and agent developers use them."""

from __future__ import annotations


def simulator_environment(
    slack_url: str, github_url: str, *, google_url: str | None = None, zendesk_url: str | None = None
) -> dict[str, str]:
    """Settings that point grantkeeper at simulators (the demo, the tests and agent developers use them)."""
    extra: dict[str, str] = {}
    if google_url:
        extra |= {
            "GRANTKEEPER_GOOGLE_CLIENT_ID": "sim-google-client",
            "GRANTKEEPER_GOOGLE_CLIENT_SECRET": "sim-google-secret",
            "GRANTKEEPER_GOOGLE_API_BASE_URL": google_url,
            "GRANTKEEPER_GOOGLE_OAUTH_BASE_URL": google_url,
        }
    if zendesk_url:
        # Zendesk has no default host; its OAuth endpoints live on the same (per-customer) host as the API.
        extra |= {
            "GRANTKEEPER_ZENDESK_CLIENT_ID": "sim-zendesk-client",
            "GRANTKEEPER_ZENDESK_CLIENT_SECRET": "sim-zendesk-secret",
            "GRANTKEEPER_ZENDESK_API_BASE_URL": zendesk_url,
        }
    return {
        "GRANTKEEPER_SLACK_CLIENT_ID": "sim-slack-client",
        "GRANTKEEPER_SLACK_CLIENT_SECRET": "sim-slack-secret",
        "GRANTKEEPER_SLACK_API_BASE_URL": f"{slack_url}/api",
        "GRANTKEEPER_SLACK_OAUTH_BASE_URL": slack_url,
        "GRANTKEEPER_GITHUB_CLIENT_ID": "sim-github-client",
        "GRANTKEEPER_GITHUB_CLIENT_SECRET": "sim-github-secret",
        "GRANTKEEPER_GITHUB_API_BASE_URL": github_url,
        "GRANTKEEPER_GITHUB_OAUTH_BASE_URL": github_url,
        **extra,
    }
