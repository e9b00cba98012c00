"""The guarded proxy tool `<connector>.request`, through the real MCP client against simulators on loopback: paths
that leave the API base are refused with nothing sent, writes are opt-in and never repeated blindly, reads take
the same refresh and retry path as every tool, and answers are cut at the size limit."""

from __future__ import annotations

import pytest

from simulators.seeding import seed_account
from tests.support.custom import opened_runtime
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio

HOSTILE_PATHS = [
    "../admin",
    "/../_sim/stats",
    "/projects/../../_sim/stats",
    "/%2e%2e/_sim/stats",
    "/projects/%2E%2E/%2e%2E/_sim/stats",
    "/%252e%252e/_sim/stats",
    "/projects%2fp-1",
    "/projects%2Fp-1",
    "/projects/%5c..%5c_sim",
    "https://evil.example/x",
    "http://127.0.0.1:1/x",
    "//evil.example/x",
    "/\\evil.example/x",
    "/projects\\..\\_sim",
    "/projects\r\nHost: evil.example",
    "/projects\x00",
    "/projects\t",
    "/projects?status=active",
    "/projects#fragment",
    "/proj ects",
    "/projects/%00",
    "/projects/%zz",
    "/projects//p-1",
    "/./projects",
    "/" + "a" * 3000,
]


async def test_every_connector_gets_a_read_only_request_tool_by_default(declare):
    declare()
    async with opened_runtime() as runtime, mcp_client(runtime) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert {"acme_request", "slack_request", "github_request", "google_request", "zendesk_request"} <= set(tools)
    proxy = tools["acme_request"]
    assert proxy.input_schema["properties"]["method"]["enum"] == ["GET", "HEAD"]
    assert proxy.input_schema["required"] == ["method", "path"]
    assert (proxy.annotations.read_only_hint, proxy.annotations.idempotent_hint) == (True, True)


async def test_a_get_goes_under_the_api_base_with_its_query_and_returns_the_answer(declare):
    sim = declare()
    sim.add_project("Apollo")
    sim.add_project("Zeus", status="archived")
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant(), expired=True)
        async with mcp_client(runtime) as client:
            result = await call(
                client, "acme_request", {"method": "GET", "path": "/projects", "query": {"status": "archived", "limit": 5}}
            )

    assert result["status"] == "ok" and result["http_status"] == 200
    assert [p["name"] for p in result["data"]["projects"]] == ["Zeus"]
    assert sim.counters.token_requests == 1  # the expired token was refreshed first, as for any tool
    assert [path for method, path in sim.requests if method == "GET"] == ["/api/projects?status=archived&limit=5"]


@pytest.mark.parametrize("path", HOSTILE_PATHS, ids=range(len(HOSTILE_PATHS)))
async def test_paths_that_leave_the_api_base_are_refused_with_nothing_sent(declare, path):
    sim = declare()
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            result = await client.call_tool("acme_request", {"method": "GET", "path": path})

    assert result.is_error
    assert result.structured_content["status"] == "invalid_input"
    # Over-long paths are refused by the input schema itself (invalid_arguments), the others by the path check.
    assert result.structured_content["reason"] in ("unsafe_path", "invalid_arguments")
    assert path not in result.content[0].text or len(path) < 3  # the refusal does not echo the path
    assert sim.requests == [] and sim.counters.api_requests == 0


async def test_the_built_in_connectors_are_guarded_the_same_way(env, github_sim):
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "github", github_sim.issue_grant(), provider_account_id="1")
        async with mcp_client(runtime) as client:
            me = await call(client, "github_request", {"method": "GET", "path": "/user"})
            escape = await call(client, "github_request", {"method": "GET", "path": "/%2e%2e/_sim/stats"})

    assert me["status"] == "ok" and me["data"]["login"]
    assert (escape["status"], escape["reason"]) == ("invalid_input", "unsafe_path")
    assert github_sim.counters.api_requests == 1


async def test_writes_are_refused_unless_the_operator_allows_them(declare):
    sim = declare()
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            post = await client.call_tool("acme_request", {"method": "POST", "path": "/projects", "body": {"name": "X"}})
            body_on_get = await call(client, "acme_request", {"method": "GET", "path": "/projects", "body": {"a": 1}})

    # Not in the schema's enum: refused by argument validation, before any handler.
    assert post.is_error and post.structured_content["status"] == "invalid_input"
    assert post.structured_content["reason"] == "invalid_arguments" and "method" in post.structured_content["next_step"]
    assert (body_on_get["status"], body_on_get["reason"]) == ("invalid_input", "body_not_allowed")
    assert sim.projects() == [] and sim.counters.api_requests == 0


async def test_a_post_whose_answer_is_lost_is_sent_once_and_answers_outcome_unknown(declare, monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_ACME_PROXY_METHODS", "GET,HEAD,POST")
    sim = declare()
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        sim.fail(1, 503, after_processing=True)  # the project is created, the answer is lost
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_request", {"method": "POST", "path": "/projects", "body": {"name": "Zeus"}})

    assert result["status"] == "upstream_error" and result["outcome_unknown"] is True
    assert [method for method, path in sim.requests if path == "/api/projects"] == ["POST"]  # exactly one write
    assert [p["name"] for p in sim.projects()] == ["Zeus"]


async def test_an_allowed_post_goes_through_and_a_read_is_retried_after_a_transient_failure(declare, monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_ACME_PROXY_METHODS", "GET,POST")
    sim = declare()
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            created = await call(client, "acme_request", {"method": "POST", "path": "/projects", "body": {"name": "Hera"}})
            sim.fail(1, 503)
            listed = await call(client, "acme_request", {"method": "GET", "path": "/projects"})

    assert tools["acme_request"].annotations.read_only_hint is False
    assert created["http_status"] == 201 and created["data"]["name"] == "Hera"
    assert listed["status"] == "ok" and [p["name"] for p in listed["data"]["projects"]] == ["Hera"]
    assert [m for m, p in sim.requests if p == "/api/projects"] == ["POST", "GET", "GET"]


async def test_the_answer_is_cut_at_the_size_limit(declare):
    sim = declare(extra="max_response_bytes = 256")
    for number in range(20):
        sim.add_project(f"project {number}", description="x" * 40)
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_request", {"method": "GET", "path": "/projects"})

    assert result["truncated"] is True and result["data"] is None
    assert len(result["text"].encode()) <= 256 and result["size_bytes"] > 256


async def test_an_operator_can_switch_the_tool_off_per_connector(declare, monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_ACME_PROXY_METHODS", "none")
    declare()
    async with opened_runtime() as runtime, mcp_client(runtime) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert "acme_request" not in names and "github_request" in names


@pytest.mark.parametrize("query", [{"k" * 200: "v"}, {f"k{i}": "v" for i in range(60)}, {"k": {"nested": 1}}])
async def test_hostile_queries_are_refused_by_the_schema(declare, query):
    sim = declare()
    async with opened_runtime() as runtime:
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant())
        async with mcp_client(runtime) as client:
            result = await client.call_tool("acme_request", {"method": "GET", "path": "/projects", "query": query})
    assert result.is_error and sim.counters.api_requests == 0
