"""Several accounts of one connector, told apart by label: each tool reaches the account it names, the default
when it names none; a label that does not exist is invalid_input listing those that do; a key never reaches
another identity's account by naming its label."""

from __future__ import annotations

import pytest

from server.auth import create_api_key
from simulators.seeding import seed_account
from tests.support.web import call_structured, http_session

pytestmark = pytest.mark.anyio

WORK = {"login": "alice-work", "id": 31}
OSS = {"login": "alice-oss", "id": 32}


def seed_two_github_accounts(runtime, settings, github_sim) -> None:
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant(WORK), provider_account_id="31", label="work")
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant(OSS), provider_account_id="32", label="oss")


async def test_each_tool_reaches_the_labelled_account(runtime, settings, github_sim, web):
    seed_two_github_accounts(runtime, settings, github_sim)
    key = create_api_key(runtime.vault, org="acme", user="alice").key
    async with http_session(web, key) as session:
        work = await call_structured(session, "github_create_issue", {"repo": "acme/app", "title": "a", "account": "work"})
        oss = await call_structured(session, "github_create_issue", {"repo": "acme/app", "title": "b", "account": "oss"})
        proxied = await call_structured(session, "github_request", {"method": "GET", "path": "/user", "account": "oss"})
        listing = await call_structured(session, "accounts_list")
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}

    assert (work["issue"]["author"], oss["issue"]["author"]) == ("alice-work", "alice-oss")
    assert proxied["data"]["login"] == "alice-oss"
    assert sorted((a["connector"], a["label"], a["provider_account_id"]) for a in listing["accounts"]) == [
        ("github", "oss", "32"),
        ("github", "work", "31"),
    ]
    # Every tool that acts on an account takes the label; the listing itself does not.
    for name, tool in tools.items():
        assert ("account" in tool.input_schema["properties"]) == (name != "accounts_list"), name


async def test_without_a_label_the_default_account_is_used(runtime, settings, github_sim, web):
    seed_two_github_accounts(runtime, settings, github_sim)
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant({"login": "alice", "id": 3}), provider_account_id="3")
    key = create_api_key(runtime.vault, org="acme", user="alice").key
    async with http_session(web, key) as session:
        result = await call_structured(session, "github_create_issue", {"repo": "acme/app", "title": "c"})
    assert result["issue"]["author"] == "alice"


async def test_an_unknown_label_is_invalid_input_listing_the_labels(runtime, settings, github_sim, web):
    seed_two_github_accounts(runtime, settings, github_sim)
    key = create_api_key(runtime.vault, org="acme", user="alice").key
    before = github_sim.counters.api_requests
    async with http_session(web, key) as session:
        result = await call_structured(session, "github_search_issues", {"query": "bug", "account": "personal"})
        hostile = await session.call_tool("github_search_issues", {"query": "bug", "account": "../" + "x" * 300})
    assert (result["status"], result["reason"]) == ("invalid_input", "unknown_account_label")
    assert "oss, work" in result["next_step"]
    assert hostile.is_error and github_sim.counters.api_requests == before
    # Nothing was created for the unknown label.
    assert {a.label for a in runtime.vault.accounts.all("acme", "alice")} == {"work", "oss"}


async def test_a_label_never_reaches_another_users_account(runtime, settings, github_sim, web):
    seed_two_github_accounts(runtime, settings, github_sim)  # Alice's
    bob = create_api_key(runtime.vault, org="acme", user="bob").key
    async with http_session(web, bob) as session:
        result = await call_structured(session, "github_create_issue", {"repo": "acme/app", "title": "x", "account": "work"})
        connect = await call_structured(session, "accounts_connect", {"connector": "github", "account": "work"})
    assert (result["status"], result["reason"]) == ("invalid_input", "unknown_account_label")
    assert "none yet" in result["next_step"]
    assert github_sim.counters.api_requests == 0
    # Bob may connect his own account of that label; it is his, pending, and leaves Alice's alone.
    assert connect["account"] == "acme/bob/github/work"
    assert runtime.vault.accounts.find("acme", "bob", "github", "work").status == "pending"
    assert runtime.vault.accounts.find("acme", "alice", "github", "work").provider_account_id == "31"
