"""Webhook endpoints and the durable outbox of messages for them, shared by every worker of a fleet.

A message is written by `enqueue` inside the caller's transaction (the lifecycle event or alert it reports), so
it exists exactly when the change does. Delivery is claimed like a due refresh (server/vault/schedule.py): one
`UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED) RETURNING …` taking a lease on PostgreSQL, the
same statement as a compare-and-set on SQLite. A message is claimable only when no earlier message of the same
endpoint and account is still pending, so each receiver sees an account's events in order.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, Exists, delete, func, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from server.vault.crypto import Keyring, Sealed, associated_data
from server.vault.models import ConnectedAccount, WebhookEndpoint, WebhookMessage, utcnow
from server.vault.sessions import change, open_session, rows_changed

SECRET_FIELD = "signing_secret"
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


@dataclass(frozen=True)
class WebhookEvent:
    """What one change tells the receivers: its type, the account it is about (the ordering key), its data."""

    type: str
    account_id: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class ClaimedMessage:
    """A message this worker holds the delivery lease on, with what it takes to sign and send it."""

    id: int
    message_id: str
    event_type: str
    payload: dict[str, Any]
    attempts: int
    endpoint_id: str
    url: str
    secret: str = field(repr=False)


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex


def enqueue(session: Session, event: WebhookEvent, now: datetime | None = None) -> int:
    """Add one message per enabled endpoint subscribed to `event.type`, in the caller's transaction.
    Returns how many (the caller commits)."""
    now = now or utcnow()
    if event.account_id:
        # Ids are the delivery order. Concurrent writers for one account take turns on its row (PostgreSQL; SQLite
        # has one writer anyway), so an account's messages get their ids in the order their transactions commit.
        session.execute(select(col(ConnectedAccount.id)).where(col(ConnectedAccount.id) == event.account_id).with_for_update())
    endpoints = session.execute(
        select(col(WebhookEndpoint.id), col(WebhookEndpoint.event_types)).where(col(WebhookEndpoint.enabled).is_(True))
    ).all()
    payload = {"type": event.type, "timestamp": now.isoformat(), "data": event.data}
    written = 0
    for endpoint_id, event_types in endpoints:
        if event.type in (event_types or []):
            session.add(
                WebhookMessage(
                    message_id=new_message_id(),
                    endpoint_id=endpoint_id,
                    order_key=event.account_id or "",
                    event_type=event.type,
                    payload=payload,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            written += 1
    return written


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(col(WebhookMessage.lease_until).is_(None), col(WebhookMessage.lease_until) < now)


def _waits_for_an_earlier_message() -> Exists:
    earlier = aliased(WebhookMessage)
    return (
        select(col(earlier.id))
        .where(
            col(earlier.endpoint_id) == col(WebhookMessage.endpoint_id),
            col(earlier.order_key) == col(WebhookMessage.order_key),
            col(earlier.status) == PENDING,
            col(earlier.id) < col(WebhookMessage.id),
        )
        .exists()
    )


def due_messages(now: datetime, limit: int) -> SelectOfScalar[int | None]:
    """Pending messages due now, unleased, with no earlier pending message for the same endpoint and account."""
    return (
        select(col(WebhookMessage.id))
        .where(
            col(WebhookMessage.status) == PENDING,
            col(WebhookMessage.next_attempt_at) <= now,
            _lease_free(now),
            ~_waits_for_an_earlier_message(),
        )
        .order_by(col(WebhookMessage.id))
        .limit(limit)
    )


def _leased_to(message_id: int, owner: str) -> tuple[ColumnElement[bool], ...]:
    """WHERE clauses: the message is still pending and `owner` still holds its delivery lease."""
    return (
        col(WebhookMessage.id) == message_id,
        col(WebhookMessage.lease_owner) == owner,
        col(WebhookMessage.status) == PENDING,
    )


class Outbox:
    """`vault.outbox`: webhook endpoints, and the delivery of the messages queued for them."""

    def __init__(self, engine: Engine, keyring: Keyring):
        self.engine = engine
        self.keyring = keyring

    # ---- endpoints -----------------------------------------------------------------------------------
    def add_endpoint(self, url: str, event_types: list[str], enabled: bool = True) -> tuple[WebhookEndpoint, str]:
        """Create an endpoint; returns it and its signing secret (the only time the secret leaves the vault)."""
        secret = new_signing_secret()
        endpoint = WebhookEndpoint(
            url=url, key_id="", secret_ciphertext=b"", event_types=sorted(set(event_types)), enabled=enabled
        )
        sealed = self.keyring.seal(secret.encode(), associated_data("webhook_endpoint", endpoint.id, SECRET_FIELD))
        endpoint.key_id, endpoint.secret_ciphertext = sealed.key_id, sealed.blob
        with open_session(self.engine) as session:
            session.add(endpoint)
            session.commit()
        return endpoint, secret

    def endpoint_secret(self, endpoint: WebhookEndpoint) -> str:
        aad = associated_data("webhook_endpoint", endpoint.id, SECRET_FIELD)
        return self.keyring.open(Sealed(endpoint.key_id, endpoint.secret_ciphertext), aad).decode()

    def list_endpoints(self) -> list[WebhookEndpoint]:
        with open_session(self.engine) as session:
            return list(session.exec(select(WebhookEndpoint).order_by(col(WebhookEndpoint.created_at))))

    def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        with open_session(self.engine) as session:
            return session.get(WebhookEndpoint, endpoint_id)

    def remove_endpoint(self, endpoint_id: str) -> bool:
        """Delete the endpoint and its messages (nobody is left to deliver them to)."""
        with open_session(self.engine) as session:
            session.execute(delete(WebhookMessage).where(col(WebhookMessage.endpoint_id) == endpoint_id))
            removed = rows_changed(session, delete(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint_id))
            session.commit()
            return removed == 1

    def message_counts(self) -> dict[tuple[str, str], int]:
        """(endpoint id, status) -> number of messages."""
        with open_session(self.engine) as session:
            rows = session.exec(
                select(col(WebhookMessage.endpoint_id), col(WebhookMessage.status), func.count()).group_by(
                    col(WebhookMessage.endpoint_id), col(WebhookMessage.status)
                )
            ).all()
            return {(endpoint, status): count for endpoint, status, count in rows}

    def messages(self, endpoint_id: str | None = None, status: str | None = None, limit: int = 1000) -> list[WebhookMessage]:
        with open_session(self.engine) as session:
            statement = select(WebhookMessage).order_by(col(WebhookMessage.id)).limit(limit)
            if endpoint_id is not None:
                statement = statement.where(col(WebhookMessage.endpoint_id) == endpoint_id)
            if status is not None:
                statement = statement.where(col(WebhookMessage.status) == status)
            return list(session.exec(statement))

    # ---- delivery ------------------------------------------------------------------------------------
    def claim_due(self, owner: str, now: datetime, limit: int, lease_for: timedelta) -> list[ClaimedMessage]:
        """Lease up to `limit` due messages to `owner` (at most one per endpoint and account). Rows another
        worker holds are skipped, not waited for."""
        if limit <= 0:
            return []
        inner = due_messages(now, limit).with_for_update(skip_locked=True, of=WebhookMessage)
        with open_session(self.engine) as session:
            ids = (
                session.execute(
                    update(WebhookMessage)
                    .where(
                        col(WebhookMessage.id).in_(inner.scalar_subquery()),
                        col(WebhookMessage.status) == PENDING,
                        _lease_free(now),
                    )
                    .values(lease_owner=owner, lease_until=now + lease_for)
                    .returning(col(WebhookMessage.id))
                )
                .scalars()
                .all()
            )
            session.commit()
            if not ids:
                return []
            claimed = session.exec(
                select(WebhookMessage, WebhookEndpoint)
                .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookMessage.endpoint_id))
                .where(col(WebhookMessage.id).in_(list(ids)))
                .order_by(col(WebhookMessage.id))
            ).all()
        messages = []
        for message, endpoint in claimed:
            assert message.id is not None  # a row read back from the table has its primary key
            messages.append(
                ClaimedMessage(
                    message.id,
                    message.message_id,
                    message.event_type,
                    message.payload,
                    message.attempts,
                    endpoint.id,
                    endpoint.url,
                    self.endpoint_secret(endpoint),
                )
            )
        return messages

    def mark_delivered(self, message_id: int, owner: str, now: datetime) -> bool:
        delivered = change(
            self.engine,
            update(WebhookMessage)
            .where(*_leased_to(message_id, owner))
            .values(
                status=DELIVERED,
                delivered_at=now,
                attempts=col(WebhookMessage.attempts) + 1,
                lease_owner=None,
                lease_until=None,
                last_error=None,
            ),
        )
        return delivered == 1

    def mark_failed(self, message_id: int, owner: str, error: str, retry_at: datetime | None) -> bool:
        """Record a failed attempt: the next one at `retry_at`, or dead-lettered when it is None."""
        values: dict[str, Any] = {
            "attempts": col(WebhookMessage.attempts) + 1,
            "lease_owner": None,
            "lease_until": None,
            "last_error": error[:64],
        }
        if retry_at is None:
            values["status"] = DEAD
        else:
            values["next_attempt_at"] = retry_at
        failed = change(self.engine, update(WebhookMessage).where(*_leased_to(message_id, owner)).values(**values))
        return failed == 1

    def next_due(self, now: datetime) -> datetime | None:
        """When the next pending message may be claimable: its attempt time, or when its lease runs out."""
        with open_session(self.engine) as session:
            attempt = session.exec(
                select(func.min(col(WebhookMessage.next_attempt_at))).where(
                    col(WebhookMessage.status) == PENDING, _lease_free(now), ~_waits_for_an_earlier_message()
                )
            ).first()
            lease = session.exec(
                select(func.min(col(WebhookMessage.lease_until))).where(
                    col(WebhookMessage.status) == PENDING, col(WebhookMessage.lease_until) >= now
                )
            ).first()
        times = [t for t in (attempt, lease) if t is not None]
        if not times:
            return None
        earliest = min(times)
        return earliest if earliest.tzinfo else earliest.replace(tzinfo=now.tzinfo)

    def replay(self, *, message_id: str | None = None, endpoint_id: str | None = None, now: datetime | None = None) -> int:
        """Make dead (or, by id, already delivered) messages pending again, with a fresh retry budget. They keep
        their `webhook-id`, so a receiver that already has one drops the copy."""
        now = now or utcnow()
        statement = update(WebhookMessage).values(
            status=PENDING, attempts=0, next_attempt_at=now, lease_owner=None, lease_until=None, last_error=None
        )
        if message_id is not None:
            statement = statement.where(col(WebhookMessage.message_id) == message_id, col(WebhookMessage.status) != PENDING)
        else:
            statement = statement.where(col(WebhookMessage.status) == DEAD)
        if endpoint_id is not None:
            statement = statement.where(col(WebhookMessage.endpoint_id) == endpoint_id)
        return change(self.engine, statement)
