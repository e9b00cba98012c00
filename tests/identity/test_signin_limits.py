"""/login writes a `signin_flow` row per visit, for anyone: the live ones are capped per client address and
overall, beyond which /login answers 429 with Retry-After and writes nothing; housekeeping prunes expired flows and
sign-in works again. Real HTTP from two loopback addresses, rows counted in the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx2
import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from server.housekeeping import Housekeeper
from server.identity.models import SignInFlow
from server.identity.signin import FLOW_TTL
from server.vault.models import utcnow
from tests.support.databases import database_url_on_both as database_url  # noqa: F401 - fixture override
from tests.support.web import outcome_of

pytestmark = pytest.mark.anyio


def flow_count(runtime) -> int:
    with Session(runtime.vault.engine) as session:
        return session.exec(select(func.count()).select_from(SignInFlow)).one()


@pytest.fixture
async def visitors() -> AsyncIterator[dict[str, httpx2.AsyncClient]]:
    """Two browsers without cookies, one at 127.0.0.1 and one at 127.0.0.2 (the whole 127/8 is loopback)."""
    clients = {
        address: httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(local_address=address), timeout=10)
        for address in ("127.0.0.1", "127.0.0.2")
    }
    yield clients
    for client in clients.values():
        await client.aclose()


async def test_unfinished_sign_ins_are_capped_per_address_and_overall(runtime, web, visitors):
    runtime.settings.signin_flows_per_address_max = 3
    runtime.settings.signin_flows_max = 5
    first, second = visitors["127.0.0.1"], visitors["127.0.0.2"]

    statuses = [(await first.get(f"{web}/login")).status_code for _ in range(4)]
    assert statuses == [303, 303, 303, 429]
    assert flow_count(runtime) == 3

    statuses = [(await second.get(f"{web}/login")).status_code for _ in range(3)]
    assert statuses == [303, 303, 429]  # its own cap is not reached, the overall one is
    assert flow_count(runtime) == 5

    refused = await second.get(f"{web}/login")
    assert refused.status_code == 429 and outcome_of(refused) == "signin_busy"
    assert 0 < int(refused.headers["retry-after"]) <= FLOW_TTL.total_seconds()
    assert "set-cookie" not in refused.headers and flow_count(runtime) == 5

    # Once they have expired, housekeeping prunes them and sign-in starts again.
    later = utcnow() + FLOW_TTL + timedelta(seconds=1)
    Housekeeper(runtime.settings, runtime.vault, clock=lambda: later).prune_once()
    assert flow_count(runtime) == 0
    assert (await first.get(f"{web}/login")).status_code == 303
    assert flow_count(runtime) == 1


async def test_a_finished_sign_in_frees_its_place(runtime, web, browser_factory):
    runtime.settings.signin_flows_per_address_max = 1
    bob = browser_factory()
    await bob.sign_in(web, "bob")  # its flow is used up at the callback
    assert (await browser_factory().client.get(f"{web}/login")).status_code == 303
    assert (await browser_factory().client.get(f"{web}/login")).status_code == 429
