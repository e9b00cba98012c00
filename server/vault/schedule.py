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

from sqlalchemy import Engine, Exists, or_, update
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from server.vault.credentials import lease_is_free, lease_taken, refresh_token_not_dead
from server.vault.models import AccountStatus, ConnectedAccount, Credential
from server.vault.sessions import change, open_session


@dataclass(frozen=True)
class ClaimedRefresh:
    """A credential row this worker now holds the lease on, at `version`."""

    account: ConnectedAccount
    version: int


def _account_is_active() -> Exists:
    # A correlated EXISTS, not a join: with a join SQLite may drive the query from the status index, i.e. walk
    # every active account; this way the due index drives it and each candidate costs one primary-key probe.
    return (
        select(ConnectedAccount.id)
        .where(col(ConnectedAccount.id) == col(Credential.account_id), col(ConnectedAccount.status) == AccountStatus.ACTIVE.value)
        .exists()
    )


def due_refreshes(now: datetime, limit: int) -> SelectOfScalar[str]:
    """Credentials whose refresh is due, unleased, not known dead, of active accounts: oldest due first."""
    return (
        select(col(Credential.account_id))
        .where(col(Credential.refresh_due_at) <= now, lease_is_free(now), refresh_token_not_dead(), _account_is_active())
        .order_by(col(Credential.refresh_due_at))
        .limit(limit)
    )


def due_health_checks(now: datetime, limit: int) -> SelectOfScalar[str]:
    """Active accounts whose health check is due: oldest due first."""
    return (
        select(col(ConnectedAccount.id))
        .where(col(ConnectedAccount.status) == AccountStatus.ACTIVE.value, col(ConnectedAccount.health_due_at) <= now)
        .order_by(col(ConnectedAccount.health_due_at))
        .limit(limit)
    )


class Schedule:
    """`vault.schedule`: claim due refreshes and health checks, each row by one worker of the fleet."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # ---- refreshes -----------------------------------------------------------------------------------
    def claim_due_refreshes(self, owner: str, now: datetime, limit: int, lease_for: timedelta) -> list[ClaimedRefresh]:
        """Lease up to `limit` due credentials to `owner`. Rows another worker holds are skipped, not waited for."""
        if limit <= 0:
            return []
        inner = due_refreshes(now, limit).with_for_update(skip_locked=True, of=Credential)
        with open_session(self.engine) as session:
            claimed = session.execute(
                update(Credential)
                .where(col(Credential.account_id).in_(inner.scalar_subquery()), lease_is_free(now))
                .values(**lease_taken(owner, now, lease_for))
                .returning(col(Credential.account_id), col(Credential.version))
            ).all()
            session.commit()
            if not claimed:
                return []
            versions: dict[str, int] = {account_id: version for account_id, version in claimed}
            accounts = session.exec(select(ConnectedAccount).where(col(ConnectedAccount.id).in_(list(versions)))).all()
            return [ClaimedRefresh(account, versions[account.id]) for account in accounts]

    def next_refresh_due(self, now: datetime) -> datetime | None:
        """The earliest due time among unleased credentials of active accounts (one index step)."""
        with open_session(self.engine) as session:
            return session.exec(
                select(col(Credential.refresh_due_at))
                .where(col(Credential.refresh_due_at).is_not(None), lease_is_free(now), _account_is_active())
                .order_by(col(Credential.refresh_due_at))
                .limit(1)
            ).first()

    # ---- health checks -------------------------------------------------------------------------------
    def claim_due_health_checks(self, now: datetime, limit: int, next_due: datetime) -> list[ConnectedAccount]:
        """Take up to `limit` active accounts whose check is due by moving their due time to `next_due`:
        whoever moved it does the check, so each check happens once across the fleet."""
        if limit <= 0:
            return []
        inner = due_health_checks(now, limit).with_for_update(skip_locked=True)
        with open_session(self.engine) as session:
            ids = (
                session.execute(
                    update(ConnectedAccount)
                    .where(col(ConnectedAccount.id).in_(inner.scalar_subquery()), col(ConnectedAccount.health_due_at) <= now)
                    .values(health_due_at=next_due)
                    .returning(col(ConnectedAccount.id))
                )
                .scalars()
                .all()
            )
            session.commit()
            if not ids:
                return []
            return list(session.exec(select(ConnectedAccount).where(col(ConnectedAccount.id).in_(list(ids)))).all())

    def record_health_check(self, account_id: str, checked_at: datetime) -> None:
        change(
            self.engine,
            update(ConnectedAccount).where(col(ConnectedAccount.id) == account_id).values(health_checked_at=checked_at),
        )

    def make_stale_checks_due(self, now: datetime, checked_before: datetime) -> int:
        """Startup validation: every active account not checked since `checked_before` becomes due now.
        Returns how many. (A one-off pass at start; the scheduler's own scans stay on the index.)"""
        return change(
            self.engine,
            update(ConnectedAccount)
            .where(
                col(ConnectedAccount.status) == AccountStatus.ACTIVE.value,
                or_(col(ConnectedAccount.health_checked_at).is_(None), col(ConnectedAccount.health_checked_at) < checked_before),
                or_(col(ConnectedAccount.health_due_at).is_(None), col(ConnectedAccount.health_due_at) > now),
            )
            .values(health_due_at=now),
        )

    def accounts_needing_people(self) -> list[ConnectedAccount]:
        """Accounts whose owner must re-authorize or an administrator must act (by the status index)."""
        with open_session(self.engine) as session:
            return list(
                session.exec(
                    select(ConnectedAccount)
                    .where(
                        col(ConnectedAccount.status).in_(
                            [AccountStatus.REAUTH_REQUIRED.value, AccountStatus.ADMIN_ACTION_REQUIRED.value]
                        )
                    )
                    .order_by(col(ConnectedAccount.org), col(ConnectedAccount.user), col(ConnectedAccount.connector))
                ).all()
            )
