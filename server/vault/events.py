"""The lifecycle event trail (audit and monitoring), each event stored with the webhook messages that report it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select

from server.vault.models import LifecycleEvent
from server.vault.outbox import WebhookEvent, enqueue
from server.vault.sessions import open_session


class Events:
    """`vault.events`: record an event, read the recent ones."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def record(
        self, kind: str, *, account_id: str | None, severity: str = "info", webhook: WebhookEvent | None = None, **detail: Any
    ) -> None:
        """Store the event and, in the same transaction, the webhook messages that report it."""
        with open_session(self.engine) as session:
            session.add(LifecycleEvent(kind=kind, account_id=account_id, severity=severity, detail=detail))
            if webhook is not None:
                enqueue(session, webhook)
            session.commit()

    def recent(self, account_id: str | None = None, kind: str | None = None, limit: int = 100) -> list[LifecycleEvent]:
        """The latest `limit` events (of one account, of one kind), newest first."""
        with open_session(self.engine) as session:
            statement = select(LifecycleEvent).order_by(col(LifecycleEvent.id).desc()).limit(limit)
            if account_id is not None:
                statement = statement.where(col(LifecycleEvent.account_id) == account_id)
            if kind is not None:
                statement = statement.where(col(LifecycleEvent.kind) == kind)
            return list(session.exec(statement))
