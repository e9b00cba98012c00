"""Reading the lifecycle events back, filtered the way the console and `grantkeeper events` ask: by account,
connector, minimum severity, time, and (for --follow) everything after the last one seen. Also how a time filter
is written (`--since 2h`, `--since 2026-12-01T10:00`) and how one event reads on a line."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from server.vault import Vault
from server.vault.models import LifecycleEvent

SEVERITIES = ("info", "warning", "error", "critical")
MAX_EVENTS = 1000
_RELATIVE = re.compile(r"^(\d{1,6})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Event detail keys shown on a line; `account`/`connector` are already in the line itself.
_HIDDEN_DETAIL = {"account", "connector"}


class BadTimeFilter(ValueError):
    pass


def parse_since(value: str, now: datetime) -> datetime:
    """`30m`, `2h`, `7d` before now, or an ISO-8601 moment (UTC unless it says otherwise)."""
    value = value.strip()
    if (relative := _RELATIVE.match(value)) is not None:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    if len(value) > 40:
        raise BadTimeFilter("--since is too long")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadTimeFilter("--since must be like 30m, 2h, 7d or an ISO-8601 time such as 2026-12-01T10:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def severity_at_least(minimum: str | None) -> list[str]:
    if minimum is None:
        return list(SEVERITIES)
    return list(SEVERITIES[SEVERITIES.index(minimum) :])


def lifecycle_events(
    vault: Vault,
    *,
    account_ids: list[str] | None = None,
    connector: str | None = None,
    min_severity: str | None = None,
    since: datetime | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[LifecycleEvent]:
    """Newest first; oldest first when reading on from `after_id` (following)."""
    limit = max(1, min(limit, MAX_EVENTS))
    statement = select(LifecycleEvent).where(col(LifecycleEvent.severity).in_(severity_at_least(min_severity)))
    if account_ids is not None:
        statement = statement.where(col(LifecycleEvent.account_id).in_(account_ids))
    if since is not None:
        statement = statement.where(LifecycleEvent.at >= since)
    if after_id is not None:
        statement = statement.where(col(LifecycleEvent.id) > after_id).order_by(col(LifecycleEvent.id))
    else:
        statement = statement.order_by(col(LifecycleEvent.id).desc())
    with Session(vault.engine, expire_on_commit=False) as session:
        rows = list(session.exec(statement.limit(limit if connector is None else MAX_EVENTS)))
    if connector is not None:  # the connector is in each event's detail (JSON), filtered here for every backend
        rows = [row for row in rows if (row.detail or {}).get("connector") == connector][:limit]
    return rows


def last_event_id(vault: Vault) -> int:
    with Session(vault.engine) as session:
        return session.exec(select(LifecycleEvent.id).order_by(col(LifecycleEvent.id).desc()).limit(1)).first() or 0


def describe_detail(event: LifecycleEvent) -> str:
    return " ".join(
        f"{key}={value}" for key, value in sorted((event.detail or {}).items()) if key not in _HIDDEN_DETAIL and value is not None
    )


def event_line(event: LifecycleEvent) -> str:
    account = (event.detail or {}).get("account") or "-"
    return f"{event.at:%Y-%m-%dT%H:%M:%SZ}  {event.severity:<8} {account:<36} {event.kind}  {describe_detail(event)}".rstrip()
