"""The console's pages against hostile and mistaken requests: no key, a non-admin key, a revoked key, forged
posts (another site's origin, no form token, a token from another viewer), unknown or absurd account ids and
actions, someone else's account on /accounts. Each gets a clear refusal and changes nothing."""

from __future__ import annotations

import re

import httpx2
import pytest

from server.auth import create_api_key
from simulators.seeding import seed_account
from tests.reauth.conftest import SLACK_ALICE
from tests.support.web import vault_rows

pytestmark = pytest.mark.anyio


def form_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def seeded(runtime, settings, slack_sim):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), provider_account_id=SLACK_ALICE)
    admin = create_api_key(runtime.vault, org="acme", user="ops", admin=True).key
    alice = create_api_key(runtime.vault, org="acme", user="alice").key
    bob = create_api_key(runtime.vault, org="acme", user="bob").key
    return account, admin, alice, bob


def client(web: str, key: str | None) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx2.AsyncClient(base_url=web, headers=headers, timeout=30, follow_redirects=False)


async def test_who_may_see_the_dashboard(runtime, web, seeded):
    account, admin, alice, _ = seeded
    async with (
        client(web, None) as anonymous,
        client(web, alice) as person,
        client(web, admin) as operator,
        client(web, "gk_" + "x" * 40) as unknown,
    ):
        assert (await anonymous.get("/dashboard")).status_code == 401
        assert (await unknown.get("/dashboard")).status_code == 401
        forbidden = await person.get("/dashboard")
        assert forbidden.status_code == 403 and "acme/alice/slack" not in forbidden.text
        page = await operator.get("/dashboard")
        assert page.status_code == 200 and f'id="account-{account.id}"' in page.text
        assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
        filtered = await operator.get("/dashboard", params={"severity": "<script>", "account": "x" * 10_000})
        assert filtered.status_code == 200 and "<script>" not in filtered.text


async def test_forged_posts_change_nothing(runtime, web, seeded):
    account, admin, alice, _ = seeded
    async with client(web, admin) as operator, client(web, alice) as person:
        token = form_token((await operator.get("/dashboard")).text)
        person_token = form_token((await person.get("/accounts")).text)
        before = vault_rows(runtime)
        url = f"/dashboard/accounts/{account.id}/remove"
        attempts = [
            await operator.post(url, data={}),  # no token
            await operator.post(url, data={"csrf_token": "A" * 43}),  # a made-up one
            await operator.post(url, data={"csrf_token": person_token}),  # another viewer's
            await operator.post(url, data={"csrf_token": token}, headers={"Origin": "https://evil.example"}),
            await operator.post(url, data={"csrf_token": token}, headers={"Sec-Fetch-Site": "cross-site"}),
            await operator.post(
                url, content=b"csrf_token=" + b"A" * 100_000, headers={"Content-Type": "application/x-www-form-urlencoded"}
            ),
            await person.post(url, data={"csrf_token": person_token}),  # not an administrator
        ]
        assert [r.status_code for r in attempts] == [403] * len(attempts)
        assert vault_rows(runtime) == before
        # The real thing, for contrast.
        done = await operator.post(f"/dashboard/accounts/{account.id}/disable", data={"csrf_token": token})
        assert done.status_code == 200 and "disabled" in done.text
        assert runtime.vault.accounts.get(account.id).status == "disabled"


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/accounts/{id}/explode",
        "/dashboard/accounts/nope/remove",
        "/dashboard/accounts/" + "9" * 500 + "/remove",
        "/dashboard/accounts/..%2F..%2Fx/remove",
    ],
)
async def test_unknown_accounts_and_actions_are_refused(runtime, web, seeded, path):
    account, admin, _, _ = seeded
    async with client(web, admin) as operator:
        token = form_token((await operator.get("/dashboard")).text)
        before = vault_rows(runtime)
        response = await operator.post(path.format(id=account.id), data={"csrf_token": token})
    assert response.status_code == 404
    assert vault_rows(runtime) == before


async def test_a_person_manages_only_their_own_accounts(runtime, web, seeded, slack_sim):
    account, _, alice, bob = seeded
    async with client(web, bob) as mallory, client(web, alice) as owner:
        page = await mallory.get("/accounts")
        assert account.id not in page.text
        before = vault_rows(runtime)
        refused = await mallory.post(f"/accounts/{account.id}/remove", data={"csrf_token": form_token(page.text)})
        assert refused.status_code == 404 and vault_rows(runtime) == before

        own = await owner.get("/accounts")
        assert f'id="account-{account.id}"' in own.text
        connect = await owner.post("/accounts/connect/github", data={"csrf_token": form_token(own.text)})
        assert connect.status_code == 303 and "/connect/" in connect.headers["location"]
        removed = await owner.post(f"/accounts/{account.id}/remove", data={"csrf_token": form_token(own.text)})
        assert removed.status_code == 200 and "removed" in removed.text
    assert slack_sim.counters.revocations == 1
    assert runtime.vault.accounts.get(account.id).removed_by.startswith("key:")
