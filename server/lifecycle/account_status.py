"""An account's status change: written to the vault once, and recorded as one event when it really changed."""

from __future__ import annotations

from server.monitoring.event_kinds import EventKind, Severity
from server.monitoring.events import EventRecorder
from server.vault import AccountStatus, ConnectedAccount, Vault
from server.vault.threads import in_vault_thread

SEVERITY = {AccountStatus.REAUTH_REQUIRED: Severity.CRITICAL, AccountStatus.ADMIN_ACTION_REQUIRED: Severity.ERROR}


async def change_status(
    vault: Vault,
    events: EventRecorder,
    account: ConnectedAccount,
    status: AccountStatus,
    reason: str | None,
    *,
    credential_version: int | None = None,
) -> bool:
    """Set the account's status (see `Vault.set_status`, `credential_version` included); True when it changed,
    and then a `status_changed` event says so."""
    changed = await in_vault_thread(vault.accounts.set_status, account.id, status, reason, credential_version=credential_version)
    if changed:
        severity = SEVERITY.get(status, Severity.INFO)
        await events.record(EventKind.STATUS_CHANGED, account, severity=severity, status=status.value, reason=reason)
    return changed
