"""The magic-link loop without a browser: an agent's call gets `reauth_required`, the owner opens the link,
consents at the simulator, lands on the callback, and the agent's next call works — and every way of getting it
wrong (replay, expiry, tampering, forged state, another browser, another provider account, denial) changes nothing."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from server.vault.crypto import new_secret_token
from simulators.person import link_user
from simulators.seeding import seed_account
from tests.reauth.conftest import GITHUB_ALICE, SLACK_ALICE
from tests.support.mcp import call, mcp_client
from tests.support.web import outcome_of, vault_rows

pytestmark = pytest.mark.anyio
READ = {"channel": "C0GENERAL", "limit": 1}


async def revoked_slack_link(runtime, settings, slack_sim) -> tuple[str, str]:
    """Alice's Slack grant is revoked; her agent's call returns a magic link. Returns (account id, link)."""
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), provider_account_id=SLACK_ALICE)
    slack_sim.revoke()
    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", READ)
    assert result["status"] == "reauth_required"
    return account.id, result["magic_link"]


async def test_reauth_link_reconnects_the_same_slack_account_and_the_next_call_succeeds(runtime, settings, slack_sim, web, user):
    account_id, link = await revoked_slack_link(runtime, settings, slack_sim)
    assert link.startswith(f"{web}/connect/")
    version_before = runtime.vault.credentials.read(account_id).version

    page = await user.reconnect(link)

    assert page.status_code == 200 and outcome_of(page) == "reconnected"
    assert "user U0SIMUSER in workspace Simulated Workspace" in page.text
    account = runtime.vault.accounts.get(account_id)
    assert (account.status, account.status_reason, account.provider_account_id) == ("active", None, SLACK_ALICE)
    assert runtime.vault.accounts.find("acme", "alice", "slack").id == account_id  # the same account, not a new one
    assert runtime.vault.credentials.read(account_id).version == version_before + 1
    [event] = runtime.vault.events.recent(account_id, kind="reauthorized")
    assert event.detail["previous_reason"] == "token_revoked"
    async with mcp_client(runtime) as client:
        assert (await call(client, "slack_read_channel", READ))["status"] == "ok"


async def test_github_reauth_confirms_the_user_through_the_user_endpoint(runtime, settings, github_sim, web, user):
    account = seed_account(settings, runtime.vault, "github", github_sim.issue_grant(), provider_account_id=GITHUB_ALICE)
    github_sim.revoke()
    async with mcp_client(runtime) as client:
        result = await call(client, "github_search_issues", {"query": "bug"})
    assert result["status"] == "reauth_required"

    page = await user.reconnect(result["magic_link"])

    assert outcome_of(page) == "reconnected" and "@octocat (user id 1)" in page.text
    assert github_sim.counters.snapshot()["endpoints"].get("GET /user", 0) >= 1
    assert runtime.vault.accounts.get(account.id).status == "active"
    async with mcp_client(runtime) as client:
        assert (await call(client, "github_search_issues", {"query": "bug"}))["status"] == "ok"


async def test_connect_link_on_a_new_account_records_the_provider_identity(runtime, slack_sim, web, user):
    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", READ)
    assert (result["status"], result["reason"]) == ("reauth_required", "not_connected")
    pending = runtime.vault.accounts.find("acme", "alice", "slack")
    assert (pending.status, pending.provider_account_id) == ("pending", None)

    opened = await user.open(result["magic_link"])
    assert "Connect Slack" in opened.text and "alice (org acme)" in opened.text
    page = await user.reconnect(result["magic_link"], team_id="T0ACME", team_name="Acme", user_id="U0ALICE")

    assert outcome_of(page) == "reconnected"
    account = runtime.vault.accounts.get(pending.id)
    assert (account.status, account.provider_account_id) == ("active", "T0ACME:U0ALICE")
    assert account.provider_identity["team_name"] == "Acme"
    async with mcp_client(runtime) as client:
        assert (await call(client, "slack_read_channel", READ))["status"] == "ok"


async def test_opening_a_link_shows_who_must_complete_it_and_does_not_spend_it(runtime, settings, slack_sim, web, user):
    _account_id, link = await revoked_slack_link(runtime, settings, slack_sim)
    before = vault_rows(runtime)

    first, second = await user.open(link), await user.open(link)  # a chat app's link preview, then the person

    assert first.status_code == second.status_code == 200
    assert 'id="continue"' in second.text
    assert "acme/alice/slack" in second.text and "Only <strong>alice (org acme)</strong>" in second.text
    assert "user U0SIMUSER in workspace Simulated Workspace (T0SIMTEAM)" in second.text
    assert vault_rows(runtime) == before


async def test_replayed_link_is_refused_and_changes_nothing(runtime, settings, slack_sim, web, user):
    _, link = await revoked_slack_link(runtime, settings, slack_sim)
    assert outcome_of(await user.reconnect(link)) == "reconnected"
    before = vault_rows(runtime)

    async with link_user() as someone_else:
        opened, started = await someone_else.open(link), await someone_else.start(link)

    assert (opened.status_code, outcome_of(opened)) == (410, "link_used")
    assert (started.status_code, outcome_of(started)) == (410, "link_used")
    assert vault_rows(runtime) == before


async def test_expired_link_is_refused_and_changes_nothing(runtime, settings, slack_sim, web, user):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), provider_account_id=SLACK_ALICE)
    token = new_secret_token()
    runtime.vault.links.create(token=token, account=account, purpose="reauth", reason="token_revoked", ttl=timedelta(seconds=-1))
    before = vault_rows(runtime)

    opened, started = await user.open(f"{web}/connect/{token}"), await user.start(f"{web}/connect/{token}")

    assert (opened.status_code, outcome_of(opened)) == (410, "link_expired")
    assert (started.status_code, outcome_of(started)) == (410, "link_expired")
    assert "new link" in opened.text
    assert vault_rows(runtime) == before


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # one character changed
        lambda token: token[:20],  # cut short
        lambda token: new_secret_token(),  # well-formed, never issued
        lambda token: token[:30] + "*$'<>" + token[35:],  # not token-shaped at all
    ],
    ids=["altered", "truncated", "made-up", "garbage"],
)
async def test_unknown_or_tampered_link_is_refused_and_changes_nothing(runtime, settings, slack_sim, web, user, mangle):
    _, link = await revoked_slack_link(runtime, settings, slack_sim)
    base, token = link.rsplit("/", 1)
    before = vault_rows(runtime)

    opened = await user.open(f"{base}/{mangle(token)}")
    started = await user.start(f"{base}/{mangle(token)}")

    assert opened.status_code == started.status_code == 404
    assert vault_rows(runtime) == before
    assert (await user.open(link)).status_code == 200  # the genuine link still works


async def test_forged_or_missing_state_is_refused_and_changes_nothing(runtime, settings, slack_sim, web, user):
    account_id, link = await revoked_slack_link(runtime, settings, slack_sim)
    started = await user.start(link)
    callback = await user.consent(started.headers["location"])
    code = dict(p.split("=", 1) for p in callback.split("?", 1)[1].split("&"))["code"]
    before = vault_rows(runtime)

    forged = await user.client.get(f"{web}/oauth/callback", params={"code": code, "state": new_secret_token()})
    missing = await user.client.get(f"{web}/oauth/callback", params={"code": code})
    empty = await user.client.get(f"{web}/oauth/callback", params={"code": code, "state": ""})

    assert (forged.status_code, outcome_of(forged)) == (400, "state_unknown")
    assert (missing.status_code, outcome_of(missing)) == (400, "state_missing")
    assert outcome_of(empty) == "state_missing"
    assert vault_rows(runtime) == before
    assert slack_sim.counters.code_exchanges_ok == 0  # the code was never even exchanged
    # The genuine callback still completes.
    assert outcome_of(await user.client.get(callback)) == "reconnected"
    assert runtime.vault.accounts.get(account_id).status == "active"


async def test_callback_in_a_browser_that_did_not_open_the_link_is_refused(runtime, settings, slack_sim, web, user):
    _account_id, link = await revoked_slack_link(runtime, settings, slack_sim)
    started = await user.start(link)
    callback = await user.consent(started.headers["location"])
    before = vault_rows(runtime)

    async with link_user() as other_browser:  # say, the authorize URL was forwarded to someone else
        page = await other_browser.client.get(callback)

    assert (page.status_code, outcome_of(page)) == (403, "other_browser")
    assert vault_rows(runtime) == before
    assert outcome_of(await user.client.get(callback)) == "reconnected"


async def test_replayed_callback_is_refused_and_changes_nothing(runtime, settings, slack_sim, web, user):
    _, link = await revoked_slack_link(runtime, settings, slack_sim)
    started = await user.start(link)
    callback = await user.consent(started.headers["location"])
    assert outcome_of(await user.client.get(callback)) == "reconnected"
    before = vault_rows(runtime)

    again = await user.client.get(callback)

    assert (again.status_code, outcome_of(again)) == (409, "flow_finished")
    assert vault_rows(runtime) == before


@pytest.mark.parametrize(
    "identity",
    [
        {"user_id": "U0INTRUDER"},  # another user of the same workspace
        {"team_id": "T0OTHER", "team_name": "Other Co"},  # the same user id in another workspace
    ],
    ids=["other-user", "other-workspace"],
)
async def test_a_different_slack_account_is_refused_and_changes_nothing(runtime, settings, slack_sim, web, user, identity):
    account_id, link = await revoked_slack_link(runtime, settings, slack_sim)
    started = await user.start(link)
    callback = await user.consent(started.headers["location"], **identity)
    before = vault_rows(runtime)

    page = await user.client.get(callback)

    assert (page.status_code, outcome_of(page)) == (403, "identity_mismatch")
    assert "user U0SIMUSER in workspace Simulated Workspace (T0SIMTEAM)" in page.text  # what it should have been
    assert vault_rows(runtime) == before
    account = runtime.vault.accounts.get(account_id)
    assert (account.status, account.provider_account_id) == ("reauth_required", SLACK_ALICE)
    async with mcp_client(runtime) as client:
        assert (await call(client, "slack_read_channel", READ))["status"] == "reauth_required"


async def test_a_different_github_user_is_refused_and_changes_nothing(runtime, settings, github_sim, web, user):
    account = seed_account(settings, runtime.vault, "github", github_sim.issue_grant(), provider_account_id=GITHUB_ALICE)
    github_sim.revoke()
    async with mcp_client(runtime) as client:
        link = (await call(client, "github_search_issues", {"query": "bug"}))["magic_link"]
    started = await user.start(link)
    callback = await user.consent(started.headers["location"], login="mallory", id="666")
    before = vault_rows(runtime)

    page = await user.client.get(callback)

    assert outcome_of(page) == "identity_mismatch" and "@mallory (user id 666)" in page.text
    assert vault_rows(runtime) == before
    assert runtime.vault.accounts.get(account.id).provider_account_id == GITHUB_ALICE


async def test_access_denied_at_the_provider_changes_nothing(runtime, settings, slack_sim, web, user):
    account_id, link = await revoked_slack_link(runtime, settings, slack_sim)
    started = await user.start(link)
    callback = await user.consent(started.headers["location"], decision="deny")
    assert "error=access_denied" in callback
    before = vault_rows(runtime)

    page = await user.client.get(callback)

    assert (page.status_code, outcome_of(page)) == (403, "access_denied")
    assert "Nothing was changed." in page.text
    assert vault_rows(runtime) == before
    assert runtime.vault.accounts.get(account_id).status == "reauth_required"


async def test_link_pages_are_never_cached_and_never_leak_a_referrer(runtime, settings, slack_sim, web, user):
    _, link = await revoked_slack_link(runtime, settings, slack_sim)
    token = link.rsplit("/", 1)[1]
    opened = await user.open(link)
    started = await user.start(link)
    callback = await user.consent(started.headers["location"])
    finished = await user.client.get(callback)
    refused = await user.open(link)

    for response in (opened, started, finished, refused):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    cookie = started.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/oauth/callback" in cookie
    stored = runtime.vault.credentials.read(runtime.vault.accounts.find("acme", "alice", "slack").id)
    for page in (opened, finished, refused):
        assert token not in page.text and stored.access_token not in page.text
        assert "Traceback" not in page.text


async def test_disabled_account_cannot_be_reconnected_by_link(runtime, settings, slack_sim, web, user):
    from server.vault import AccountStatus

    account_id, link = await revoked_slack_link(runtime, settings, slack_sim)
    runtime.vault.accounts.set_status(account_id, AccountStatus.DISABLED, "operator")
    before = vault_rows(runtime)

    page = await user.start(link)

    assert (page.status_code, outcome_of(page)) == (403, "account_disabled")
    assert vault_rows(runtime) == before


async def test_two_browsers_pressing_continue_at_once_spend_the_link_once(runtime, settings, slack_sim, web, user):
    _, link = await revoked_slack_link(runtime, settings, slack_sim)

    async with link_user() as other, anyio.create_task_group() as group:
        answers = []

        async def start(person) -> None:
            answers.append((await person.start(link)).status_code)

        group.start_soon(start, user)
        group.start_soon(start, other)

    assert sorted(answers) == [303, 410]


async def test_once_a_new_account_is_connected_another_open_flow_cannot_attach_a_different_one(runtime, slack_sim, web, user):
    async with mcp_client(runtime) as client:
        first = (await call(client, "accounts_connect", {"connector": "slack"}))["magic_link"]
        second = (await call(client, "accounts_connect", {"connector": "slack"}))["magic_link"]
    async with link_user() as someone_else:
        theirs = await someone_else.start(second)  # both flows are open at once
        mine = await user.start(first)
        assert outcome_of(await user.client.get(await user.consent(mine.headers["location"]))) == "reconnected"
        callback = await someone_else.consent(theirs.headers["location"], user_id="U0INTRUDER")
        before = vault_rows(runtime)

        page = await someone_else.client.get(callback)

    assert outcome_of(page) == "identity_mismatch"
    assert vault_rows(runtime) == before
    assert runtime.vault.accounts.find("acme", "alice", "slack").provider_account_id == SLACK_ALICE


async def test_a_link_for_a_provider_without_client_credentials_is_not_spent(settings, slack_sim, monkeypatch, user):
    from server.execute import Caller
    from server.runtime import Runtime
    from tests.support.web import web_server

    monkeypatch.delenv("GRANTKEEPER_SLACK_CLIENT_SECRET")
    unconfigured = Runtime.open(type(settings)())
    try:
        async with web_server(unconfigured):
            # A link handed out before the operator removed the client secret (the tools no longer hand one out).
            _, issued = await unconfigured.executor.connect_link(Caller("acme", "alice"), "slack")
            link = issued.url
            page = await user.start(link)
            assert (page.status_code, outcome_of(page)) == (503, "client_not_configured")
            assert (await user.open(link)).status_code == 200  # still usable once an operator fixes it
    finally:
        await unconfigured.aclose()


async def test_without_client_credentials_the_tools_ask_for_the_operator_instead_of_handing_out_a_link(
    settings, slack_sim, github_sim, monkeypatch
):
    from server.runtime import Runtime
    from simulators.seeding import seed_account

    monkeypatch.delenv("GRANTKEEPER_SLACK_CLIENT_SECRET")
    monkeypatch.delenv("GRANTKEEPER_GITHUB_CLIENT_ID")
    unconfigured = Runtime.open(type(settings)())
    seed_account(settings, unconfigured.vault, "github", github_sim.issue_grant())
    github_sim.revoke()
    try:
        async with mcp_client(unconfigured) as client:
            connect = await call(client, "accounts_connect", {"connector": "slack"})
            dead_grant = await call(client, "github_search_issues", {"query": "bug"})
            never_connected = await call(client, "slack_read_channel", READ)
        links = vault_rows(unconfigured)["magic_link"]
    finally:
        await unconfigured.aclose()
    for result in (connect, dead_grant, never_connected):
        assert result["status"] == "admin_action_required" and result["reason"] == "client_not_configured"
        assert "magic_link" not in result
    assert links == []  # no link that could only dead-end
    assert "GRANTKEEPER_SLACK_CLIENT_ID and GRANTKEEPER_SLACK_CLIENT_SECRET" in connect["next_step"]
    assert "GRANTKEEPER_GITHUB_CLIENT_ID" in dead_grant["next_step"]


async def test_a_refusal_page_reads_as_sentences_in_plain_text(web, user):
    import re

    page = await user.open(f"{web}/connect/{'x' * 43}")  # a link this server never issued
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text))  # what a text-only mail client or reader shows
    plain = re.sub(r"<[^>]+>", "", page.text)  # tags dropped without a space, as the simplest strippers do
    assert outcome_of(page) == "link_unknown"
    assert "keeps your account grant" in text and "your the provider" not in text
    assert not re.search(r"[a-z]\.[A-Z]", plain)  # no "configured.Nothing": paragraphs are apart
