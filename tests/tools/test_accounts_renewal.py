"""`accounts_list` and a refresh token with a fixed end: the caller's own account that ends soon says when, and
offers its owner one renewal link however often it is listed; opening it renews that same account. Accounts not
ending soon, and other people's, get no link; the link reaches no log line, event, audit row or metric."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from simulators.person import link_user
from simulators.seeding import seed_account
from tests.support import renewal_world
from tests.support.mcp import call, mcp_client
from tests.support.web import outcome_of, vault_rows, web_server

pytestmark = pytest.mark.anyio
REFRESH_LIFETIME = renewal_world.REFRESH_LIFETIME
GITHUB_ALICE = renewal_world.GITHUB_ALICE
github_sim = renewal_world.github_sim_with_ending_refresh_tokens


def entry(listing: dict, label: str) -> dict:
    [found] = [a for a in listing["accounts"] if (a["connector"], a["label"]) == ("github", label)]
    return found


def when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_the_owners_account_ending_soon_is_listed_with_one_renewal_link_that_renews_it(
    runtime, settings, github_sim, log_output
):
    # Issued six minutes ago: four of its ten minutes are left, inside the last half of its life.
    ending = seed_account(
        settings, runtime.vault, "github", github_sim.issue_grant(), lifetime_used=0.1, provider_account_id=GITHUB_ALICE
    )
    fresh = seed_account(settings, runtime.vault, "github", github_sim.issue_grant(), label="oss")  # ten minutes left
    others = seed_account(settings, runtime.vault, "github", github_sim.issue_grant(), user="bob", lifetime_used=0.1)
    ends_at = runtime.vault.credentials.timings(ending.id)["refresh_expires_at"]

    async with web_server(runtime) as url, mcp_client(runtime) as client:
        [tool] = [t for t in (await client.list_tools()).tools if t.name == "accounts_list"]
        shown = await client.call_tool("accounts_list", {})
        first = shown.structured_content
        again = await client.call_tool("accounts_list", {})
        link = entry(first, "default")["renewal_link"]
        async with link_user() as owner:
            page = await owner.reconnect(link)
        renewed = await call(client, "accounts_list")
    metrics = runtime.metrics.render().decode()

    rows = vault_rows(runtime)
    after = runtime.vault.accounts.find("acme", "alice", "github")
    credential = runtime.vault.credentials.read(ending.id)

    # The listing says when the refresh token ends and gives the owner a link to renew before then.
    schema = json.dumps(tool.output_schema)
    assert '"renew_by"' in schema and '"renewal_link"' in schema
    listed = entry(first, "default")
    assert when(listed["renew_by"]) == ends_at
    assert link.startswith(f"{url}/connect/") and when(listed["link_expires_at"]) > datetime.now(ends_at.tzinfo)
    assert "its refresh token ends" in shown.content[0].text and link in shown.content[0].text
    # The account not ending soon carries nothing; bob's is not the caller's to see or renew.
    assert {k: entry(first, "oss")[k] for k in ("renew_by", "renewal_link", "link_expires_at")} == dict.fromkeys(
        ("renew_by", "renewal_link", "link_expires_at")
    )
    assert len(first["accounts"]) == 2

    # Listing again issued no other link: it says when the one given is open until, without its URL.
    second = entry(again.structured_content, "default")
    assert when(second["renew_by"]) == ends_at and second["renewal_link"] is None
    assert second["link_expires_at"] == listed["link_expires_at"]
    assert "open until" in again.content[0].text and "/connect/" not in again.content[0].text
    [row] = rows["magic_link"]
    assert (row["account_id"], row["purpose"], row["reason"], row["issued_by"]) == (
        ending.id,
        "reauth",
        "refresh_token_expiring",
        "agent",
    )
    assert row["completed_at"] is not None

    # Opening it renewed the same account: new credentials, a fresh refresh token, nothing left to renew.
    assert outcome_of(page) == "reconnected"
    assert (after.id, after.status, after.provider_account_id) == (ending.id, "active", GITHUB_ALICE)
    assert {r["id"] for r in rows["connected_account"]} == {ending.id, fresh.id, others.id}
    assert credential.version == 2
    assert runtime.vault.credentials.timings(ending.id)["refresh_expires_at"] > ends_at
    assert entry(renewed, "default")["renew_by"] is None and entry(renewed, "default")["renewal_link"] is None

    # The audit trail names who issued the link, by its id; the link is in no log line, event, row or metric.
    [created] = rows["audit_event"]
    assert (created["action"], created["actor"], created["account_id"]) == ("link_created", "acme/alice", ending.id)
    assert created["detail"] == {
        "link_id": row["id"],
        "purpose": "reauth",
        "reason": "refresh_token_expiring",
        "tool": "accounts.list",
        "via": "stdio",
    }
    token = link.rsplit("/", 1)[1]
    recorded = json.dumps(
        [rows["lifecycle_event"], rows["audit_event"], [m.payload for m in runtime.vault.outbox.messages()]], default=str
    )
    assert "reauthorization_started" in log_output.getvalue() and "grantkeeper_tool_calls_total" in metrics
    for text in (recorded, log_output.getvalue(), metrics):
        assert token not in text and "/connect/" not in text
