"""Magic links are pruned once they can do nothing more and their retention has passed: counted row by row on a
crafted set of links (each state at the edge of its rule), in batches, and by the background housekeeper."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest
from sqlalchemy import func, update
from sqlmodel import Session, select

from server.housekeeping import Housekeeper
from server.vault.crypto import new_secret_token
from server.vault.models import MagicLink, utcnow

pytestmark = pytest.mark.anyio
RETENTION, TTL = timedelta(hours=1), timedelta(minutes=15)
SECOND = timedelta(seconds=1)


def make_link(vault, account, **state) -> str:
    link = vault.links.create(token=new_secret_token(), account=account, purpose="reauth", reason="test", ttl=TTL)
    if state:
        with Session(vault.engine) as session:
            session.execute(update(MagicLink).where(MagicLink.id == link.id).values(**state))
            session.commit()
    return link.id


def link_ids(vault) -> set[str]:
    with Session(vault.engine) as session:
        return set(session.exec(select(MagicLink.id)))


def test_only_dead_links_past_their_retention_are_pruned(runtime_sync):
    vault = runtime_sync.vault
    account = vault.accounts.create(org="acme", user="alice", connector="slack")
    now = utcnow()
    cutoff = now - RETENTION
    pruned = {
        make_link(vault, account, expires_at=cutoff - SECOND),  # never opened, expired past retention
        make_link(vault, account, expires_at=cutoff, used_at=cutoff - TTL - SECOND),  # sign-in expired long ago
        make_link(vault, account, used_at=cutoff - TTL - 2 * SECOND, completed_at=cutoff - SECOND),  # finished
        make_link(vault, account, expires_at=cutoff - SECOND, used_at=cutoff - TTL - SECOND),  # retired by another
    }
    open_link = make_link(vault, account)
    kept = {
        open_link,
        make_link(vault, account, expires_at=cutoff + SECOND),  # expired, still within retention
        make_link(vault, account, expires_at=now - SECOND, used_at=now - TTL + SECOND),  # sign-in still running
        make_link(vault, account, expires_at=cutoff, used_at=cutoff - TTL + SECOND),  # sign-in ended within retention
        make_link(vault, account, used_at=cutoff - TTL, completed_at=cutoff + SECOND),  # finished within retention
    }
    assert link_ids(vault) == pruned | kept

    assert vault.links.prune(now=now, retention=RETENTION, flow_ttl=TTL) == 4
    assert link_ids(vault) == kept
    assert vault.links.prune(now=now, retention=RETENTION, flow_ttl=TTL) == 0
    # An hour on, the rest are dead and past retention; the open link (expiring in 15 minutes) is still kept.
    later = now + RETENTION + 2 * SECOND
    assert vault.links.prune(now=later, retention=RETENTION, flow_ttl=TTL) == 4
    assert link_ids(vault) == {open_link}


def test_a_backlog_is_pruned_in_batches(runtime_sync):
    vault = runtime_sync.vault
    account = vault.accounts.create(org="acme", user="alice", connector="slack")
    for _ in range(25):
        make_link(vault, account, expires_at=utcnow() - RETENTION - SECOND)
    keep = make_link(vault, account)

    assert vault.links.prune(now=utcnow(), retention=RETENTION, flow_ttl=TTL, batch=10) == 25
    assert link_ids(vault) == {keep}


async def test_the_background_housekeeper_prunes_with_the_retention_setting(runtime):
    vault = runtime.vault
    runtime.settings.magic_link_retention_seconds = 60
    account = vault.accounts.create(org="acme", user="alice", connector="slack")
    for age in (61, 3600, 86400):
        make_link(vault, account, expires_at=utcnow() - timedelta(seconds=age))
    recent = make_link(vault, account, expires_at=utcnow() - timedelta(seconds=30))
    passes: list[int] = []
    first_pass = anyio.Event()

    def after_pass(count: int) -> None:
        passes.append(count)
        first_pass.set()

    async with anyio.create_task_group() as group:
        group.start_soon(Housekeeper(runtime.settings, vault, after_pass=after_pass).run)
        await first_pass.wait()
        group.cancel_scope.cancel()

    assert passes == [3]
    assert link_ids(vault) == {recent}
    with Session(vault.engine) as session:
        assert session.exec(select(func.count()).select_from(MagicLink)).one() == 1
