"""Alert incidents: an incident is open from the alert that reports it to the resolution, and exactly one worker of
the fleet wins each of the two (the table's primary key decides), so each is reported once."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from server.vault.models import AlertIncident
from server.vault.outbox import WebhookEvent, enqueue
from server.vault.sessions import open_session, rows_changed


class Incidents:
    """`vault.incidents`: open an incident (once), close an account's incidents (once each)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def open(self, account: str, incident: str, severity: str, webhook: WebhookEvent | None = None) -> bool:
        """True for the one caller (in the whole fleet) that opens it; False when it is already open.
        `webhook` is queued in the same transaction, so exactly the opener reports it."""
        with open_session(self.engine) as session:
            session.add(AlertIncident(account=account, incident=incident, severity=severity))
            try:
                session.flush()  # the race is decided here, before anything else is written
                if webhook is not None:
                    enqueue(session, webhook)
                session.commit()
            except IntegrityError:
                return False
        return True

    def close_all(self, account: str, webhook: Callable[[str], WebhookEvent] | None = None) -> list[str]:
        """Close the account's open incidents; returns the ones this caller closed (so it alone says resolved).
        `webhook(incident)` is queued in the transaction that closes it."""
        closed = []
        with open_session(self.engine) as session:
            names = session.exec(select(AlertIncident.incident).where(col(AlertIncident.account) == account)).all()
            for name in names:
                deleted = rows_changed(
                    session,
                    delete(AlertIncident).where(col(AlertIncident.account) == account, col(AlertIncident.incident) == name),
                )
                if deleted == 1 and webhook is not None:
                    enqueue(session, webhook(name))
                session.commit()
                if deleted == 1:
                    closed.append(name)
        return closed
