"""Due work shared by a fleet of workers: refreshes and health checks, claimed in batches from indexed due times.

A claim is one statement, `UPDATE … WHERE id IN (SELECT … due … ORDER BY due LIMIT n) RETURNING …`:
- PostgreSQL: the inner SELECT takes `FOR UPDATE SKIP LOCKED`, so concurrent workers each get different rows
  without waiting on one another, and the lease is written in the same transaction.
- SQLite: there is one writer at a time, so the same UPDATE is a compare-and-set over the batch (SQLAlchemy
  renders no FOR UPDATE there); the lease condition is checked again in the outer WHERE.
The inner SELECT walks `ix_credential_refresh_due_at` (or `ix_connected_account_status_health_due`) from the
oldest due time and stops after `n` rows: never a scan of every account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, Select, or_, select, update
from sqlmodel import Session, col

from server.vault.models import AccountStatus, ConnectedAccount, Credential
from server.vault.store import DEAD_OUTCOME, outcome_after_takeover


@dataclass(frozen=True)
class ClaimedRefresh:
    """A credential row this worker now holds the lease on, at `version`."""

    account: ConnectedAccount
    version: int


def _lease_free(now: datetime):
    return or_(col(Credential.lease_until).is_(None), Credential.lease_until < now)


def _refresh_token_not_dead():
    # Even if an operator re-activates the account, a refresh token already refused is never presented again.
    return or_(col(Credential.last_refresh_outcome).is_(None), Credential.last_refresh_outcome != DEAD_OUTCOME)


def _account_is_active():
    # A correlated EXISTS, not a join: with a join SQLite may drive the query from the status index, i.e. walk
    # every active account; this way the due index drives it and each candidate costs one primary-key probe.
    return (
        select(ConnectedAccount.id)
        .where(ConnectedAccount.id == Credential.account_id, ConnectedAccount.status == AccountStatus.ACTIVE.value)
        .exists()
    )


def due_refreshes(now: datetime, limit: int) -> Select:
    """Credentials whose refresh is due, unleased, not known dead, of active accounts: oldest due first."""
    return (
        select(Credential.account_id)
        .where(Credential.refresh_due_at <= now, _lease_free(now), _refresh_token_not_dead(), _account_is_active())
        .order_by(Credential.refresh_due_at)
        .limit(limit)
    )


def due_health_checks(now: datetime, limit: int) -> Select:
    return (
        select(ConnectedAccount.id)
        .where(ConnectedAccount.status == AccountStatus.ACTIVE.value, ConnectedAccount.health_due_at <= now)
        .order_by(ConnectedAccount.health_due_at)
        .limit(limit)
    )


class Schedule:
    def __init__(self, engine: Engine):
        self.engine = engine

    # ---- refreshes -----------------------------------------------------------------------------------
    def claim_due_refreshes(self, owner: str, now: datetime, limit: int, lease_for: timedelta) -> list[ClaimedRefresh]:
        """Lease up to `limit` due credentials to `owner`. Rows another worker holds are skipped, not waited for."""
        if limit <= 0:
            return []
        inner = due_refreshes(now, limit).with_for_update(skip_locked=True, of=Credential)
        with Session(self.engine, expire_on_commit=False) as session:
            claimed = session.execute(
                update(Credential)
                .where(col(Credential.account_id).in_(inner.scalar_subquery()), _lease_free(now))
                .values(lease_owner=owner, lease_until=now + lease_for, last_refresh_outcome=outcome_after_takeover())
                .returning(Credential.account_id, Credential.version)
            ).all()
            session.commit()
            if not claimed:
                return []
            versions = dict(claimed)
            accounts = (
                session.execute(select(ConnectedAccount).where(col(ConnectedAccount.id).in_(list(versions)))).scalars().all()
            )
            return [ClaimedRefresh(account, versions[account.id]) for account in accounts]

    def next_refresh_due(self, now: datetime) -> datetime | None:
        """The earliest due time among unleased credentials of active accounts (one index step)."""
        with Session(self.engine) as session:
            return session.execute(
                select(Credential.refresh_due_at)
                .where(col(Credential.refresh_due_at).is_not(None), _lease_free(now), _account_is_active())
                .order_by(Credential.refresh_due_at)
                .limit(1)
            ).scalar()

    # ---- health checks -------------------------------------------------------------------------------
    def claim_due_health_checks(self, now: datetime, limit: int, next_due: datetime) -> list[ConnectedAccount]:
        """Take up to `limit` active accounts whose check is due by moving their due time to `next_due`:
        whoever moved it does the check, so each check happens once across the fleet."""
        if limit <= 0:
            return []
        inner = due_health_checks(now, limit).with_for_update(skip_locked=True)
        with Session(self.engine, expire_on_commit=False) as session:
            ids = (
                session.execute(
                    update(ConnectedAccount)
                    .where(col(ConnectedAccount.id).in_(inner.scalar_subquery()), ConnectedAccount.health_due_at <= now)
                    .values(health_due_at=next_due)
                    .returning(ConnectedAccount.id)
                )
                .scalars()
                .all()
            )
            session.commit()
            if not ids:
                return []
            return list(session.execute(select(ConnectedAccount).where(col(ConnectedAccount.id).in_(list(ids)))).scalars().all())

    def record_health_check(self, account_id: str, checked_at: datetime) -> None:
        with Session(self.engine) as session:
            session.execute(
                update(ConnectedAccount).where(ConnectedAccount.id == account_id).values(health_checked_at=checked_at)
            )
            session.commit()

    def make_stale_checks_due(self, now: datetime, checked_before: datetime) -> int:
        """Startup validation: every active account not checked since `checked_before` becomes due now.
        Returns how many. (A one-off pass at start; the scheduler's own scans stay on the index.)"""
        with Session(self.engine) as session:
            result = session.execute(
                update(ConnectedAccount)
                .where(
                    ConnectedAccount.status == AccountStatus.ACTIVE.value,
                    or_(col(ConnectedAccount.health_checked_at).is_(None), ConnectedAccount.health_checked_at < checked_before),
                    or_(col(ConnectedAccount.health_due_at).is_(None), ConnectedAccount.health_due_at > now),
                )
                .values(health_due_at=now)
            )
            session.commit()
            return result.rowcount

    def accounts_needing_people(self) -> list[ConnectedAccount]:
        """Accounts whose owner must re-authorize or an administrator must act (by the status index)."""
        with Session(self.engine, expire_on_commit=False) as session:
            return list(
                session.execute(
                    select(ConnectedAccount)
                    .where(
                        col(ConnectedAccount.status).in_(
                            [AccountStatus.REAUTH_REQUIRED.value, AccountStatus.ADMIN_ACTION_REQUIRED.value]
                        )
                    )
                    .order_by(ConnectedAccount.org, ConnectedAccount.user, ConnectedAccount.connector)
                )
                .scalars()
                .all()
            )
