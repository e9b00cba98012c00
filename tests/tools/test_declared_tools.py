"""Tools of a provider declared in config.toml, called through the real MCP client against the OAuth 2.0
simulator on loopback: schemas, refresh and retry, the declared error vocabulary, writes, and path safety."""

from __future__ import annotations

import anyio
import pytest

from simulators import OAuth2Simulator, SimulatorServer, redact
from simulators.seeding import seed_account
from tests.support.custom import acme_declaration, opened_runtime, write_config
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
FAILURE_STATUSES = {"reauth_required", "admin_action_required", "rate_limited", "upstream_error", "invalid_input"}


# ---- what the agent sees -----------------------------------------------------------------------------
async def test_declared_tools_are_listed_with_the_declared_input_schema_and_annotations(declare):
    declare()
    async with opened_runtime() as runtime, mcp_client(runtime) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert {
        "acme_list_projects",
        "acme_get_project",
        "acme_create_project",
        "acme_create_project_once",
        "acme_delete_project",
        "slack_read_channel",
        "accounts_list",
    } <= set(tools)
    listing = tools["acme_list_projects"]
    assert listing.title == "List Acme projects"
    assert listing.description == "List the projects the connected Acme user can see."
    properties = listing.input_schema["properties"]
    assert (
        properties["limit"].items()
        >= {"type": "integer", "minimum": 1, "maximum": 100, "default": 20, "description": "at most this many"}.items()
    )
    assert properties["status"]["anyOf"][0] == {"enum": ["active", "archived"], "type": "string"}
    assert "required" not in listing.input_schema
    assert tools["acme_get_project"].input_schema["required"] == ["project_id"]
    assert tools["acme_get_project"].input_schema["properties"]["project_id"]["minLength"] == 1
    create = tools["acme_create_project"]
    assert create.input_schema["required"] == ["name"] and "summary" in create.input_schema["properties"]
    assert "idempotency_key" in tools["acme_create_project_once"].input_schema["properties"]
    hints = {
        name: (t.annotations.read_only_hint, t.annotations.idempotent_hint, t.annotations.destructive_hint)
        for name, t in tools.items()
        if name.startswith("acme_") and name != "acme_request"
    }
    assert hints == {
        "acme_list_projects": (True, True, False),
        "acme_get_project": (True, True, False),
        "acme_create_project": (False, False, False),
        "acme_create_project_once": (False, True, False),
        "acme_delete_project": (False, True, True),
    }


async def test_declared_tools_publish_the_standard_result_union(declare):
    declare()
    async with opened_runtime() as runtime, mcp_client(runtime) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    schema = tools["acme_list_projects"].output_schema
    assert schema["type"] == "object" and "discriminator" not in schema
    branches = [schema["$defs"][ref["$ref"].rsplit("/", 1)[1]] for ref in schema["oneOf"]]
    statuses = {branch["properties"]["status"]["const"] for branch in branches}
    assert statuses == {"ok"} | FAILURE_STATUSES
    ok = next(b for b in branches if b["properties"]["status"]["const"] == "ok")
    assert {"http_status", "data", "text", "truncated", "size_bytes"} <= set(ok["properties"])


async def test_dotted_naming_exposes_the_canonical_names(declare, monkeypatch):
    declare()
    monkeypatch.setenv("GRANTKEEPER_TOOL_NAMES", "dotted")
    async with opened_runtime() as runtime, mcp_client(runtime) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert {"acme.list_projects", "acme.get_project", "acme.create_project"} <= names


async def test_a_call_returns_the_http_status_and_json_body(declare):
    sim = declare()
    sim.add_project("Apollo")
    sim.add_project("Gemini", status="archived")
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            listed = await call(client, "acme_list_projects", {"status": "archived", "limit": 5})
            one = await call(client, "acme_get_project", {"project_id": "p-1"})
            missing = await call(client, "acme_get_project", {"project_id": "p-404"})

    assert listed["status"] == "ok" and listed["http_status"] == 200 and listed["truncated"] is False
    assert listed["data"] == {
        "projects": [{"id": "p-2", "name": "Gemini", "description": None, "status": "archived", "owner": "user-1"}],
        "total": 1,
    }
    assert one["data"]["name"] == "Apollo"
    assert missing["status"] == "invalid_input" and missing["reason"] == "not_found"
    assert sim.requested_paths()[-3:] == ["/api/projects?limit=5&status=archived", "/api/projects/p-1", "/api/projects/p-404"]


async def test_arguments_outside_the_declared_constraints_never_reach_the_provider(declare):
    sim = declare()
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            too_many = await client.call_tool("acme_list_projects", {"limit": 500})
            not_in_enum = await client.call_tool("acme_list_projects", {"status": "deleted"})
            no_name = await client.call_tool("acme_create_project", {})

    for result in (too_many, not_in_enum, no_name):
        assert result.is_error
    assert "less than or equal to 100" in too_many.content[0].text
    assert sim.counters.api_requests == 0


async def test_body_parameters_are_sent_under_their_api_names(declare):
    sim = declare()
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            created = await call(client, "acme_create_project", {"name": "Zeus", "summary": "thunder"})

    assert created["http_status"] == 201 and created["data"]["description"] == "thunder"
    assert sim.projects() == [created["data"]]


async def test_a_body_over_the_limit_is_cut_and_flagged(declare):
    sim = declare(extra="max_response_bytes = 256")
    for number in range(20):
        sim.add_project(f"Project number {number}")
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            result = await client.call_tool("acme_list_projects", {})

    listed = result.structured_content
    assert listed["status"] == "ok" and listed["truncated"] is True and listed["data"] is None
    assert len(listed["text"].encode()) <= 256 < listed["size_bytes"]
    assert listed["text"].startswith('{"projects":[{"id":"p-1"')
    assert f"cut at 256 of {listed['size_bytes']} bytes" in result.content[0].text


# ---- tokens --------------------------------------------------------------------------------------------
async def test_concurrent_calls_with_an_expired_token_make_one_refresh_and_store_the_rotated_token(declare):
    sim = declare()
    tokens = sim.issue_grant()
    async with opened_runtime() as runtime:
        account = seed_account(runtime.settings, runtime.vault, "acme", tokens, expired=True)
        statuses: list[str] = []
        async with mcp_client(runtime) as client:

            async def one() -> None:
                statuses.append((await call(client, "acme_list_projects", {"limit": 1}))["status"])

            async with anyio.create_task_group() as group:
                for _ in range(12):
                    group.start_soon(one)
        stored = runtime.vault.credentials.read(account.id)

    assert statuses == ["ok"] * 12
    assert sim.counters.token_requests == 1 and sim.counters.refreshes_ok == 1
    assert sim.counters.reuse_detections == 0
    [grant] = sim.grants.grants()
    assert grant["rotations"] == 1 and grant["state"] == "active"
    assert stored.version == 2
    assert stored.refresh_token != tokens.refresh_token
    assert redact(stored.refresh_token) == grant["refresh_token"]  # the live one, i.e. the rotated token


async def test_invalid_token_mid_call_refreshes_once_and_sends_the_request_once_more(declare):
    sim = declare()
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        sim.expire_access_tokens()  # RFC 6750: 401 + WWW-Authenticate: Bearer error="invalid_token"
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_list_projects", {})

    assert result["status"] == "ok"
    assert sim.counters.token_requests == 1
    assert sim.counters.endpoint("GET /api/projects") == 2


async def test_a_revoked_grant_needs_the_user_and_is_not_retried(declare):
    sim = declare()
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        sim.revoke()
        async with mcp_client(runtime) as client:
            first = await call(client, "acme_list_projects", {})
            second = await call(client, "acme_get_project", {"project_id": "p-1"})

    assert first["status"] == second["status"] == "reauth_required"
    assert first["reason"] == "refresh_token_revoked" and "/connect/" in first["magic_link"]
    assert sim.counters.token_requests == 1
    assert sim.counters.api_requests == 1  # the second call never reached Acme


async def test_a_token_endpoint_using_basic_client_authentication_is_honoured(declare):
    sim = declare(extra='client_auth_method = "client_secret_basic"', auth_methods=("client_secret_basic",))
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant(), expired=True)
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_list_projects", {})
    assert result["status"] == "ok" and sim.counters.refreshes_ok == 1


# ---- the declared error vocabulary -------------------------------------------------------------------
EXPIRED_403 = (
    '[[custom_providers.acme.errors.api]]\nstatus = 403\nfield = "error.code"\nequals = "TOKEN_EXPIRED"\nverdict = "expired"\n'
)


@pytest.mark.parametrize(("declared", "expected"), [(True, "ok"), (False, "admin_action_required")])
async def test_a_declared_api_answer_for_expiry_triggers_refresh_and_retry(declare, declared, expected):
    sim = declare(extra=EXPIRED_403 if declared else "", expired_token_response=(403, {"error": {"code": "TOKEN_EXPIRED"}}))
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        sim.expire_access_tokens()
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_list_projects", {})

    assert result["status"] == expected
    assert sim.counters.token_requests == (1 if declared else 0)


@pytest.mark.parametrize(("declared", "expected"), [(True, "reauth_required"), (False, "upstream_error")])
async def test_a_declared_refresh_error_code_means_the_refresh_token_is_dead(declare, declared, expected):
    sim = declare(
        extra='errors.refresh_token_rejected = ["expired_refresh_token"]' if declared else "",
        refresh_error=("expired_refresh_token", 400),
    )
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant(), expired=True)
        sim.revoke()
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_list_projects", {})
        status = runtime.vault.accounts.find("acme", "alice", "acme").status

    assert result["status"] == expected
    # Undeclared, the code means nothing to us: the grant is not given up on, the call may be tried again.
    assert status == ("reauth_required" if declared else "active")


async def test_a_declared_rule_can_mark_the_account_inactive(declare):
    sim = declare(
        extra='[[custom_providers.acme.errors.api]]\nstatus = 403\nfield = "error"\n'
        'equals = "account_disabled"\nverdict = "inactive"\nmessage = "The Acme user is disabled."\n'
    )
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        sim.deactivate()
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_list_projects", {})
        status = runtime.vault.accounts.find("acme", "alice", "acme").status

    assert result["status"] == "admin_action_required" and result["reason"] == "account_disabled"
    assert status == "admin_action_required"


# ---- retries and writes -------------------------------------------------------------------------------
async def test_a_post_that_fails_ambiguously_is_not_repeated(declare):
    sim = declare()
    sim.fail(count=1, status=502, after_processing=True)  # Acme creates the project, the answer is lost
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_create_project", {"name": "Zeus"})

    assert result["status"] == "upstream_error"
    assert result["outcome_unknown"] is True and result["retryable"] is False
    assert sim.counters.endpoint("POST /api/projects") == 1
    assert [p["name"] for p in sim.projects()] == ["Zeus"]


async def test_a_post_with_a_declared_idempotency_header_is_retried_with_the_same_key(declare):
    sim = declare()
    sim.fail(count=1, status=502, after_processing=True)
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_create_project_once", {"name": "Zeus"})
            again = await call(client, "acme_create_project_once", {"name": "Zeus", "idempotency_key": "zeus-0001"})
            repeat = await call(client, "acme_create_project_once", {"name": "Zeus", "idempotency_key": "zeus-0001"})

    assert result["status"] == "ok" and result["http_status"] == 201
    assert sim.counters.endpoint("POST /api/projects") == 4
    assert again["data"] == repeat["data"]  # the provider replayed its first answer to the key
    assert [p["name"] for p in sim.projects()] == ["Zeus", "Zeus"]


@pytest.mark.usefixtures("retry_waits_skipped")
async def test_reads_and_deletes_are_retried_after_a_transient_failure(declare):
    sim = declare()
    sim.add_project("Apollo")
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            sim.fail(count=1, status=503)
            read = await call(client, "acme_get_project", {"project_id": "p-1"})
            sim.fail(count=1, status=503)
            deleted = await call(client, "acme_delete_project", {"project_id": "p-1"})

    assert read["status"] == "ok" and deleted["status"] == "ok" and deleted["http_status"] == 204
    assert deleted["data"] is None and deleted["text"] is None
    assert sim.counters.endpoint("GET /api/projects/{project_id}") == 2
    assert sim.counters.endpoint("DELETE /api/projects/{project_id}") == 2
    assert sim.projects() == []


async def test_a_rate_limit_with_retry_after_is_waited_out(declare):
    sim = declare()
    sim.rate_limit(count=1, retry_after=0)
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_list_projects", {})
    assert result["status"] == "ok" and sim.counters.rate_limited == 1
    assert sim.counters.endpoint("GET /api/projects") == 2


# ---- path safety ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("project_id", "raw_path"),
    [
        ("../../_sim/stats", "/api/projects/..%2F..%2F_sim%2Fstats"),
        ("..%2F..%2F_sim%2Fstats", "/api/projects/..%252F..%252F_sim%252Fstats"),
        ("p-1/../../../_sim/faults", "/api/projects/p-1%2F..%2F..%2F..%2F_sim%2Ffaults"),
        ("p-1?admin=true#top", "/api/projects/p-1%3Fadmin%3Dtrue%23top"),
        ("https://evil.example/steal", "/api/projects/https%3A%2F%2Fevil.example%2Fsteal"),
    ],
)
async def test_a_path_argument_stays_one_segment_of_the_declared_path(declare, project_id, raw_path):
    sim = declare()
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_get_project", {"project_id": project_id})

    assert result["status"] == "invalid_input" and result["reason"] == "not_found"
    assert sim.requested_paths() == [raw_path]


@pytest.mark.parametrize("project_id", ["..", "."])
async def test_dot_segments_are_refused_before_anything_is_sent(declare, project_id):
    sim = declare()
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_delete_project", {"project_id": project_id})

    assert result["status"] == "invalid_input" and result["reason"] == "unsafe_argument"
    assert sim.requests == []


async def test_an_absolute_url_argument_cannot_reach_another_host(declare):
    sim = declare()
    with SimulatorServer(OAuth2Simulator()) as elsewhere:
        async with opened_runtime() as runtime:
            seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
            async with mcp_client(runtime) as client:
                for project_id in (elsewhere.url, f"{elsewhere.url}/api/me", "//" + elsewhere.url.split("//")[1]):
                    await call(client, "acme_get_project", {"project_id": project_id})
        assert elsewhere.app.requests == []
    assert len(sim.requests) == 3
    assert all(path.startswith("/api/projects/http") or path.startswith("/api/projects/%2F%2F") for path in sim.requested_paths())


# ---- token errors in other shapes ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "body", "expected"),
    [
        ("", {"error": {"code": "invalid_grant", "message": "Refresh token revoked"}}, "reauth_required"),
        ("", {"errors": [{"code": "invalid_grant"}]}, "reauth_required"),
        ('errors.token_error_fields = ["status.reason"]', {"status": {"reason": "invalid_grant"}}, "reauth_required"),
        (
            'errors.token_descriptions = [{ contains = "has been revoked", means = "refresh_token_rejected" }]',
            {"error_description": "The refresh token has been revoked."},
            "reauth_required",
        ),
        # A bare description nobody declared: not taken to mean the grant is dead.
        ("", {"error_description": "The refresh token has been revoked."}, "upstream_error"),
    ],
)
async def test_token_errors_are_read_from_nested_listed_declared_and_description_only_bodies(declare, extra, body, expected):
    sim = declare(extra=extra, refresh_error_body=body)
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant(), expired=True)
        sim.revoke()
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_list_projects", {})
    assert result["status"] == expected


# ---- array and object parameters ----------------------------------------------------------------------
STRUCTURED_TOOL = """
[[custom_providers.acme.tools]]
name = "create_tagged_project"
description = "Create an Acme project with tags and an owner."
method = "POST"
path = "/projects"
params = [
  { name = "name", required = true },
  { name = "tags", type = "array", items = { type = "string", max_length = 20 }, max_items = 3 },
  { name = "owner", type = "object", properties = [
      { name = "email", required = true, pattern = "^[^@]+@[^@]+$" },
      { name = "team_id", api_name = "teamId", type = "integer", minimum = 1 },
  ] },
]

[[custom_providers.acme.tools]]
name = "list_by_status"
description = "List projects in any of several states."
path = "/projects"
params = [{ name = "status", type = "array", items = { enum = ["active", "archived"] } }]
"""


async def test_array_and_object_parameters_are_typed_in_the_schema_validated_and_sent_as_json(
    declare, oauth2_server, isolated_environment
):
    sim = declare()
    write_config(isolated_environment, acme_declaration(oauth2_server.url, tools=STRUCTURED_TOOL))
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            created = await call(
                client,
                "acme_create_tagged_project",
                {"name": "Hera", "tags": ["a", "b"], "owner": {"email": "h@olympus", "team_id": 7}},
            )
            refused = [
                await client.call_tool("acme_create_tagged_project", arguments)
                for arguments in (
                    {"name": "X", "tags": ["a", "b", "c", "d"]},  # too many
                    {"name": "X", "tags": ["a" * 21]},  # an item too long
                    {"name": "X", "owner": {"email": "h@o", "x": 1}},  # a member nobody declared
                    {"name": "X", "owner": {"team_id": 3}},  # a required member missing
                    {"name": "X", "tags": "a"},  # not an array
                )
            ]
            listed = await call(client, "acme_list_by_status", {"status": ["active", "archived"]})

    schema = tools["acme_create_tagged_project"].input_schema
    tags = schema["properties"]["tags"]["anyOf"][0]
    assert tags["type"] == "array" and tags["maxItems"] == 3 and tags["items"]["maxLength"] == 20
    assert "$defs" in schema or "properties" in str(schema["properties"]["owner"])
    assert created["http_status"] == 201
    assert sim.json_bodies == [{"name": "Hera", "tags": ["a", "b"], "owner": {"email": "h@olympus", "teamId": 7}}]
    assert all(result.is_error for result in refused)
    assert [p for m, p in sim.requests if m == "POST"] == ["/api/projects"]  # the refused ones sent nothing
    assert listed["status"] == "ok"
    assert [p for m, p in sim.requests if m == "GET"][-1] == "/api/projects?status=active&status=archived"
