"""What a lifecycle event may be and how serious it is: the closed vocabularies of `EventRecorder.record`.

The values are the strings stored in `lifecycle_event` rows, logged, counted in metrics and mapped to webhooks;
they must not change. Being `StrEnum`s, members compare and serialise as those strings."""

from __future__ import annotations

import logging
from enum import StrEnum


class EventKind(StrEnum):
    # connecting and reconnecting
    ACCOUNT_IMPORTED = "account_imported"
    REAUTHORIZED = "reauthorized"
    REFRESH_TOKEN_MISSING = "refresh_token_missing"  # connected without a refresh token: needs its user at expiry
    # refreshing
    REFRESH_ATTEMPTED = "refresh_attempted"
    REFRESH_SUCCEEDED = "refresh_succeeded"
    REFRESH_FAILED = "refresh_failed"
    REFRESH_ANSWER_DEFECTIVE = "refresh_answer_defective"
    REFRESH_COMMIT_FAILED = "refresh_commit_failed"
    # calling the API
    API_AUTH_FAILURE = "api_auth_failure"  # a token was refused: refreshed once and sent once more
    # the account's state
    REAUTH_REQUIRED = "reauth_required"
    STATUS_CHANGED = "status_changed"
    VAULT_INTEGRITY_FAILED = "vault_integrity_failed"
    # health
    HEALTH_CHECKED = "health_checked"
    REFRESH_TOKEN_EXPIRING = "refresh_token_expiring"
    RECONNECT_DUE = "reconnect_due"
    STARTUP_VALIDATED = "startup_validated"
    # offboarding
    ACCOUNT_REMOVED = "account_removed"
    UPSTREAM_REVOCATION_COMPLETED = "upstream_revocation_completed"
    UPSTREAM_REVOCATION_UNSUPPORTED = "upstream_revocation_unsupported"
    UPSTREAM_REVOCATION_FAILED = "upstream_revocation_failed"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def log_level(self) -> int:
        return getattr(logging, self.name)
