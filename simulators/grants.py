"""Provider-neutral OAuth grant store for the simulators.

Grants are token families: rotating refresh tokens, RFC 9700 reuse detection,
PKCE authorization codes and the token-side faults (expiry, revocation, deactivation).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .faults import Counters

_TOKEN_ALPHABET = string.ascii_letters + string.digits


def random_token(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(length))


def redact(token: str | None) -> str:
    """A token shortened for logs and listings: its provider prefix and last four characters."""
    if not token:
        return ""
    cut = max(token.rfind("-", 0, 16), token.rfind("_", 0, 16)) + 1
    return f"{token[:cut]}…{token[-4:]}"


def pkce_s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class GrantState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    INACTIVE = "inactive"


class TokenStatus(StrEnum):
    """Why an access token is (not) accepted; each simulator maps these to its own errors."""

    OK = "ok"
    MISSING = "missing"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"  # killed by a rotation of its family
    REVOKED = "revoked"
    INACTIVE = "inactive"


class GrantFailure(StrEnum):
    """Why a refresh or code exchange was refused."""

    UNKNOWN = "unknown"
    USED = "used"
    REUSE_DETECTED = "reuse_detected"
    EXPIRED = "expired"
    REVOKED = "revoked"
    INACTIVE = "inactive"
    CLIENT_MISMATCH = "client_mismatch"
    REDIRECT_MISMATCH = "redirect_mismatch"
    PKCE_FAILED = "pkce_failed"


@dataclass(frozen=True)
class TokenPolicy:
    """How a provider shapes and ages its tokens."""

    access_prefix: str
    refresh_prefix: str
    access_length: int = 40
    refresh_length: int = 60
    access_ttl: int | None = 3600
    refresh_ttl: int | None = None
    rotation_kills_access_token: bool = True
    # False (Google): a refresh mints only an access token; the refresh token stays valid and is used again.
    rotates_refresh_token: bool = True
    code_factory: Callable[[], str] = lambda: secrets.token_hex(10)
    code_ttl: int = 600


@dataclass(frozen=True)
class TokenSet:
    grant_id: str
    access_token: str
    refresh_token: str
    expires_in: int | None
    refresh_token_expires_in: int | None
    scopes: tuple[str, ...]
    identity: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "grant_id": self.grant_id,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_in": self.expires_in,
            "refresh_token_expires_in": self.refresh_token_expires_in,
            "scopes": list(self.scopes),
            "identity": dict(self.identity),
        }


@dataclass(frozen=True)
class TokenCheck:
    status: TokenStatus
    grant: Grant | None = None

    @property
    def ok(self) -> bool:
        return self.status is TokenStatus.OK

    @property
    def usable_grant(self) -> Grant | None:
        """The grant an API request may act on: set only when the token is good."""
        return self.grant if self.ok else None


@dataclass(frozen=True)
class GrantResult:
    tokens: TokenSet | None = None
    failure: GrantFailure | None = None

    @property
    def ok(self) -> bool:
        return self.tokens is not None


@dataclass
class Grant:
    grant_id: str
    identity: dict[str, Any]
    scopes: tuple[str, ...]
    created_at: float
    access_ttl: int | None
    state: GrantState = GrantState.ACTIVE
    rotations: int = 0


@dataclass
class _AccessToken:
    grant_id: str
    expires_at: float | None
    superseded: bool = False


@dataclass
class _RefreshToken:
    grant_id: str
    expires_at: float | None
    used: bool = False


@dataclass
class _AuthorizationCode:
    client_id: str
    redirect_uri: str
    identity: dict[str, Any]
    scopes: tuple[str, ...]
    code_challenge: str | None
    expires_at: float
    redeemed_grant_id: str | None = None
    used: bool = False


@dataclass
class GrantStore:
    """Thread-safe: handlers run on the server's event loop while tests drive faults from theirs."""

    policy: TokenPolicy
    counters: Counters = field(default_factory=Counters)
    reuse_detection: bool = True
    access_ttl: int | None = None  # None: take the policy's default

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._clock_offset = 0.0
        self._grants: dict[str, Grant] = {}
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._codes: dict[str, _AuthorizationCode] = {}
        self._ended_early: list[int] = []  # announced lifetimes of the next access tokens, each dead from the start
        if self.access_ttl is None:
            self.access_ttl = self.policy.access_ttl

    # -- time -------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the store's clock forward so TTLs can be tested without sleeping."""
        with self._lock:
            self._clock_offset += seconds

    # -- issuing ----------------------------------------------------------

    def issue_grant(
        self, identity: dict[str, Any], scopes: list[str] | tuple[str, ...], *, access_ttl: int | None = None
    ) -> TokenSet:
        with self._lock:
            grant = Grant(
                grant_id=f"g{len(self._grants) + 1}-{secrets.token_hex(4)}",
                identity=dict(identity),
                scopes=tuple(scopes),
                created_at=self.now(),
                access_ttl=access_ttl,
            )
            self._grants[grant.grant_id] = grant
            return self._mint(grant)

    def _mint(self, grant: Grant, keep_refresh_token: str | None = None) -> TokenSet:
        """A new access token, and a new refresh token unless `keep_refresh_token` (a non-rotating refresh)."""
        now = self.now()
        access_ttl = grant.access_ttl if grant.access_ttl is not None else self.access_ttl
        access = random_token(self.policy.access_prefix, self.policy.access_length)
        if self._ended_early:
            # Announced as long-lived, so only a call can find out: no client refreshes it ahead of time.
            access_ttl = self._ended_early.pop(0)
            self._access[access] = _AccessToken(grant.grant_id, now - 1)
        else:
            self._access[access] = _AccessToken(grant.grant_id, None if access_ttl is None else now + access_ttl)
        if keep_refresh_token is None:
            refresh = random_token(self.policy.refresh_prefix, self.policy.refresh_length)
            refresh_ttl = self.policy.refresh_ttl
            self._refresh[refresh] = _RefreshToken(grant.grant_id, None if refresh_ttl is None else now + refresh_ttl)
        else:
            refresh = keep_refresh_token
            expires_at = self._refresh[refresh].expires_at
            refresh_ttl = None if expires_at is None else max(0, int(expires_at - now))
        return TokenSet(
            grant_id=grant.grant_id,
            access_token=access,
            refresh_token=refresh,
            expires_in=access_ttl,
            refresh_token_expires_in=refresh_ttl,
            scopes=grant.scopes,
            identity=dict(grant.identity),
        )

    # -- using ------------------------------------------------------------

    def check_access_token(self, token: str | None) -> TokenCheck:
        if not token:
            return TokenCheck(TokenStatus.MISSING)
        with self._lock:
            record = self._access.get(token)
            if record is None:
                return TokenCheck(TokenStatus.UNKNOWN)
            grant = self._grants[record.grant_id]
            if grant.state is GrantState.REVOKED:
                return TokenCheck(TokenStatus.REVOKED, grant)
            if grant.state is GrantState.INACTIVE:
                return TokenCheck(TokenStatus.INACTIVE, grant)
            if record.superseded:
                return TokenCheck(TokenStatus.SUPERSEDED, grant)
            if record.expires_at is not None and self.now() >= record.expires_at:
                return TokenCheck(TokenStatus.EXPIRED, grant)
            return TokenCheck(TokenStatus.OK, grant)

    def refresh(self, refresh_token: str | None) -> GrantResult:
        """Rotate: the presented refresh token is spent and a new pair is issued (or, for a policy that does not
        rotate, a new access token is issued and the refresh token stays live)."""
        with self._lock:
            result = self._refresh_locked(refresh_token)
            self.counters.incr("refreshes_ok" if result.ok else "refresh_failures")
            return result

    def _refresh_locked(self, refresh_token: str | None) -> GrantResult:
        record = self._refresh.get(refresh_token or "")
        if record is None:
            return GrantResult(failure=GrantFailure.UNKNOWN)
        grant = self._grants[record.grant_id]
        if grant.state is GrantState.REVOKED:
            return GrantResult(failure=GrantFailure.REVOKED)
        if grant.state is GrantState.INACTIVE:
            return GrantResult(failure=GrantFailure.INACTIVE)
        if record.used:
            if not self.reuse_detection:
                return GrantResult(failure=GrantFailure.USED)
            # RFC 9700 §4.14.2: we cannot tell the thief from the client, so the whole family dies.
            grant.state = GrantState.REVOKED
            self.counters.incr("reuse_detections")
            return GrantResult(failure=GrantFailure.REUSE_DETECTED)
        if record.expires_at is not None and self.now() >= record.expires_at:
            return GrantResult(failure=GrantFailure.EXPIRED)
        grant.rotations += 1
        if not self.policy.rotates_refresh_token:
            return GrantResult(tokens=self._mint(grant, keep_refresh_token=refresh_token))
        record.used = True
        if self.policy.rotation_kills_access_token:
            for access in self._access.values():
                if access.grant_id == grant.grant_id:
                    access.superseded = True
        return GrantResult(tokens=self._mint(grant))

    # -- authorization codes ----------------------------------------------

    def create_authorization_code(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        identity: dict[str, Any],
        scopes: list[str] | tuple[str, ...],
        code_challenge: str | None = None,
    ) -> str:
        with self._lock:
            code = self.policy.code_factory()
            self._codes[code] = _AuthorizationCode(
                client_id=client_id,
                redirect_uri=redirect_uri,
                identity=dict(identity),
                scopes=tuple(scopes),
                code_challenge=code_challenge or None,
                expires_at=self.now() + self.policy.code_ttl,
            )
            return code

    def redeem_authorization_code(
        self, code: str | None, *, client_id: str, redirect_uri: str | None, code_verifier: str | None
    ) -> GrantResult:
        with self._lock:
            result = self._redeem_locked(code, client_id, redirect_uri, code_verifier)
            self.counters.incr("code_exchanges_ok" if result.ok else "code_exchange_failures")
            return result

    def _redeem_locked(
        self, code: str | None, client_id: str, redirect_uri: str | None, code_verifier: str | None
    ) -> GrantResult:
        record = self._codes.get(code or "")
        if record is None:
            return GrantResult(failure=GrantFailure.UNKNOWN)
        if record.used:
            # RFC 6749 §4.1.2: a replayed code should revoke what it already produced.
            if record.redeemed_grant_id:
                self._grants[record.redeemed_grant_id].state = GrantState.REVOKED
            return GrantResult(failure=GrantFailure.USED)
        record.used = True  # one attempt only, successful or not
        if self.now() >= record.expires_at:
            return GrantResult(failure=GrantFailure.EXPIRED)
        if client_id != record.client_id:
            return GrantResult(failure=GrantFailure.CLIENT_MISMATCH)
        # Like Slack and GitHub, redirect_uri may be left out at exchange but must match if sent.
        if redirect_uri and redirect_uri != record.redirect_uri:
            return GrantResult(failure=GrantFailure.REDIRECT_MISMATCH)
        if record.code_challenge is not None and not (
            code_verifier and secrets.compare_digest(pkce_s256(code_verifier), record.code_challenge)
        ):
            return GrantResult(failure=GrantFailure.PKCE_FAILED)
        tokens = self.issue_grant(record.identity, record.scopes)
        record.redeemed_grant_id = tokens.grant_id
        return GrantResult(tokens=tokens)

    # -- faults -----------------------------------------------------------

    def grant_for_token(self, token: str) -> Grant | None:
        with self._lock:
            record = self._access.get(token) or self._refresh.get(token)
            return self._grants[record.grant_id] if record else None

    def _select(self, token: str | None, grant_id: str | None) -> list[Grant]:
        if token is not None:
            grant = self.grant_for_token(token)
            return [grant] if grant else []
        if grant_id is not None:
            return [self._grants[grant_id]] if grant_id in self._grants else []
        return list(self._grants.values())

    def expire_access_tokens(self, *, token: str | None = None, grant_id: str | None = None) -> int:
        """Make every access token issued so far (for one grant, or all) answer "expired"."""
        with self._lock:
            grant_ids = {g.grant_id for g in self._select(token, grant_id)}
            expired_at = self.now() - 1
            count = 0
            for record in self._access.values():
                if record.grant_id in grant_ids and (record.expires_at is None or record.expires_at > expired_at):
                    record.expires_at = expired_at
                    count += 1
            return count

    def end_next_access_tokens_early(self, count: int = 1, *, announced_ttl: int = 86400) -> None:
        """The next `count` access tokens minted (by any grant's refresh or code exchange) are announced with
        `announced_ttl` seconds of life but answer "expired" from their first use, as a provider that ends tokens
        before their announced expiry does."""
        with self._lock:
            self._ended_early.extend([announced_ttl] * count)

    def forget_early_endings(self) -> None:
        with self._lock:
            self._ended_early.clear()

    def revoke(self, *, token: str | None = None, grant_id: str | None = None) -> int:
        """Revoke a grant family (found by any of its tokens or its id), or every grant."""
        return self._set_state(GrantState.REVOKED, token, grant_id)

    def end_by_client(self, token: str | None) -> bool:
        """The client revoked `token`: its grant ends. True when that ended a live grant (counted as a revocation);
        False for an unknown token or a grant already ended."""
        if not token:
            return False
        with self._lock:
            grant = self.grant_for_token(token)
            if grant is None or grant.state is not GrantState.ACTIVE:
                return False
            grant.state = GrantState.REVOKED
        self.counters.incr("revocations")
        return True

    def deactivate(self, *, token: str | None = None, grant_id: str | None = None) -> int:
        """Mark the account behind a grant (or every grant) as deleted/deactivated."""
        return self._set_state(GrantState.INACTIVE, token, grant_id)

    def _set_state(self, state: GrantState, token: str | None, grant_id: str | None) -> int:
        with self._lock:
            grants = self._select(token, grant_id)
            for grant in grants:
                grant.state = state
            return len(grants)

    # -- inspection -------------------------------------------------------

    def grants(self) -> list[dict[str, Any]]:
        """A listing safe to show: token values are redacted."""
        with self._lock:
            listing = []
            for grant in self._grants.values():
                live_refresh = [t for t, r in self._refresh.items() if r.grant_id == grant.grant_id and not r.used]
                listing.append(
                    {
                        "grant_id": grant.grant_id,
                        "state": grant.state.value,
                        "identity": dict(grant.identity),
                        "scopes": list(grant.scopes),
                        "rotations": grant.rotations,
                        "refresh_token": redact(live_refresh[-1]) if live_refresh else None,
                    }
                )
            return listing
