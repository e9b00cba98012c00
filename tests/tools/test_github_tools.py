"""GitHub tools: issues are created at most once per idempotency key, even when an answer is lost."""

from __future__ import annotations

import pytest

from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
ISSUE = {"repo": "octo/demo", "title": "Checkout fails on Safari", "body": "Steps: …", "labels": ["bug"]}


async def test_create_issue_returns_the_new_issue(runtime, settings, github_sim):
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant())
    async with mcp_client(runtime) as client:
        result = await call(client, "github_create_issue", ISSUE)

    assert result["status"] == "ok" and result["created"] is True
    assert result["issue"]["title"] == ISSUE["title"] and result["issue"]["labels"] == ["bug"]
    [stored] = github_sim.issues("octo/demo")
    assert stored["number"] == result["issue"]["number"]
    assert f"grantkeeper:idempotency-key={result['idempotency_key']}" in stored["body"]


async def test_repeating_a_call_with_the_same_key_creates_one_issue(runtime, settings, github_sim):
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant())
    arguments = {**ISSUE, "idempotency_key": "retry-4f2a9c1e"}
    async with mcp_client(runtime) as client:
        first = await call(client, "github_create_issue", arguments)
        second = await call(client, "github_create_issue", arguments)

    assert (first["created"], second["created"]) == (True, False)
    assert first["issue"]["number"] == second["issue"]["number"]
    assert len(github_sim.issues("octo/demo")) == 1


async def test_a_lost_answer_is_resolved_by_finding_the_issue_not_by_posting_again(runtime, settings, github_sim):
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant())
    github_sim.set_search_lag(3600)  # search would not show it yet; the issue list does
    github_sim.fail(count=1, status=502, after_processing=True)

    async with mcp_client(runtime) as client:
        result = await call(client, "github_create_issue", ISSUE)

    assert result["status"] == "ok"
    assert len(github_sim.issues("octo/demo")) == 1
    assert result["issue"]["number"] == github_sim.issues("octo/demo")[0]["number"]


async def test_a_failure_before_github_acted_is_retried_once_after_checking(runtime, settings, github_sim):
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant())
    github_sim.fail(count=1, status=502)

    async with mcp_client(runtime) as client:
        result = await call(client, "github_create_issue", ISSUE)

    assert result["status"] == "ok" and result["created"] is True
    assert len(github_sim.issues("octo/demo")) == 1


async def test_validation_failure_is_invalid_input_with_githubs_reason(runtime, settings, github_sim):
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant())
    github_sim.disable_issues("octo/demo")
    async with mcp_client(runtime) as client:
        result = await call(client, "github_create_issue", ISSUE)
    assert result["status"] == "invalid_input"
    assert github_sim.issues("octo/demo") == []


async def test_search_adds_is_issue_so_user_tokens_are_not_refused(runtime, settings, github_sim):
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant())
    github_sim.create_issue("octo/demo", "Login bug", "crash on login")
    github_sim.create_issue("octo/other", "Login bug elsewhere", "")
    async with mcp_client(runtime) as client:
        result = await call(client, "github_search_issues", {"query": "login", "repo": "octo/demo"})
    assert result["status"] == "ok"
    assert result["query"] == "repo:octo/demo login is:issue"
    assert [item["title"] for item in result["items"]] == ["Login bug"]
