"""What a magic link names, and every reason it can be refused. Wording for people lives in `server/web/refusals.py`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from server.vault import AccountStatus, ConnectedAccount, UnknownAccountError, Vault
from server.vault.models import MagicLink, utcnow

# Tokens are `secrets.token_urlsafe(32)`: 43 URL-safe characters. Anything else is not worth a database lookup.
TOKEN_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class Refusal(StrEnum):
    """Why a link or a callback was refused. Every refusal leaves the account and its credentials untouched."""

    LINK_UNKNOWN = "link_unknown"  # no such link: mistyped, altered, or from another server
    LINK_EXPIRED = "link_expired"
    LINK_USED = "link_used"  # opened before (links are single-use), or the account was reconnected meanwhile
    ACCOUNT_DISABLED = "account_disabled"
    CLIENT_NOT_CONFIGURED = "client_not_configured"
    STATE_MISSING = "state_missing"
    STATE_UNKNOWN = "state_unknown"  # forged, altered, or from another server
    FLOW_FINISHED = "flow_finished"  # this sign-in already completed (a replayed callback)
    FLOW_EXPIRED = "flow_expired"
    OTHER_BROWSER = "other_browser"  # the callback arrived in a browser that did not open the link
    ACCESS_DENIED = "access_denied"
    PROVIDER_ERROR = "provider_error"
    CODE_MISSING = "code_missing"
    EXCHANGE_FAILED = "exchange_failed"
    IDENTITY_UNKNOWN = "identity_unknown"
    IDENTITY_MISMATCH = "identity_mismatch"
    ISSUER_MISMATCH = "issuer_mismatch"  # RFC 9207: the answer names another authorization server (a mix-up)
    ID_TOKEN_INVALID = "id_token_invalid"  # OpenID Connect: forged, expired, for another client or another flow
    CROSS_SITE = "cross_site"  # the form was posted by another site's page (Origin / Sec-Fetch-Site)
    FORM_TOKEN_INVALID = "form_token_invalid"  # no form token, or not the one this browser's page was given


class ReauthRefused(Exception):
    def __init__(self, refusal: Refusal, **context: Any):
        super().__init__(refusal.value)
        self.refusal = refusal
        self.context = context


@dataclass(frozen=True)
class LinkView:
    link: MagicLink
    account: ConnectedAccount


def looks_like_token(token: str) -> bool:
    return 32 <= len(token) <= 64 and set(token) <= TOKEN_CHARACTERS


def inspect_link(vault: Vault, token: str) -> LinkView:
    """The link and its account if the link can still start a flow; otherwise `ReauthRefused`. Blocking."""
    link = vault.links.find(token) if looks_like_token(token) else None
    if link is None:
        raise ReauthRefused(Refusal.LINK_UNKNOWN)
    try:
        account = vault.accounts.get(link.account_id)
    except UnknownAccountError:
        raise ReauthRefused(Refusal.LINK_UNKNOWN) from None
    if link.used_at is not None:
        raise ReauthRefused(Refusal.LINK_USED, account=account)
    if link.expires_at <= utcnow():
        raise ReauthRefused(Refusal.LINK_EXPIRED, account=account)
    if account.status == AccountStatus.DISABLED:
        raise ReauthRefused(Refusal.ACCOUNT_DISABLED, account=account)
    return LinkView(link, account)
