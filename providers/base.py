"""What a provider is: a declarative spec (endpoints, client auth, lifetimes, rotation, health probe) plus
small classifiers that turn its HTTP answers into the verdicts the server acts on."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

import httpx2
from pydantic import BaseModel, Field


class Verdict(StrEnum):
    OK = "ok"
    EXPIRED = "expired"  # the access token expired: refresh, retry once
    AUTH_FAILED = "auth_failed"  # rejected token, cause unknown: refresh, retry once, then treat as revoked
    REVOKED = "revoked"  # the grant is gone: re-authorization, never retry
    INACTIVE = "inactive"  # the user or workspace is disabled: an administrator must act
    FORBIDDEN = "forbidden"  # missing scope or permission: an administrator (or a reconnect with more scopes)
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"  # 5xx and friends: back off and retry when that is safe
    INVALID_INPUT = "invalid_input"  # the provider refused the arguments
    NOT_FOUND = "not_found"
    UPSTREAM = "upstream"  # anything else the provider said no to


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    reason: str  # the provider's own short code, e.g. "token_revoked"; never a secret
    message: str = ""  # safe to show the agent
    retry_after: float | None = None


# The verdict on every OK answer: one object, not one per call.
OK = Classification(Verdict.OK, "ok")


class TokenVerdict(StrEnum):
    REJECTED = "rejected"  # invalid_grant and its provider-specific spellings: the refresh token is dead
    CLIENT_MISCONFIGURED = "client_misconfigured"  # our client id/secret is wrong: an operator must act
    TRANSIENT = "transient"
    UNKNOWN = "unknown"


class HealthProbe(BaseModel):
    method: Literal["GET", "POST"] = "GET"
    path: str
    body: dict[str, Any] | None = None  # a JSON body, for a POST probe (a GraphQL `{ viewer { id } }`, say)


class ProviderSpec(BaseModel):
    """A provider as data. Paths are joined to `api_base_url` / `oauth_base_url`, which settings can override.

    An empty `api_base_url` means the provider has no fixed host (Zendesk runs on each customer's subdomain): the
    operator must set it, and `base_url_example` shows what it looks like.
    """

    name: str
    display_name: str
    api_base_url: str
    oauth_base_url: str
    authorize_path: str
    token_path: str
    # Where the authorize page lives when it is not on the token endpoint's host (Google: accounts.google.com).
    authorize_base_url: str | None = None
    # Provider-specific query parameters of the authorize URL, e.g. Google's access_type=offline.
    authorize_params: dict[str, str] = Field(default_factory=dict)
    base_url_example: str | None = None
    revoke_path: str | None = None
    # A refresh endpoint apart from the token endpoint (full URL); None: refreshes go to the token endpoint.
    refresh_url: str | None = None
    # private_key_jwt (RFC 7523 §2.2): a JWT signed with the operator's key instead of a client secret.
    client_auth_method: Literal["client_secret_post", "client_secret_basic", "private_key_jwt"] = "client_secret_post"
    # How the token endpoint wants its body: RFC 6749 form encoding, or JSON (Zendesk, Atlassian).
    token_body_encoding: Literal["form", "json"] = "form"
    token_request_headers: dict[str, str] = Field(default_factory=dict)
    api_headers: dict[str, str] = Field(default_factory=dict)
    scopes: list[str] = Field(default_factory=list)
    scope_separator: str = " "
    default_access_ttl_seconds: int | None = 3600
    default_refresh_ttl_seconds: int | None = None
    rotates_refresh_token: bool = True
    health_probe: HealthProbe | None = None
    # Regular expressions matching this provider's token shapes, so logs can mask them wherever they appear.
    secret_patterns: list[str] = Field(default_factory=list)
    docs_url: str | None = None
    # This provider's bound on one answer in bytes, when the server-wide default does not suit it.
    max_response_bytes: int | None = None
    # OpenID Connect (declared providers): the id_token is checked against `issuer` and the keys at `jwks_uri`.
    openid: bool = False
    issuer: str | None = None
    jwks_uri: str | None = None
    # RFC 9207: the server says it adds `iss` to authorization responses, so a callback without it is refused.
    authorization_response_iss: bool = False
    # Ask for `offline_access` (with prompt=consent, OIDC Core §11) so the server issues a refresh token.
    request_offline_access: bool = False


@dataclass(frozen=True)
class ApiCall:
    """One request to a provider API. `idempotent` says whether repeating it after an ambiguous failure is safe."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True
    # A tighter bound on the answer than the connector's. With `cut_at_bound` an answer past it is cut there (the
    # response's extensions say so) instead of refused as `response_too_large`.
    max_response_bytes: int | None = None
    cut_at_bound: bool = False


class ApiSession(Protocol):
    """What a provider operation gets from the server: authenticated, classified, retried requests."""

    async def send(self, call: ApiCall) -> httpx2.Response:
        """Return a response classified OK, or raise the failure the server turns into a result."""
        ...


@dataclass(frozen=True)
class RevocationRequest:
    """The one HTTP request that ends a grant at its provider (offboarding). `url` is absolute; `basic_auth` is
    the OAuth client's id and secret where the provider wants them (GitHub). Never logged: it carries a token."""

    method: str
    url: str
    data: dict[str, str] | None = field(default=None, repr=False)
    json: Any = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class GrantToEnd:
    """What the vault held for a grant being ended, and for whom the provider must end it."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    client_id: str | None
    client_secret: str | None = field(repr=False)
    # True when the grant was replaced by a reconnect for the same provider account: revoke only this token,
    # never what would end the user's whole authorization (and with it the grant that replaced it).
    replaced: bool = False


# What Provider.revocation answers for a grant it cannot end through an endpoint of its own.
RFC7009 = "rfc7009"  # the standard revocation endpoint (`spec.revoke_path`), with the token request's client auth
UNSUPPORTED = "unsupported"  # nothing to call: the user removes the app at the provider


class Provider:
    """A spec plus its classifiers. Subclass per provider; the defaults follow RFC 6749/6750."""

    spec: ProviderSpec

    def classify_api_response(self, response: httpx2.Response) -> Classification:
        status = response.status_code
        if status < 400:
            return OK
        if status == 401:
            return Classification(Verdict.AUTH_FAILED, "unauthorized")
        if status == 429:
            return Classification(Verdict.RATE_LIMITED, "rate_limited", retry_after=retry_after_seconds(response))
        if status == 403:
            return Classification(Verdict.FORBIDDEN, "forbidden", "The account lacks permission for this action.")
        if status == 404:
            return Classification(Verdict.NOT_FOUND, "not_found", "The provider says the resource does not exist.")
        if status in (400, 409, 410, 422):
            return Classification(Verdict.INVALID_INPUT, f"http_{status}", "The provider rejected the request.")
        if status >= 500:
            return Classification(Verdict.TRANSIENT, f"http_{status}", "The provider is having trouble.")
        return Classification(Verdict.UPSTREAM, f"http_{status}", "The provider refused the request.")

    def classify_token_error(self, error: str, http_status: int | None) -> TokenVerdict:
        if error in ("invalid_grant",):
            return TokenVerdict.REJECTED
        if error in ("invalid_client", "unauthorized_client"):
            return TokenVerdict.CLIENT_MISCONFIGURED
        if error in ("temporarily_unavailable", "server_error"):
            return TokenVerdict.TRANSIENT
        return TokenVerdict.UNKNOWN

    def token_error_code(self, body: dict[str, Any]) -> tuple[str | None, str | None]:
        """(error code, description) of a token-endpoint error body. RFC 6749 §5.2 says `error`; servers also nest
        it (`{"error": {"code": …}}`), list it (`{"errors": [{"code": …}]}`) or give only a description."""
        for path in ("error", "error.code", "error.type", "error.error", "errors.0.code", "errors.0.error", "code", "error_code"):
            value = dotted_value(body, path)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)[:64], _description(body)
        description = _description(body)
        return ("unspecified_error" if description else None), description

    def classify_token_response(self, error: str, description: str | None, http_status: int | None) -> TokenVerdict:
        """The verdict on a refused token request; the description is there for providers that only give one."""
        return self.classify_token_error(error, http_status)

    def identity_from_token_response(self, token: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """(provider account id, identity details) carried by a token response, when the provider sends them."""
        return None, {}

    def identity_from_probe(self, body: Any) -> tuple[str | None, dict[str, Any]]:
        """(provider account id, identity details) from the health probe's answer."""
        return None, {}

    def describe_identity(self, provider_account_id: str, identity: dict[str, Any]) -> str:
        """The provider account in words a person recognises, for the re-authorization pages."""
        return provider_account_id

    def revocation(self, spec: ProviderSpec, grant: GrantToEnd) -> RevocationRequest | str:
        """How to end `grant` at the provider: a request of the provider's own, or RFC7009 / UNSUPPORTED."""
        return RFC7009 if spec.revoke_path else UNSUPPORTED

    def revocation_accepted(self, response: httpx2.Response) -> bool:
        """Whether the provider ended the grant (or says it was already gone: nothing is left to end)."""
        return response.status_code in (200, 204)


def retry_after_seconds(response: httpx2.Response) -> float | None:
    """Retry-After as seconds (delta or HTTP date); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def dotted_lookup(body: Any, dotted: str) -> tuple[bool, Any]:
    """`error.code` or `errors.0.reason` in a JSON body: (found, value), so a present null differs from absence."""
    value = body
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def dotted_value(body: Any, dotted: str) -> Any:
    """`error.code` or `errors.0.reason` in a JSON body; None when absent."""
    return dotted_lookup(body, dotted)[1]


def _description(body: dict[str, Any]) -> str | None:
    for path in ("error_description", "error.message", "error.description", "message", "errors.0.message"):
        value = dotted_value(body, path)
        if isinstance(value, str) and value:
            return value[:300]
    return None


_PARSED_JSON = "grantkeeper.parsed_json"


def response_json(response: httpx2.Response) -> Any:
    """`response.json()`, parsed once however many readers ask: the classifier reads the answer before the
    operation does, and a page of messages is worth parsing once. Raises ValueError when the body is not JSON.
    Readers must not change what it returns."""
    parsed = response.extensions.get(_PARSED_JSON)
    if parsed is None:
        parsed = response.extensions[_PARSED_JSON] = (response.json(),)
    return parsed[0]


def json_body(response: httpx2.Response) -> Any:
    """The body as JSON, or None when it is not JSON (a proxy's HTML error page, say)."""
    try:
        return response_json(response)
    except ValueError:
        return None


class UnsafeArgument(ValueError):
    """An argument refused before anything is sent: it would leave its path segment, or break its header.

    The message is safe to show the agent; the server answers it as `invalid_input`."""

    def __init__(self, message: str, reason: str = "unsafe_argument"):
        super().__init__(message)
        self.reason = reason


def _is_control(character: str) -> bool:
    # Cc covers C0, DEL and C1 (NEL \x85); Zl/Zp are U+2028/U+2029, which mail and HTTP stacks treat as line breaks.
    return unicodedata.category(character) in ("Cc", "Zl", "Zp")


def safe_segment(name: str, value: str, *, max_length: int = 1024) -> str:
    """`value` when it can stand as exactly one path segment, else `UnsafeArgument`.

    Refused: empty, `.` and `..`, and anything with `/`, `\\`, `%` (an encoded slash or dot), or control characters.
    The caller still percent-encodes the value; this check is what keeps `..` from being a segment at all."""
    if not isinstance(value, str) or not value:
        raise UnsafeArgument(f"{name} may not be empty")
    if len(value) > max_length:
        raise UnsafeArgument(f"{name} is longer than {max_length} characters")
    if value in (".", ".."):
        raise UnsafeArgument(f"{name} may not be '.' or '..'")
    if any(c in "/\\%" or _is_control(c) for c in value):
        raise UnsafeArgument(
            f"{name} may not contain '/', '\\', '%' or control characters (it is one segment of the request path)"
        )
    return value


def safe_header_text(name: str, value: str, *, max_length: int = 998) -> str:
    """`value` when it can travel in one header line, else `UnsafeArgument` (CR, LF, VT, NEL, U+2028 and the
    other line breaks and control characters are refused, not folded or dropped)."""
    if len(value) > max_length:
        raise UnsafeArgument(f"{name} is longer than {max_length} characters", "invalid_header_value")
    if any(_is_control(c) for c in value):
        raise UnsafeArgument(f"{name} may not contain line breaks or control characters", "invalid_header_value")
    return value


class RequestRejectedError(Exception):
    """The provider refused the request itself (a 4xx that is not about tokens or limits).

    Raised by `ApiSession.send` with the classifier's `reason`; an operation that expects a particular refusal
    (Google Calendar's 409 `duplicate` for an event id it chose) catches it, everyone else lets it become
    `invalid_input`.
    """

    reason: str


class OutcomeUnknownError(Exception):
    """A non-idempotent request failed in a way that leaves unknown whether the provider acted on it.

    Raised by `ApiSession.send`; a provider operation that can find out (say, by looking for a marker)
    catches it, everyone else lets it become an `upstream_error` that tells the agent not to repeat blindly.
    """
