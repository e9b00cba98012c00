"""Providers declared in configuration instead of code: the declaration's shape, a classifier driven by its
error vocabulary (RFC 6749/6750 defaults otherwise), and how a declared tool becomes one API request.

A declaration is plain data (TOML or JSON); `docs/custom-providers.md` shows a complete one. Loading it from the
settings, URL checks and RFC 8414 discovery live in `server/custom_providers.py`; registering its tools in
`tools/custom.py`.

    provider = DeclaredProvider.from_declaration("acme", declaration, token_url="https://auth.acme.example/token",
                                                 authorize_url="https://auth.acme.example/authorize")
    call = build_call(declaration.tools[0], {"project_id": "p-1"}, api_base_url="https://api.acme.example/v1")
"""

from __future__ import annotations

import keyword
import re
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx2
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import SchemaError

from providers.base import (
    ApiCall,
    Classification,
    HealthProbe,
    Provider,
    ProviderSpec,
    TokenVerdict,
    UnsafeArgument,
    Verdict,
    json_body,
    retry_after_seconds,
)

PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
TOOL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
PARAM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
# Literal path text: unreserved characters plus the sub-delimiters and ':' '@' that a path segment may carry.
SAFE_PATH_TEXT = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$")
# Headers grantkeeper sets itself; a declaration may not replace them.
RESERVED_HEADERS = {"authorization", "host", "content-length", "transfer-encoding", "cookie", "connection"}
# Argument names the tool function itself uses.
RESERVED_PARAMS = {"ctx", "idempotency_key"}

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
ParamType = Literal["string", "integer", "number", "boolean", "array", "object"]
Scalar = StrictStr | StrictBool | StrictInt | StrictFloat
_PYTHON_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
# An array argument holds at most this many items unless the declaration says fewer (a hostile caller cannot
# make one call carry an unbounded list upstream).
MAX_ARRAY_ITEMS = 1000
# How deep object and array parameters may nest: enough for real API bodies, bounded for the schema builder.
MAX_NESTING = 4
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


class _Declaration(BaseModel):
    # Unknown fields are errors: a misspelt `requried` must not silently make a parameter optional.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ---- parameters and tools ----------------------------------------------------------------------------
class ParamDeclaration(_Declaration):
    """One tool argument: its type and constraints (checked by pydantic before anything is sent) and where it goes."""

    name: str
    type: ParamType = "string"
    location: Literal["path", "query", "body"] | None = Field(default=None, alias="in")
    api_name: str | None = Field(default=None, min_length=1, max_length=128)
    description: str = ""
    required: bool | None = None
    default: Scalar | None = None
    enum: list[Scalar] | None = Field(default=None, min_length=1)
    pattern: str | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=1)
    minimum: float | None = None
    maximum: float | None = None
    # `array`: the type of its items (a parameter declaration without `name`), and how many.
    items: ItemDeclaration | None = None
    min_items: int | None = Field(default=None, ge=0, le=MAX_ARRAY_ITEMS)
    max_items: int | None = Field(default=None, ge=1, le=MAX_ARRAY_ITEMS)
    # `object`: its members, each a parameter declaration (`in` does not apply); unknown members are refused.
    properties: list[ParamDeclaration] | None = None

    @field_validator("name")
    @classmethod
    def _name_is_an_argument_name(cls, name: str) -> str:
        if not PARAM_NAME.match(name):
            raise ValueError("must be a letter followed by letters, digits or _ (at most 64)")
        if keyword.iskeyword(name) or name.startswith("model_") or name in RESERVED_PARAMS:
            raise ValueError("is reserved; choose another name and put the name the API expects in api_name")
        return name

    @field_validator("api_name")
    @classmethod
    def _api_name_is_printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must be printable text")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"is not a valid regular expression ({exc.msg})") from None
            try:
                TypeAdapter(Annotated[str, Field(pattern=pattern)])
            except SchemaError:
                raise ValueError(
                    "uses a regular-expression feature the argument validator lacks (look-around or "
                    "backreferences); input schemas should keep to what every JSON Schema engine knows"
                ) from None
        return pattern

    @model_validator(mode="after")
    def _constraints_fit_the_type(self) -> ParamDeclaration:
        _check_structure(self)
        string_only = {"pattern": self.pattern, "min_length": self.min_length, "max_length": self.max_length}
        numeric_only = {"minimum": self.minimum, "maximum": self.maximum}
        for key, value in string_only.items():
            if value is not None and self.type != "string":
                raise ValueError(f"{key} applies to string parameters only")
        for key, value in numeric_only.items():
            if value is not None and self.type not in ("integer", "number"):
                raise ValueError(f"{key} applies to integer and number parameters only")
        if self.type in ("array", "object") and (self.enum is not None or self.default is not None):
            raise ValueError(f"{self.type} parameters take no enum or default")
        if self.enum is not None and any(v is not None for v in {**string_only, **numeric_only}.values()):
            raise ValueError("enum cannot be combined with pattern, length or range constraints")
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise ValueError("min_length is greater than max_length")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum is greater than maximum")
        if self.required and self.default is not None:
            raise ValueError("a required parameter cannot have a default")
        value_type = TypeAdapter(self.value_annotation())
        for value in self.enum or []:
            _check_value(value_type, value, "an enum value")
        if self.default is not None:
            _check_value(value_type, self.default, "default")
        return self

    @property
    def wire_name(self) -> str:
        return self.api_name or self.name

    @property
    def is_required(self) -> bool:
        return bool(self.required) if self.required is not None else self.default is None and self.location == "path"

    def value_annotation(self, depth: int = 0) -> Any:
        """The argument's type with its constraints, as pydantic (and so the tool's input schema) sees it."""
        if self.type == "array":
            assert self.items is not None
            constraints = {
                "description": self.description or None,
                "min_length": self.min_items,
                "max_length": self.max_items or MAX_ARRAY_ITEMS,
            }
            return Annotated[
                list[self.items.value_annotation(depth + 1)],  # type: ignore[misc]
                Field(**{k: v for k, v in constraints.items() if v is not None}),
            ]
        if self.type == "object":
            return Annotated[self._object_model(depth), Field(description=self.description or None)]
        if self.enum is not None:
            base: Any = Literal[tuple(_as_type(v, self.type) for v in self.enum)]
        else:
            base = _PYTHON_TYPES[self.type]
        constraints: dict[str, Any] = {"description": self.description or None}
        if self.type == "string":
            min_length = self.min_length if self.min_length is not None else (1 if self.location == "path" else None)
            constraints |= {"pattern": self.pattern, "min_length": min_length, "max_length": self.max_length}
        elif self.type in ("integer", "number"):
            constraints |= {"ge": self.minimum, "le": self.maximum}
        if self.type == "integer":
            constraints = {
                k: (int(v) if k in ("ge", "le") and v is not None and float(v).is_integer() else v)
                for k, v in constraints.items()
            }
        return Annotated[base, Field(**{k: v for k, v in constraints.items() if v is not None})]

    def _object_model(self, depth: int) -> type[BaseModel]:
        fields: dict[str, Any] = {}
        for member in self.properties or []:
            annotation = member.value_annotation(depth + 1)
            if member.required:
                fields[member.name] = (annotation, ...)
            elif member.default is not None:
                fields[member.name] = (annotation, _as_type(member.default, member.type))
            else:
                fields[member.name] = (annotation | None, None)
            if member.api_name:
                fields[member.name] = (fields[member.name][0], Field(fields[member.name][1], serialization_alias=member.api_name))
        name = "".join(part.capitalize() for part in self.name.split("_")) or "Object"
        return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)

    def argument(self) -> tuple[Any, Any]:
        """(annotation, default) of the tool function's parameter; `...` as the default means required."""
        annotation = self.value_annotation()
        if self.is_required:
            return annotation, ...
        if self.default is not None:
            return annotation, _as_type(self.default, self.type)
        return annotation | None, None


class ItemDeclaration(ParamDeclaration):
    """The items of an array parameter: a parameter declaration whose name is only used in messages."""

    name: str = "item"


ParamDeclaration.model_rebuild()


def _check_structure(param: ParamDeclaration, depth: int = 0) -> None:
    """`items` only for arrays, `properties` only for objects, and neither nested deeper than MAX_NESTING."""
    if depth > MAX_NESTING:
        raise ValueError(f"array and object parameters nest at most {MAX_NESTING} deep")
    if param.type == "array":
        if param.items is None:
            raise ValueError('an array parameter needs items (e.g. items = { type = "string" })')
        if param.min_items is not None and param.max_items is not None and param.min_items > param.max_items:
            raise ValueError("min_items is greater than max_items")
        _check_structure(param.items, depth + 1)
    elif param.items is not None or param.min_items is not None or param.max_items is not None:
        raise ValueError("items, min_items and max_items apply to array parameters only")
    if param.type == "object":
        if not param.properties:
            raise ValueError("an object parameter needs properties (its members, each with a name and a type)")
        names = [member.name for member in param.properties]
        if len(set(names)) != len(names):
            raise ValueError("an object parameter declares a member twice")
        for member in param.properties:
            if member.location is not None:
                raise ValueError(f"member {member.name!r}: `in` applies to top-level parameters only")
            _check_structure(member, depth + 1)
    elif param.properties is not None:
        raise ValueError("properties apply to object parameters only")


def _as_type(value: Any, type_name: str) -> Any:
    # TOML/JSON may spell a number default as 5 for a `number` parameter; keep enum and default values typed.
    return float(value) if type_name == "number" and isinstance(value, int) and not isinstance(value, bool) else value


def _check_value(adapter: TypeAdapter, value: Any, what: str) -> None:
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError:
        raise ValueError(f"{what} does not match the parameter's type and constraints") from None


class ToolDeclaration(_Declaration):
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


# ---- the provider's error vocabulary -----------------------------------------------------------------
class ApiErrorRule(_Declaration):
    """An API answer that means something the status code alone does not say, e.g.
    `{status = 403, field = "error.code", equals = "TOKEN_EXPIRED", verdict = "expired"}`."""

    status: int | None = Field(default=None, ge=100, le=599)
    field: str | None = Field(default=None, min_length=1, max_length=200)
    equals: Scalar | list[Scalar] | None = None
    verdict: Verdict
    reason: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    message: str | None = Field(default=None, max_length=300)

    @model_validator(mode="after")
    def _says_what_to_match(self) -> ApiErrorRule:
        if self.status is None and self.field is None:
            raise ValueError("a rule needs a status, a field, or both")
        if self.equals is not None and self.field is None:
            raise ValueError("equals needs a field to compare")
        return self

    def matches(self, status: int, body: Any) -> tuple[bool, Any]:
        if self.status is not None and status != self.status:
            return False, None
        if self.field is None:
            return True, None
        found, value = _lookup(body, self.field)
        if not found or value is None:
            return False, None
        if self.equals is None:
            return True, value
        wanted = self.equals if isinstance(self.equals, list) else [self.equals]
        return any(_same(value, w) for w in wanted), value


def _lookup(body: Any, dotted: str) -> tuple[bool, Any]:
    """`error.code` or `errors.0.reason` in a JSON body."""
    value = body
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _same(value: Any, wanted: Any) -> bool:
    """JSON equality: `true` is not `1`, while `1` and `1.0` are the same number."""
    if isinstance(value, bool) or isinstance(wanted, bool):
        return type(value) is type(wanted) and value == wanted
    return value == wanted


class TokenDescriptionRule(_Declaration):
    contains: str = Field(min_length=3, max_length=200)
    means: Literal["refresh_token_rejected", "client_rejected", "temporary"]


class ErrorVocabulary(_Declaration):
    """Where the provider departs from RFC 6749 §5.2 and RFC 6750 §3.1. The RFC codes keep their meaning."""

    refresh_token_rejected: list[str] = Field(default_factory=list)  # besides invalid_grant
    client_rejected: list[str] = Field(default_factory=list)  # besides invalid_client, unauthorized_client
    temporary: list[str] = Field(default_factory=list)  # besides temporarily_unavailable, server_error
    # Where the token endpoint puts its code when not in `error` (dotted, tried first), and what a body with only
    # a description means: `{contains = "expired", means = "refresh_token_rejected"}`.
    token_error_fields: list[str] = Field(default_factory=list, max_length=8)
    token_descriptions: list[TokenDescriptionRule] = Field(default_factory=list)
    api: list[ApiErrorRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _each_code_means_one_thing(self) -> ErrorVocabulary:
        seen: dict[str, str] = {}
        for group in ("refresh_token_rejected", "client_rejected", "temporary"):
            for code in getattr(self, group):
                if code in seen:
                    raise ValueError(f"token error {code!r} is listed in both {seen[code]} and {group}")
                seen[code] = group
        return self


class ProbeDeclaration(_Declaration):
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
class ProviderDeclaration(_Declaration):
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
    client_auth_method: Literal["client_secret_basic", "client_secret_post", "private_key_jwt"] | None = None
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


class DeclaredProvider(Provider):
    """A provider whose spec and error vocabulary come from a declaration; RFC 6749/6750 rules otherwise."""

    def __init__(self, spec: ProviderSpec, declaration: ProviderDeclaration):
        self.spec = spec
        self.declaration = declaration

    @classmethod
    def from_declaration(
        cls,
        name: str,
        declaration: ProviderDeclaration,
        *,
        authorize_url: str,
        token_url: str,
        revoke_url: str | None = None,
        client_auth_method: str | None = None,
        jwks_uri: str | None = None,
        authorization_response_iss: bool = False,
        offline_access_supported: bool = True,
    ) -> DeclaredProvider:
        """Endpoints are full URLs (resolved from the declaration and discovery). Those under `oauth_base_url` are
        kept as paths, so GRANTKEEPER_<NAME>_OAUTH_BASE_URL can move them as it does for built-in providers."""
        base = (declaration.oauth_base_url or "").rstrip("/")

        def as_path(url: str | None) -> str | None:
            return url[len(base) :] if url is not None and base and url.startswith(base + "/") else url

        probe = declaration.health_probe
        spec = ProviderSpec(
            name=name,
            display_name=declaration.display_name or name.replace("_", " ").title(),
            api_base_url=declaration.api_base_url.rstrip("/"),
            oauth_base_url=base,
            authorize_path=as_path(authorize_url),
            token_path=as_path(token_url),
            revoke_path=as_path(revoke_url),
            client_auth_method=client_auth_method or declaration.client_auth_method or "client_secret_basic",
            token_request_headers=declaration.token_request_headers,
            api_headers=declaration.api_headers,
            scopes=declaration.scopes,
            scope_separator=declaration.scope_separator,
            default_access_ttl_seconds=declaration.default_access_ttl_seconds or None,
            default_refresh_ttl_seconds=declaration.default_refresh_ttl_seconds,
            rotates_refresh_token=declaration.rotates_refresh_token,
            health_probe=HealthProbe(method=probe.method, path=probe.path, body=probe.body) if probe else None,
            token_body_encoding=declaration.token_body_encoding,
            refresh_url=declaration.refresh_url,
            docs_url=declaration.docs_url,
            authorize_params=declaration.authorize_params,
            openid=declaration.openid,
            issuer=declaration.issuer,
            jwks_uri=declaration.jwks_url or jwks_uri,
            authorization_response_iss=authorization_response_iss,
            request_offline_access=(
                declaration.offline_access
                if declaration.offline_access is not None
                else declaration.openid and offline_access_supported
            ),
        )
        return cls(spec, declaration)

    def classify_api_response(self, response: httpx2.Response) -> Classification:
        status = response.status_code
        rules = self.declaration.errors.api
        body = json_body(response) if rules else None
        for rule in rules:
            matched, value = rule.matches(status, body)
            if matched:
                reason = rule.reason or (_safe_code(value) if value is not None else f"http_{status}")
                message = rule.message or f"{self.spec.display_name} answered {reason}."
                return Classification(rule.verdict, reason, message, retry_after_seconds(response))
        challenge = _bearer_error(response)
        if status == 401 and challenge == "invalid_token":
            return Classification(Verdict.EXPIRED, "invalid_token", f"{self.spec.display_name} did not accept the token.")
        if status == 403 and challenge == "insufficient_scope":
            return Classification(
                Verdict.FORBIDDEN,
                "insufficient_scope",
                f"The {self.spec.display_name} grant lacks a scope this call needs; reconnect with it.",
            )
        return super().classify_api_response(response)

    def token_error_code(self, body: dict[str, Any]) -> tuple[str | None, str | None]:
        _, description = super().token_error_code(body)
        for path in self.declaration.errors.token_error_fields:
            found, value = _lookup(body, path)
            if found and isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)[:64], description
        return super().token_error_code(body)

    def classify_token_response(self, error: str, description: str | None, http_status: int | None) -> TokenVerdict:
        if error == "unspecified_error" and description:
            for rule in self.declaration.errors.token_descriptions:
                if rule.contains.lower() in description.lower():
                    return {
                        "refresh_token_rejected": TokenVerdict.REJECTED,
                        "client_rejected": TokenVerdict.CLIENT_MISCONFIGURED,
                        "temporary": TokenVerdict.TRANSIENT,
                    }[rule.means]
        return self.classify_token_error(error, http_status)

    def classify_token_error(self, error: str, http_status: int | None) -> TokenVerdict:
        errors = self.declaration.errors
        if error in errors.refresh_token_rejected:
            return TokenVerdict.REJECTED
        if error in errors.client_rejected:
            return TokenVerdict.CLIENT_MISCONFIGURED
        if error in errors.temporary:
            return TokenVerdict.TRANSIENT
        return super().classify_token_error(error, http_status)

    def identity_from_probe(self, body: Any) -> tuple[str | None, dict[str, Any]]:
        probe = self.declaration.health_probe
        if probe is None or probe.account_id_field is None:
            return None, {}
        found, value = _lookup(body, probe.account_id_field)
        if not found or value is None or isinstance(value, dict | list):
            return None, {}
        return str(value), {probe.account_id_field: value}


_BEARER_ERROR = re.compile(r'\berror\s*=\s*"?([A-Za-z_]+)"?')


def _bearer_error(response: httpx2.Response) -> str | None:
    """The `error` of an RFC 6750 §3 `WWW-Authenticate: Bearer …` challenge."""
    challenge = response.headers.get("www-authenticate", "")
    if not challenge.lower().startswith("bearer"):
        return None
    match = _BEARER_ERROR.search(challenge)
    return match.group(1) if match else None


def _safe_code(value: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9_.:-]", "_", str(value))[:64]
    return text or "error"


# ---- one declared tool call --------------------------------------------------------------------------
def build_call(
    tool: ToolDeclaration, arguments: dict[str, Any], *, api_base_url: str, idempotency_key: str | None = None
) -> ApiCall:
    """The request a declared tool makes with validated `arguments`.

    Path arguments are percent-encoded as one segment each ('/', '?', '#', '%' and ':' included), and the
    dot segments '.' and '..' are refused, so no argument can reach another path or host; the finished URL is
    checked to lie under `api_base_url` all the same.
    """
    by_location: dict[str, dict[str, Any]] = {"query": {}, "body": {}}
    path_values: dict[str, str] = {}
    for param in tool.params:
        value = arguments.get(param.name)
        if value is None:
            continue
        if param.location == "path":
            path_values[param.name] = _path_segment(param.name, value)
        else:
            by_location[param.location or "query"][param.wire_name] = _plain(value)
    path = PLACEHOLDER.sub(lambda match: path_values[match.group(1)], tool.path)
    _check_under_base(api_base_url, path)
    headers = {}
    if tool.idempotency_header and idempotency_key:
        headers[tool.idempotency_header] = idempotency_key
    query = {
        k: [_query_value(i) for i in v] if isinstance(v, list) else _query_value(v) for k, v in by_location["query"].items()
    } or None
    body = by_location["body"]
    has_body = any(p.location == "body" for p in tool.params)
    return ApiCall(
        tool.method,
        path,
        params=query,
        json=body if has_body and tool.body_encoding == "json" else None,
        data={k: _query_value(v) for k, v in body.items()} if has_body and tool.body_encoding == "form" else None,
        headers=headers,
        idempotent=tool.is_idempotent,
    )


def _plain(value: Any) -> Any:
    """Validated object arguments arrive as models: back to JSON values, members under their API names."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _path_segment(name: str, value: Any) -> str:
    text = _query_value(value)
    if text in ("", ".", ".."):
        raise UnsafeArgument(f"{name} may not be empty, '.' or '..' (it is one segment of the request path)")
    return quote(text, safe="")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_under_base(api_base_url: str, path: str) -> None:
    base = httpx2.URL(api_base_url.rstrip("/") + "/")
    try:
        url = httpx2.URL(api_base_url.rstrip("/") + path)
    except httpx2.InvalidURL:  # a megabyte of id makes a URL no server takes
        raise UnsafeArgument("the arguments make a request URL too long to send", "request_too_large") from None
    same_origin = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
    if not same_origin or not url.raw_path.startswith(base.raw_path) or url.query or url.fragment:
        raise UnsafeArgument("the arguments would take the request outside the provider's API")
