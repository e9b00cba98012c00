"""Webhook endpoints and the durable outbox of messages for them, shared by every worker of a fleet.

A message is written by `enqueue` inside the caller's transaction (the lifecycle event or alert it reports), so
it exists exactly when the change does. Delivery is claimed like a due refresh (server/vault/schedule.py): one
`UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED) RETURNING …` taking a lease on PostgreSQL, the
same statement as a compare-and-set on SQLite. A message is claimable only when no earlier message of the same
endpoint and account is still pending, so each receiver sees an account's events in order.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from server.vault.crypto import Keyring, Sealed, associated_data
from server.vault.models import ConnectedAccount, WebhookEndpoint, WebhookMessage, utcnow

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
    import base64

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
        session.execute(select(ConnectedAccount.id).where(ConnectedAccount.id == event.account_id).with_for_update())
    endpoints = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(col(WebhookEndpoint.enabled).is_(True))
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


def _lease_free(now: datetime):
    return or_(col(WebhookMessage.lease_until).is_(None), WebhookMessage.lease_until < now)


def _waits_for_an_earlier_message():
    earlier = aliased(WebhookMessage)
    return (
        select(earlier.id)
        .where(
            earlier.endpoint_id == WebhookMessage.endpoint_id,
            earlier.order_key == WebhookMessage.order_key,
            earlier.status == PENDING,
            earlier.id < WebhookMessage.id,
        )
        .exists()
    )


def due_messages(now: datetime, limit: int):
    """Pending messages due now, unleased, with no earlier pending message for the same endpoint and account."""
    return (
        select(WebhookMessage.id)
        .where(
            WebhookMessage.status == PENDING,
            WebhookMessage.next_attempt_at <= now,
            _lease_free(now),
            ~_waits_for_an_earlier_message(),
        )
        .order_by(WebhookMessage.id)
        .limit(limit)
    )


class Outbox:
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
        with Session(self.engine, expire_on_commit=False) as session:
            session.add(endpoint)
            session.commit()
        return endpoint, secret

    def endpoint_secret(self, endpoint: WebhookEndpoint) -> str:
        aad = associated_data("webhook_endpoint", endpoint.id, SECRET_FIELD)
        return self.keyring.open(Sealed(endpoint.key_id, endpoint.secret_ciphertext), aad).decode()

    def list_endpoints(self) -> list[WebhookEndpoint]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.execute(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at)).scalars())

    def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(WebhookEndpoint, endpoint_id)

    def remove_endpoint(self, endpoint_id: str) -> bool:
        """Delete the endpoint and its messages (nobody is left to deliver them to)."""
        with Session(self.engine) as session:
            session.execute(delete(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint_id))
            removed = session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)).rowcount
            session.commit()
            return removed == 1

    def message_counts(self) -> dict[tuple[str, str], int]:
        """(endpoint id, status) -> number of messages."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(WebhookMessage.endpoint_id, WebhookMessage.status, func.count()).group_by(
                    WebhookMessage.endpoint_id, WebhookMessage.status
                )
            ).all()
            return {(endpoint, status): count for endpoint, status, count in rows}

    def messages(self, endpoint_id: str | None = None, status: str | None = None, limit: int = 1000) -> list[WebhookMessage]:
        with Session(self.engine, expire_on_commit=False) as session:
            statement = select(WebhookMessage).order_by(WebhookMessage.id).limit(limit)
            if endpoint_id is not None:
                statement = statement.where(WebhookMessage.endpoint_id == endpoint_id)
            if status is not None:
                statement = statement.where(WebhookMessage.status == status)
            return list(session.execute(statement).scalars())

    # ---- delivery ------------------------------------------------------------------------------------
    def claim_due(self, owner: str, now: datetime, limit: int, lease_for: timedelta) -> list[ClaimedMessage]:
        """Lease up to `limit` due messages to `owner` (at most one per endpoint and account). Rows another
        worker holds are skipped, not waited for."""
        if limit <= 0:
            return []
        inner = due_messages(now, limit).with_for_update(skip_locked=True, of=WebhookMessage)
        with Session(self.engine, expire_on_commit=False) as session:
            ids = (
                session.execute(
                    update(WebhookMessage)
                    .where(
                        col(WebhookMessage.id).in_(inner.scalar_subquery()), WebhookMessage.status == PENDING, _lease_free(now)
                    )
                    .values(lease_owner=owner, lease_until=now + lease_for)
                    .returning(WebhookMessage.id)
                )
                .scalars()
                .all()
            )
            session.commit()
            if not ids:
                return []
            rows = session.execute(
                select(WebhookMessage, WebhookEndpoint)
                .join(WebhookEndpoint, col(WebhookEndpoint.id) == WebhookMessage.endpoint_id)
                .where(col(WebhookMessage.id).in_(list(ids)))
                .order_by(WebhookMessage.id)
            ).all()
        return [
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
            for message, endpoint in rows
        ]

    def mark_delivered(self, message_id: int, owner: str, now: datetime) -> bool:
        with Session(self.engine) as session:
            result = session.execute(
                update(WebhookMessage)
                .where(WebhookMessage.id == message_id, WebhookMessage.lease_owner == owner, WebhookMessage.status == PENDING)
                .values(
                    status=DELIVERED,
                    delivered_at=now,
                    attempts=WebhookMessage.attempts + 1,
                    lease_owner=None,
                    lease_until=None,
                    last_error=None,
                )
            )
            session.commit()
            return result.rowcount == 1

    def mark_failed(self, message_id: int, owner: str, error: str, retry_at: datetime | None) -> bool:
        """Record a failed attempt: the next one at `retry_at`, or dead-lettered when it is None."""
        values: dict[str, Any] = {
            "attempts": WebhookMessage.attempts + 1,
            "lease_owner": None,
            "lease_until": None,
            "last_error": error[:64],
        }
        if retry_at is None:
            values["status"] = DEAD
        else:
            values["next_attempt_at"] = retry_at
        with Session(self.engine) as session:
            result = session.execute(
                update(WebhookMessage)
                .where(WebhookMessage.id == message_id, WebhookMessage.lease_owner == owner, WebhookMessage.status == PENDING)
                .values(**values)
            )
            session.commit()
            return result.rowcount == 1

    def next_due(self, now: datetime) -> datetime | None:
        """When the next pending message may be claimable: its attempt time, or when its lease runs out."""
        with Session(self.engine) as session:
            attempt = session.execute(
                select(func.min(WebhookMessage.next_attempt_at)).where(
                    WebhookMessage.status == PENDING, _lease_free(now), ~_waits_for_an_earlier_message()
                )
            ).scalar()
            lease = session.execute(
                select(func.min(WebhookMessage.lease_until)).where(
                    WebhookMessage.status == PENDING, WebhookMessage.lease_until >= now
                )
            ).scalar()
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
            statement = statement.where(WebhookMessage.message_id == message_id, WebhookMessage.status != PENDING)
        else:
            statement = statement.where(WebhookMessage.status == DEAD)
        if endpoint_id is not None:
            statement = statement.where(WebhookMessage.endpoint_id == endpoint_id)
        with Session(self.engine) as session:
            result = session.execute(statement)
            session.commit()
            return result.rowcount
