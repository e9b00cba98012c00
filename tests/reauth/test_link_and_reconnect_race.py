"""A reauth link asked for while the owner's reconnect completes, at the same moment, from several callers: each
either gets a link that the reconnect retires with the account's other open links, or is told the account was
reconnected meanwhile — never a live link for an account that works again (the owner would be asked to consent
twice). Many rounds, so the interleavings happen; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import anyio
import pytest

from server.execute import Caller
from server.lifecycle.grants import credential_write
from server.lifecycle.oauth import TokenGrant
from server.runtime import Runtime
from server.vault import AccountStatus, CredentialWrite, ReauthorizationOutcome
from server.vault.crypto import Sealed, new_secret_token
from server.vault.models import MagicLink, utcnow
from simulators.seeding import seed_account
from tests.reauth.conftest import SLACK_ALICE
from tests.support.databases import database_url_on_both as database_url  # noqa: F401 - fixture override

pytestmark = pytest.mark.anyio
ROUNDS = 12
ASKERS = 6  # agents finding the grant dead while the owner completes the link they were given


async def test_no_reauth_link_outlives_the_reconnect_that_made_it_needless(runtime: Runtime, settings, slack_sim):
    executor, links = runtime.executor, runtime.vault.links
    connector = runtime.connectors["slack"]
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), provider_account_id=SLACK_ALICE)
    answers: Counter[str] = Counter()

    async def ask() -> None:
        result = await executor.reauth_required_with_new_link(Caller("acme", "alice"), connector, account, "token_revoked")
        answers[getattr(result, "reason", "?")] += 1

    async def reconnect(link: MagicLink, write: CredentialWrite) -> None:
        outcome = await anyio.to_thread.run_sync(
            lambda: links.complete_flow(link, provider_account_id=SLACK_ALICE, identity={}, scopes=[], write=write)
        )
        assert outcome == ReauthorizationOutcome.COMPLETED

    for _ in range(ROUNDS):
        runtime.vault.accounts.set_status(account.id, AccountStatus.REAUTH_REQUIRED, "token_revoked")
        owners_link = links.create(
            token=new_secret_token(), account=account, purpose="reauth", reason="token_revoked", ttl=timedelta(minutes=10)
        )
        assert links.begin_flow(owners_link.id, state=new_secret_token(), sealed_flow=Sealed("k", b"flow"))
        tokens = slack_sim.issue_grant()
        grant = TokenGrant(tokens.access_token, tokens.refresh_token, "bearer", 3600, None, None, SLACK_ALICE, {})
        write = credential_write(connector, grant, utcnow(), refresh_at_fraction=0.75)

        async with anyio.create_task_group() as group:
            for _ in range(ASKERS):
                group.start_soon(ask)
            group.start_soon(reconnect, owners_link, write)

        assert runtime.vault.accounts.get(account.id).status == AccountStatus.ACTIVE
        assert links.open_link(account.id, "token_revoked", now=utcnow()) is None  # nobody is asked to consent again

    assert set(answers) <= {"token_revoked", "reconnected_meanwhile"}, answers
    assert sum(answers.values()) == ROUNDS * ASKERS
