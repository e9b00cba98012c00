"""What an operator declares about a provider: its endpoints, OAuth details and headers, its error vocabulary, its
health probe, and its tools (each one API operation with typed parameters). Plain data, checked when read;
`docs/custom-providers.md` shows a complete declaration.

    declaration = ProviderDeclaration.model_validate(table, context={"provider": "acme"})
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from providers.custom.params import Declaration, ParamDeclaration
from providers.custom.vocabulary import ErrorVocabulary

PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
TOOL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
# Literal path text: unreserved characters plus the sub-delimiters and ':' '@' that a path segment may carry.
SAFE_PATH_TEXT = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$")
# Headers grantkeeper sets itself; a declaration may not replace them.
RESERVED_HEADERS = {"authorization", "host", "content-length", "transfer-encoding", "cookie", "connection"}

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
ClientAuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]
# Authorize parameters grantkeeper sets itself; a declaration may not replace them.
RESERVED_AUTHORIZE_PARAMS = {
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "request",
    "request_uri",
}
_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class ToolDeclaration(Declaration):
    """One operation of the provider's API, exposed as the tool `<provider>.<name>`."""

    name: str
    title: str | None = Field(default=None, max_length=100)
    description: str = Field(min_length=1, max_length=4000)
    method: HttpMethod = "GET"
    path: str = Field(min_length=1, max_length=500)
    params: list[ParamDeclaration] = Field(default_factory=list)
    body_encoding: Literal["json", "form"] = "json"
    read_only: bool | None = None
    idempotent: bool | None = None
    destructive: bool | None = None
    idempotency_header: str | None = None
    max_response_bytes: int | None = Field(default=None, ge=256, le=1_048_576)

    @field_validator("method", mode="before")
    @classmethod
    def _method_in_capitals(cls, method: Any) -> Any:
        return method.upper() if isinstance(method, str) else method

    @field_validator("name")
    @classmethod
    def _name_under_the_provider(cls, name: str, info: ValidationInfo) -> str:
        provider = (info.context or {}).get("provider")
        prefix, dot, rest = name.partition(".")
        if dot:
            if provider is not None and prefix != provider:
                raise ValueError(f"a dotted tool name must start with the provider's name ('{provider}.')")
            name = rest
        if not TOOL_NAME.match(name):
            raise ValueError("must be lowercase letters, digits and _, starting with a letter (at most 64)")
        return name

    @field_validator("path")
    @classmethod
    def _path_stays_under_the_api_base(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must start with '/' (it is joined to the provider's api_base_url)")
        literal = PLACEHOLDER.sub("x", path)
        if "{" in literal or "}" in literal:
            raise ValueError("has an unbalanced '{' or '}'")
        if "?" in literal or "#" in literal:
            raise ValueError("may not carry a query or fragment; declare query parameters instead")
        if not SAFE_PATH_TEXT.match(literal):
            raise ValueError("may contain only URL path characters (no spaces, '%', '\\' or non-ASCII)")
        if "//" in literal or any(segment in (".", "..") for segment in literal.split("/")):
            raise ValueError("may not contain '//', '.' or '..' segments")
        return path

    @field_validator("idempotency_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and (not HEADER_NAME.match(value) or value.lower() in RESERVED_HEADERS):
            raise ValueError("must be an HTTP header name grantkeeper does not set itself")
        return value

    @model_validator(mode="after")
    def _params_fit_the_request(self) -> ToolDeclaration:
        names = [p.name for p in self.params]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"parameter {duplicates[0]!r} is declared twice")
        placeholders = PLACEHOLDER.findall(self.path)
        for placeholder in placeholders:
            if placeholder not in names:
                raise ValueError(f"path placeholder {{{placeholder}}} has no parameter of that name")
        for param in self.params:
            if param.location is None:
                if param.name in placeholders:
                    param.location = "path"
                else:
                    param.location = "body" if self.method in ("POST", "PUT", "PATCH") else "query"
            if param.type in ("array", "object") and param.location == "path":
                raise ValueError(f"parameter {param.name!r}: a path segment is one value, not an {param.type}")
            if param.type == "object" and param.location == "query":
                raise ValueError(f"parameter {param.name!r}: objects go in the body (a query string has no objects)")
            if param.location == "path":
                if param.name not in placeholders:
                    raise ValueError(f"path parameter {param.name!r} does not appear as {{{param.name}}} in path")
                if param.required is False and param.default is None:
                    raise ValueError(f"path parameter {param.name!r} must be required or have a default")
                if param.api_name is not None:
                    raise ValueError(f"path parameter {param.name!r} cannot have an api_name (the placeholder names it)")
            elif param.name in placeholders:
                raise ValueError(f"parameter {param.name!r} is a path placeholder but declared in = {param.location!r}")
            if param.type == "object" and self.body_encoding == "form":
                raise ValueError(f'parameter {param.name!r}: a form body has no objects; use body_encoding = "json"')
            if param.location == "body" and self.method not in _BODY_METHODS:
                raise ValueError(f'parameter {param.name!r}: {self.method} requests carry no body; use in = "query"')
        for location in ("query", "body"):
            wire = [p.wire_name for p in self.params if p.location == location]
            clash = sorted({w for w in wire if wire.count(w) > 1})
            if clash:
                raise ValueError(f"two {location} parameters are sent as {clash[0]!r}")
        if self.read_only and self.destructive:
            raise ValueError("a tool cannot be both read_only and destructive")
        if self.read_only and self.idempotency_header:
            raise ValueError("idempotency_header is for writes; a read_only tool is repeatable anyway")
        return self

    # Hints default from the method's HTTP semantics (RFC 9110 §9.2): GET is safe; PUT and DELETE are idempotent.
    @property
    def is_read_only(self) -> bool:
        return self.read_only if self.read_only is not None else self.method == "GET"

    @property
    def is_idempotent(self) -> bool:
        """Whether repeating the request after an unclear failure is safe (and so whether it is retried)."""
        if self.idempotent is not None:
            return self.idempotent
        return self.is_read_only or self.method in ("PUT", "DELETE") or self.idempotency_header is not None

    @property
    def is_destructive(self) -> bool:
        if self.destructive is not None:
            return self.destructive
        return not self.is_read_only and self.method in ("PUT", "PATCH", "DELETE")

    @property
    def display_title(self) -> str:
        return self.title or self.name.replace("_", " ").capitalize()


class ProbeDeclaration(Declaration):
    method: Literal["GET", "POST"] = "GET"
    path: str = Field(pattern=r"^/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$")
    account_id_field: str | None = Field(default=None, description="dotted path of the account id in the answer")
    body: dict[str, Any] | None = Field(default=None, description="JSON body of a POST probe (e.g. a GraphQL query)")

    @model_validator(mode="after")
    def _body_only_for_post(self) -> ProbeDeclaration:
        if self.body is not None and self.method != "POST":
            raise ValueError('a probe body needs method = "POST"')
        return self


# ---- the provider ------------------------------------------------------------------------------------
class ProviderDeclaration(Declaration):
    """A provider as an operator declares it. Endpoints are full URLs or paths under `oauth_base_url`, or come
    from RFC 8414 discovery when `issuer` is set (explicit values win over discovered ones)."""

    display_name: str | None = Field(default=None, min_length=1, max_length=80)
    api_base_url: str
    oauth_base_url: str | None = None
    authorize_path: str | None = None
    token_path: str | None = None
    revoke_path: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    revoke_url: str | None = None
    # Where refreshes go when not to the token endpoint (Figma documents a separate refresh endpoint).
    refresh_url: str | None = None
    issuer: str | None = None
    discovery_url: str | None = None
    client_auth_method: ClientAuthMethod | None = None
    # OpenID Connect: the id_token is verified against the issuer's JWKS and names the account when no
    # health_probe does; `offline_access` is requested (with prompt=consent) so a refresh token is issued.
    openid: bool = False
    # None: request offline_access when the provider is OpenID Connect and its metadata does not rule it out.
    offline_access: bool | None = None
    jwks_url: str | None = None
    # Extra authorization-request parameters: prompt, access_type, audience, provider-specific ones.
    authorize_params: dict[str, str] = Field(default_factory=dict)
    scopes: list[str] = Field(default_factory=list)
    scope_separator: str = Field(default=" ", min_length=1, max_length=3)
    # 0: access tokens that do not expire (TOML has no null); otherwise used when a response has no expires_in.
    default_access_ttl_seconds: int | None = Field(default=3600, ge=0)
    default_refresh_ttl_seconds: int | None = Field(default=None, gt=0)
    rotates_refresh_token: bool = True
    # Informational, like rotates_refresh_token: whether the provider issues refresh tokens at all (a grant without
    # one is stored as such and its user is asked to reconnect before it expires; see docs/custom-providers.md).
    issues_refresh_token: bool = True
    # How the token endpoint wants its body: RFC 6749 form encoding, or JSON (Notion, Atlassian accept JSON).
    token_body_encoding: Literal["form", "json"] = "form"
    health_probe: ProbeDeclaration | None = None
    api_headers: dict[str, str] = Field(default_factory=dict)
    token_request_headers: dict[str, str] = Field(default_factory=dict)
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=256, le=1_048_576)
    docs_url: str | None = None
    errors: ErrorVocabulary = Field(default_factory=ErrorVocabulary)
    tools: list[ToolDeclaration] = Field(default_factory=list)

    @field_validator("authorize_path", "token_path", "revoke_path")
    @classmethod
    def _paths_are_paths(cls, path: str | None) -> str | None:
        if path is not None and not path.startswith("/"):
            raise ValueError("must start with '/' (it is joined to oauth_base_url); use *_url for a full URL")
        return path

    @field_validator("authorize_params")
    @classmethod
    def _authorize_params_are_ours_to_add(cls, params: dict[str, str]) -> dict[str, str]:
        for name, value in params.items():
            if name in RESERVED_AUTHORIZE_PARAMS:
                raise ValueError(f"{name!r} is set by grantkeeper itself (scopes go in `scopes`)")
            if not re.match(r"^[A-Za-z0-9_.\-]{1,64}$", name) or not value.isprintable() or len(value) > 500:
                raise ValueError(f"authorize parameter {name[:64]!r} needs a plain name and a printable value")
        return params

    @field_validator("api_headers", "token_request_headers")
    @classmethod
    def _headers_are_ours_to_add(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not HEADER_NAME.match(name) or name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is not a header name grantkeeper lets a declaration set")
            if not value.isprintable():
                raise ValueError(f"header {name!r} has a value that is not printable text")
        return headers

    @model_validator(mode="after")
    def _endpoints_are_complete(self) -> ProviderDeclaration:
        for kind in ("authorize", "token", "revoke"):
            url, path = getattr(self, f"{kind}_url"), getattr(self, f"{kind}_path")
            if url is not None and path is not None:
                raise ValueError(f"set {kind}_url or {kind}_path, not both")
            if path is not None and self.oauth_base_url is None:
                raise ValueError(f"{kind}_path needs oauth_base_url (or give {kind}_url as a full URL)")
        if self.openid and self.issuer is None:
            raise ValueError("openid = true needs issuer: the id_token's iss is checked against it (OIDC Core §3.1.3.7)")
        if self.discovery_url is not None and self.issuer is None:
            raise ValueError("discovery_url needs issuer: the metadata's issuer is checked against it (RFC 8414 §3.3)")
        if self.issuer is None:
            for kind in ("authorize", "token"):
                if getattr(self, f"{kind}_url") is None and getattr(self, f"{kind}_path") is None:
                    raise ValueError(f"{kind} endpoint missing: set {kind}_url, {kind}_path, or issuer for discovery")
        names = [tool.name for tool in self.tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tool {duplicates[0]!r} is declared twice")
        return self

    def endpoint(self, kind: Literal["authorize", "token", "revoke"]) -> str | None:
        """The endpoint as configured (full URL), or None when it is left to discovery."""
        url, path = getattr(self, f"{kind}_url"), getattr(self, f"{kind}_path")
        if url is not None:
            return url
        if path is not None and self.oauth_base_url is not None:
            return self.oauth_base_url.rstrip("/") + path
        return None
