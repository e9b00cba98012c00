"""The vault's tables: connected accounts, their sealed credentials, magic links, API keys, lifecycle events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, LargeBinary, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC on every backend (SQLite has no time zones), always read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the vault; use an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _ts(**kwargs: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kwargs))


# What an account's label may be (`work`, `oss`): tools take it as their `account` argument, the CLI as --label.
LABEL_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"


class AccountStatus(StrEnum):
    PENDING = "pending"  # created for a connect link, no credentials yet
    ACTIVE = "active"
    REAUTH_REQUIRED = "reauth_required"
    ADMIN_ACTION_REQUIRED = "admin_action_required"
    DISABLED = "disabled"


class RefreshOutcome(StrEnum):
    """How the last refresh of a credential went (`credential.last_refresh_outcome`)."""

    OK = "ok"
    FAILED = "failed"  # the token endpoint did not answer usefully; nothing rotated
    AMBIGUOUS = "ambiguous"  # the provider may have rotated, but we never saw the answer
    INTERRUPTED = "interrupted"  # a lease owner crashed or hung mid-refresh: the same doubt as ambiguous
    REJECTED = "rejected"  # the grant is dead: its refresh token is never presented again
    # An answer stored because it carried the grant's only live refresh token, although it was defective:
    REFRESH_TOKEN_MISSING = "refresh_token_missing"
    ACCESS_TOKEN_UNUSABLE = "access_token_unusable"
    DEFECTIVE = "defective"


class ConnectedAccount(SQLModel, table=True):
    __tablename__ = "connected_account"
    __table_args__ = (
        UniqueConstraint("org", "user", "connector", "label", name="uq_account_identity"),
        Index("ix_connected_account_status_health_due", "status", "health_due_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    org: str = Field(max_length=200)
    user: str = Field(max_length=200)
    connector: str = Field(max_length=64)
    label: str = Field(default="default", max_length=64)
    status: str = Field(default=AccountStatus.ACTIVE.value, max_length=32)
    status_reason: str | None = Field(default=None, max_length=64)
    provider_account_id: str | None = Field(default=None, max_length=200)
    provider_identity: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    scopes: str = Field(default="", max_length=2000)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    updated_at: datetime = _ts(nullable=False, default=utcnow)
    # Fleet mode: the health checker claims accounts whose check is due (server/lifecycle/health.py).
    health_due_at: datetime | None = _ts(nullable=True, default=utcnow)
    health_checked_at: datetime | None = _ts(nullable=True)
    # Offboarding: the account stays (agents are told `reauth_required`, reason `removed`), its credentials go.
    removed_at: datetime | None = _ts(nullable=True)
    removed_by: str | None = Field(default=None, max_length=200)

    @property
    def display_name(self) -> str:
        return f"{self.org}/{self.user}/{self.connector}" + ("" if self.label == "default" else f"/{self.label}")


class Credential(SQLModel, table=True):
    """One row per account. `version` only grows; every refresh is a compare-and-set on it and the lease."""

    __tablename__ = "credential"
    __table_args__ = (Index("ix_credential_refresh_due_at", "refresh_due_at"),)

    account_id: str = Field(primary_key=True, foreign_key="connected_account.id", max_length=32)
    key_id: str = Field(max_length=64)
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    version: int = Field(default=1)
    token_type: str = Field(default="bearer", max_length=32)
    issued_at: datetime = _ts(nullable=False)
    access_expires_at: datetime | None = _ts(nullable=True)
    refresh_due_at: datetime | None = _ts(nullable=True)
    refresh_expires_at: datetime | None = _ts(nullable=True)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = _ts(nullable=True)
    consecutive_failures: int = Field(default=0)
    last_refresh_at: datetime | None = _ts(nullable=True)
    # a RefreshOutcome value
    last_refresh_outcome: str | None = Field(default=None, max_length=32)


class MagicLink(SQLModel, table=True):
    """A single-use, expiring link; only the token's hash is stored. `flow_*` hold the OAuth state once opened."""

    __tablename__ = "magic_link"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    account_id: str = Field(foreign_key="connected_account.id", index=True, max_length=32)
    purpose: str = Field(default="reauth", max_length=16)  # reauth | connect
    org: str = Field(max_length=200)
    user: str = Field(max_length=200)
    reason: str | None = Field(default=None, max_length=64)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    expires_at: datetime = _ts(nullable=False)
    used_at: datetime | None = _ts(nullable=True)
    flow_state_hash: str | None = Field(default=None, unique=True, index=True, max_length=64)
    flow_key_id: str | None = Field(default=None, max_length=64)
    flow_ciphertext: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    completed_at: datetime | None = _ts(nullable=True)
    # Who asked for the link: "agent" (a tool call) or "operator" (`grantkeeper link`). Without sign-in, an HTTP
    # server refuses agent-made first-time connect links (server/identity/link_guard.py); None (older rows) counts
    # as an agent.
    issued_by: str | None = Field(default=None, max_length=16)


class ApiKey(SQLModel, table=True):
    """Maps an HTTP caller to an identity. The key itself is shown once and stored only as a hash."""

    __tablename__ = "api_key"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    key_hash: str = Field(unique=True, index=True, max_length=64)
    prefix: str = Field(max_length=16)
    org: str = Field(max_length=200)
    user: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    revoked_at: datetime | None = _ts(nullable=True)
    admin: bool = Field(default=False)  # may use the console (/dashboard) as an administrator


class LifecycleEvent(SQLModel, table=True):
    """The audit and monitoring trail. `detail` never holds a secret."""

    __tablename__ = "lifecycle_event"
    __table_args__ = (Index("ix_lifecycle_event_account_at", "account_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(nullable=False, default=utcnow, index=True)
    account_id: str | None = Field(default=None, max_length=32)
    kind: str = Field(max_length=64, index=True)
    severity: str = Field(default="info", max_length=16)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class AlertIncident(SQLModel, table=True):
    """An incident that has been alerted and not yet resolved. The primary key makes opening it a race that exactly
    one worker wins, so the fleet sends one alert (and one resolution) per incident."""

    __tablename__ = "alert_incident"

    account: str = Field(primary_key=True, max_length=400)
    incident: str = Field(primary_key=True, max_length=64)
    severity: str = Field(max_length=16)
    opened_at: datetime = _ts(nullable=False, default=utcnow)


class WebhookEndpoint(SQLModel, table=True):
    """A receiver of signed webhooks. Its signing secret is sealed like a credential and shown once, at `add`."""

    __tablename__ = "webhook_endpoint"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    url: str = Field(max_length=2000)
    key_id: str = Field(max_length=64)
    secret_ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enabled: bool = Field(default=True)
    created_at: datetime = _ts(nullable=False, default=utcnow)


class WebhookMessage(SQLModel, table=True):
    """The outbox: one row per (event, endpoint), written in the transaction of the change it reports, delivered
    at least once in `id` order per (endpoint, account). `message_id` is the `webhook-id` receivers de-duplicate by."""

    __tablename__ = "webhook_message"
    __table_args__ = (
        Index("ix_webhook_message_status_next", "status", "next_attempt_at"),
        Index("ix_webhook_message_order", "endpoint_id", "order_key", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(unique=True, max_length=40)
    endpoint_id: str = Field(foreign_key="webhook_endpoint.id", max_length=32)
    order_key: str = Field(default="", max_length=32)  # the account id ("" for events about no account)
    event_type: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending | delivered | dead
    attempts: int = Field(default=0)
    next_attempt_at: datetime = _ts(nullable=False, default=utcnow)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, max_length=64)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    delivered_at: datetime | None = _ts(nullable=True)


class RevocationState(StrEnum):
    PENDING = "pending"  # not yet accepted by the provider; retried from the database
    DONE = "done"
    UNSUPPORTED = "unsupported"  # the provider offers no way to revoke: the user must remove the app there


class Revocation(SQLModel, table=True):
    """A grant to end at its provider (an account removed, a grant replaced by a reconnect, a refused connect).
    The token to revoke is sealed here until the provider accepts, then wiped; the row stays as the record."""

    __tablename__ = "revocation"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(max_length=32, index=True)
    connector: str = Field(max_length=64)
    purpose: str = Field(max_length=16)  # removed | replaced | refused
    key_id: str | None = Field(default=None, max_length=64)
    ciphertext: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = _ts(nullable=False, default=utcnow)
    attempts: int = Field(default=0)
    next_attempt_at: datetime | None = _ts(nullable=True, index=True)
    lease_until: datetime | None = _ts(nullable=True)
    state: str = Field(default=RevocationState.PENDING.value, max_length=16)
    last_error: str | None = Field(default=None, max_length=200)
    completed_at: datetime | None = _ts(nullable=True)


class AuditEvent(SQLModel, table=True):
    """Who did what: administrative actions and tool calls. Never an argument value, a result body or a secret."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(nullable=False, default=utcnow, index=True)
    actor: str = Field(max_length=400, index=True)
    action: str = Field(max_length=64)
    account_id: str | None = Field(default=None, max_length=32)
    target: str | None = Field(default=None, max_length=400)
    status: str | None = Field(default=None, max_length=32)
    duration_ms: int | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
