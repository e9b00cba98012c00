"""What a token grant becomes on its credential row: when its access token expires and when its refresh falls due.

A plain function, so importing an account, completing a magic link and a refresh all time a grant the same way
without a TokenManager: `write = credential_write(connector, grant, utcnow(), refresh_at_fraction=0.75)`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from server.connectors import Connector
from server.lifecycle.oauth import TokenGrant
from server.vault import CredentialWrite, TokenSecrets

# How far the due time of a refresh is spread, as a fraction of the token's lifetime, so that a fleet of
# accounts imported together does not come due in the same second.
DUE_JITTER_FRACTION = 0.05


def credential_write(
    connector: Connector,
    grant: TokenGrant,
    issued_at: datetime,
    *,
    refresh_at_fraction: float,
    due_listeners: Iterable[Callable[[datetime], None]] = (),
) -> CredentialWrite:
    """The row `grant` becomes, issued at `issued_at`: its refresh falls due at `refresh_at_fraction` of the access
    token's lifetime (± DUE_JITTER_FRACTION), and each of `due_listeners` is told that due time (a scheduler wakes
    for one earlier than it planned). A lifetime the provider did not state is the connector's default."""
    if grant.access_token is None:
        raise ValueError("a grant without a usable access token is not stored as it is")
    lifetime = grant.expires_in if grant.expires_in else connector.spec.default_access_ttl_seconds
    access_expires_at = refresh_due_at = None
    if lifetime:
        access_expires_at = issued_at + timedelta(seconds=lifetime)
        if grant.refresh_token:
            spread = random.uniform(-DUE_JITTER_FRACTION, DUE_JITTER_FRACTION)
            refresh_due_at = issued_at + timedelta(seconds=lifetime * (refresh_at_fraction + spread))
    refresh_expires_at = issued_at + timedelta(seconds=grant.refresh_expires_in) if grant.refresh_expires_in else None
    if refresh_due_at is not None:
        for listener in due_listeners:
            listener(refresh_due_at)
    return CredentialWrite(
        secrets=TokenSecrets(grant.access_token, grant.refresh_token),
        token_type=grant.token_type,
        issued_at=issued_at,
        access_expires_at=access_expires_at,
        refresh_due_at=refresh_due_at,
        refresh_expires_at=refresh_expires_at,
    )
