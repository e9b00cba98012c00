"""Hostile arguments and odd answers on every built-in tool: traversal in path arguments and line breaks in header
arguments are refused as `invalid_input` before anything reaches the provider (counted at the simulators), and a
garbled 200 on a read says the answer was malformed, never that a write may have happened."""

from __future__ import annotations

import pytest

from simulators.seeding import seed_account
from tests.support.custom import ACME_CLIENT, acme_declaration, opened_runtime, write_config
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio

# Every built-in provider tool and the arguments that become part of a request path (or, for GitHub's search, the
# repository half of the query). A new tool must be added here, so its path arguments get the hostile cases below.
PATH_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "slack_read_channel": (),
    "slack_post_message": (),
    "github_create_issue": ("repo",),
    "github_search_issues": ("repo",),
    "gmail_search_messages": (),
    "gmail_send_message": (),
    "calendar_create_event": ("calendar_id",),
    "calendar_list_events": ("calendar_id",),
    "zendesk_create_ticket": (),
    "zendesk_list_tickets": (),
    # The guarded proxy tool of each connector: its whole path is checked by providers/proxy_paths.py.
    "slack_request": ("path",),
    "github_request": ("path",),
    "google_request": ("path",),
    "zendesk_request": ("path",),
}
VALID: dict[str, dict] = {
    "github_create_issue": {"repo": "octocat/hello-world", "title": "Bug"},
    "github_search_issues": {"query": "bug", "repo": "octocat/hello-world"},
    "calendar_create_event": {
        "summary": "Review",
        "start": "2026-05-04T10:00:00+02:00",
        "end": "2026-05-04T11:00:00+02:00",
        "calendar_id": "primary",
    },
    "calendar_list_events": {"time_min": "2026-05-04T00:00:00Z", "time_max": "2026-05-05T00:00:00Z", "calendar_id": "primary"},
}
VALID.update({f"{name}_request": {"method": "GET", "path": "/anything"} for name in ("slack", "github", "google", "zendesk")})
CONNECTOR = {
    "github": "github",
    "calendar": "google",
    "gmail": "google",
    "google": "google",
    "slack": "slack",
    "zendesk": "zendesk",
}

SEGMENT_ATTACKS = ["..", ".", "", "a/b", "../x", "%2e%2e", "%2F", "a\\b", "a\x00b", "a\nb", "a\x85b", "a\u2028b"]
REPOSITORY_ATTACKS = [
    "octocat/..",
    "octocat/.",
    "../hello-world",
    "./hello-world",
    "octocat/",
    "/hello-world",
    "octocat/a/b",
    "octocat/%2e%2e",
    "octocat/a\\b",
    "octocat/a\x00b",
    "octo\ncat/x",
    "octocat",
    "octocat/hello world",
]
# (An empty proxy path is refused by the tool's input schema, min_length 1, before the tool runs.)
PATH_ATTACKS = [
    "/../_sim/stats",
    "/a/../../_sim/stats",
    "/%2e%2e/_sim/stats",
    "/%2E%2E",
    "/a/%252e%252e/x",
    "..",
    "/a\\b",
    "/a\x00b",
    "/a\nb",
    "/a\u2028b",
    "//evil.example/x",
    "https://evil.example/x",
    "/a/%2fb",
]
HOSTILE = {"repo": REPOSITORY_ATTACKS, "calendar_id": SEGMENT_ATTACKS, "path": PATH_ATTACKS}
REASON = {"repo": "unsafe_argument", "calendar_id": "unsafe_argument", "path": "unsafe_path"}


def all_sims(github_sim, google_sim, slack_sim, zendesk_sim):
    return {"github": github_sim, "google": google_sim, "slack": slack_sim, "zendesk": zendesk_sim}


async def test_every_built_in_provider_tool_is_covered(runtime):
    async with mcp_client(runtime) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    built_in = {name for name in names if name.split("_", 1)[0] in CONNECTOR}
    assert built_in == set(PATH_ARGUMENTS)


@pytest.mark.parametrize(
    ("tool", "argument", "value"),
    [
        (tool, argument, value)
        for tool, arguments in PATH_ARGUMENTS.items()
        for argument in arguments
        for value in HOSTILE[argument]
    ],
)
async def test_traversal_in_a_path_argument_is_invalid_input_with_nothing_sent(
    runtime, settings, github_sim, google_sim, slack_sim, zendesk_sim, tool, argument, value
):
    sims = all_sims(github_sim, google_sim, slack_sim, zendesk_sim)
    connector = CONNECTOR[tool.split("_", 1)[0]]
    seed_account(settings, runtime.vault, connector, sims[connector].issue_grant())

    async with mcp_client(runtime) as client:
        result = await call(client, tool, {**VALID[tool], argument: value})

    assert result["status"] == "invalid_input", result
    assert result["reason"] == REASON[argument]
    assert {name: (sim.counters.api_requests, sim.counters.token_requests) for name, sim in sims.items()} == {
        name: (0, 0) for name in sims
    }


async def test_a_valid_repository_and_calendar_still_work(runtime, settings, github_sim, google_sim):
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant())
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    async with mcp_client(runtime) as client:
        issue = await call(client, "github_create_issue", {"repo": "octocat/hello-world", "title": "Bug"})
        events = await call(client, "calendar_list_events", VALID["calendar_list_events"])
    assert issue["status"] == "ok" and events["status"] == "ok"


@pytest.mark.parametrize(
    "subject",
    [
        "vertical\x0btab",
        "next\x85line",
        "line\u2028separator",
        "paragraph\u2029separator",
        "injected\r\nBcc: eve@example.com",
        "bare\nLF",
        "bare\rCR",
        "nul\x00byte",
    ],
)
async def test_a_subject_that_would_break_its_header_is_refused_before_sending(runtime, settings, google_sim, subject):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    async with mcp_client(runtime) as client:
        result = await call(client, "gmail_send_message", {"to": ["bob@example.com"], "subject": subject, "body": "hi"})

    assert result == {**result, "status": "invalid_input", "reason": "invalid_header_value"}
    assert google_sim.counters.api_requests == 0 and google_sim.sent_messages() == []


READS = [
    ("github_search_issues", {"query": "bug"}),
    ("gmail_search_messages", {"query": "is:unread"}),
    ("calendar_list_events", VALID["calendar_list_events"]),
    ("zendesk_list_tickets", {}),
    ("slack_read_channel", {"channel": "C0GENERAL"}),
]


@pytest.mark.parametrize(("tool", "arguments"), READS)
async def test_a_garbled_200_on_a_read_is_malformed_not_outcome_unknown(
    runtime, settings, github_sim, google_sim, slack_sim, zendesk_sim, tool, arguments
):
    sims = all_sims(github_sim, google_sim, slack_sim, zendesk_sim)
    sim = sims[CONNECTOR[tool.split("_", 1)[0]]]
    seed_account(settings, runtime.vault, CONNECTOR[tool.split("_", 1)[0]], sim.issue_grant())
    sim.garble(count=1)

    async with mcp_client(runtime) as client:
        result = await call(client, tool, arguments)

    assert result["status"] == "upstream_error", result
    assert result["reason"] == "malformed_response" and result["outcome_unknown"] is False
    assert sim.counters.hostile_answers == 1


async def test_a_garbled_200_to_a_send_leaves_the_outcome_unknown(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    google_sim.garble(count=1)
    async with mcp_client(runtime) as client:
        mail = await call(client, "gmail_send_message", {"to": ["bob@example.com"], "subject": "Hi", "body": "hi"})
    assert mail == {**mail, "status": "upstream_error", "reason": "malformed_response", "outcome_unknown": True}
    assert google_sim.counters.api_requests == 1


async def test_a_garbled_200_to_a_slack_post_is_looked_for_before_posting_again(runtime, settings, slack_sim):
    # Slack's answer is not Slack's shape: outcome unknown, so the post's idempotency key is looked for first.
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.garble(count=1)  # the simulator's garbled answer never did the work
    async with mcp_client(runtime) as client:
        post = await call(client, "slack_post_message", {"channel": "C0GENERAL", "text": "deploy done"})
    assert post["status"] == "ok"
    assert slack_sim.counters.endpoint("chat.postMessage") == 2 and slack_sim.counters.endpoint("conversations.history") == 1
    assert [m["text"] for m in slack_sim.messages("C0GENERAL")].count("deploy done") == 1


async def test_a_post_that_never_connected_is_not_outcome_unknown(runtime, settings, slack_sim, monkeypatch):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    connector = runtime.connectors["slack"]
    dead = connector.spec.model_copy(update={"api_base_url": "http://127.0.0.1:9/api"})
    monkeypatch.setitem(
        runtime.connectors, "slack", type(connector)(connector.provider, dead, connector.client_id, connector.client_secret)
    )
    async with mcp_client(runtime) as client:
        result = await call(client, "slack_post_message", {"channel": "C0GENERAL", "text": "deploy done"})
    assert result == {**result, "status": "upstream_error", "reason": "unreachable", "outcome_unknown": False}


async def test_a_megabyte_id_on_a_declared_delete_is_invalid_input(env, oauth2_server, isolated_environment, monkeypatch):
    for key, value in ACME_CLIENT.items():
        monkeypatch.setenv(key, value)
    from simulators import OAuth2Simulator

    oauth2_server.app = sim = OAuth2Simulator()
    write_config(isolated_environment, acme_declaration(oauth2_server.url))
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_delete_project", {"project_id": "p" * 1_000_000})

    assert result == {**result, "status": "invalid_input", "reason": "request_too_large"}
    assert sim.requests == []


@pytest.mark.parametrize("message_id", ["..", "../../users/bob/messages", "%2e%2e"])
async def test_a_message_id_from_the_provider_cannot_steer_the_next_request(
    runtime, settings, google_sim, monkeypatch, message_id
):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    monkeypatch.setattr(google_sim, "_new_message_id", lambda: message_id)  # the provider's answer turns hostile
    google_sim.seed_message("alice@example.com", sender="eve@example.com", subject="hostile", body="x")
    async with mcp_client(runtime) as client:
        result = await call(client, "gmail_search_messages", {"query": "from:eve"})

    assert result == {**result, "status": "upstream_error", "reason": "malformed_response", "outcome_unknown": False}
    assert google_sim.counters.endpoint("messages.list") == 1 and google_sim.counters.endpoint("messages.get") == 0
