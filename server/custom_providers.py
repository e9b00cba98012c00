"""Providers declared in configuration: read from `[custom_providers.<name>]` in config.toml and from the file
named by GRANTKEEPER_PROVIDERS_FILE (TOML or JSON, same shape), checked, completed by RFC 8414 discovery where
an `issuer` is given, and turned into `DeclaredProvider`s.

Every problem is a `ConfigError` that names the source, the provider and the field, and never echoes a value
that could be a secret.

    declared = declared_providers(settings)        # {"acme": DeclaredProvider(...)}; fetches discovery metadata
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
from pydantic import BaseModel, ConfigDict, ValidationError

import providers
from providers import catalog
from providers.custom import PROVIDER_NAME, DeclaredProvider, ProviderDeclaration
from server.settings import ConfigError, Settings, check_base_url

WELL_KNOWN = "/.well-known/oauth-authorization-server"
OPENID_WELL_KNOWN = "/.well-known/openid-configuration"
METADATA_MAX_BYTES = 256 * 1024
DISCOVERY_TIMEOUT_SECONDS = 10.0
# Tool namespaces that are not providers but must not be taken by one.
RESERVED_NAMES = {"accounts", "grantkeeper"}
SUPPORTED_AUTH_METHODS = ("client_secret_basic", "client_secret_post")  # in order of preference (RFC 6749 §2.3.1)
# Chosen only when declared: it needs a key the operator configures (GRANTKEEPER_<NAME>_CLIENT_PRIVATE_KEY_FILE).
KEY_AUTH_METHODS = ("private_key_jwt",)
_SECRET_FIELDS = {"client_id", "client_secret"}


def declared_providers(settings: Settings) -> dict[str, DeclaredProvider]:
    """Every declared provider, ready to become a connector. Fetches the discovery metadata of those with an
    issuer; `read_declarations` alone checks the configuration without the network."""
    declarations = read_declarations(settings)
    declared = {}
    for name, (source, declaration) in declarations.items():
        metadata = fetch_metadata(name, declaration) if declaration.issuer else None
        declared[name] = _provider(name, source, declaration, metadata)
    return declared


# ---- reading -----------------------------------------------------------------------------------------
def read_declarations(settings: Settings) -> dict[str, tuple[str, ProviderDeclaration]]:
    """(source, declaration) per provider name, statically checked; all problems are reported together."""
    raw: dict[str, tuple[str, Any]] = {}
    problems: list[str] = []
    sources = [("config.toml [custom_providers]", settings.custom_providers)]
    if settings.providers_file is not None:
        path = providers_file_path(settings)
        sources.append((str(path), _read_providers_file(path)))
    for source, table in sources:
        if not isinstance(table, dict):
            problems.append(f"{source}: custom_providers must be a table of providers by name")
            continue
        for name, body in table.items():
            if name in raw:
                problems.append(f"{source}: custom provider {name!r} is also declared in {raw[name][0]}; keep one")
                continue
            raw[name] = (source, body)

    declarations = {}
    for name, (source, body) in raw.items():
        where = f"{source}: custom provider {name!r}"
        if not isinstance(name, str) or not PROVIDER_NAME.match(name):
            problems.append(
                f"{where}: the name must be lowercase letters, digits and _, starting with a letter "
                "(it becomes the tool prefix and GRANTKEEPER_<NAME>_CLIENT_ID)"
            )
            continue
        if name in providers.BUILTIN or name in RESERVED_NAMES:
            kind = "the built-in provider" if name in providers.BUILTIN else "the reserved tool namespace"
            problems.append(f"{where}: the name shadows {kind} {name!r}; choose another name")
            continue
        if not isinstance(body, dict):
            problems.append(f"{where}: must be a table of settings")
            continue
        if "from_catalog" in body:
            try:
                body = catalog.resolve(body)
            except catalog.CatalogError as exc:
                problems.append(f"{where}: {exc}")
                continue
        secrets_here = sorted(_SECRET_FIELDS & set(body))
        if secrets_here:
            upper = name.upper()
            problems.append(
                f"{where}: {', '.join(secrets_here)} do not belong in a provider declaration; set "
                f"GRANTKEEPER_{upper}_CLIENT_ID and GRANTKEEPER_{upper}_CLIENT_SECRET in the environment "
                f"(or [providers.{name}] in config.toml)"
            )
            continue
        try:
            declaration = ProviderDeclaration.model_validate(body, context={"provider": name})
        except ValidationError as exc:
            problems.extend(f"{where}: {problem}" for problem in _describe_errors(exc, body))
            continue
        url_problems = _url_problems(name, declaration)
        if url_problems:
            problems.extend(f"{where}: {problem}" for problem in url_problems)
            continue
        declarations[name] = (source, declaration)
    if problems:
        raise ConfigError("\n  ".join(["invalid custom provider configuration:", *problems]))
    return declarations


def providers_file_path(settings: Settings) -> Path:
    """GRANTKEEPER_PROVIDERS_FILE; a relative path is taken from the data directory, whatever the working
    directory of the process that launched the server (Claude Desktop's, say)."""
    assert settings.providers_file is not None
    path = settings.providers_file.expanduser()
    return path if path.is_absolute() else settings.home / path


def _read_providers_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"GRANTKEEPER_PROVIDERS_FILE: cannot read {path} ({exc.strerror or type(exc).__name__})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ConfigError(f"{path}: not valid {kind} ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object with a custom_providers table")
    unknown = sorted(set(data) - {"custom_providers"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {unknown[0]!r}; declare providers under custom_providers")
    return data.get("custom_providers", {})


_FRIENDLY = {
    "extra_forbidden": "unknown field (check the spelling against docs/custom-providers.md)",
    "missing": "required field is missing",
}


def _describe_errors(exc: ValidationError, body: Any) -> list[str]:
    """pydantic's errors as `tools[0] (list_projects).params[1] (limit).minimum: <problem>`, without input values."""
    described = []
    for error in exc.errors(include_input=False, include_url=False):
        location, node = [], body
        for part in error["loc"]:
            if isinstance(part, int):
                location[-1:] = [f"{location[-1] if location else ''}[{part}]"]
                node = node[part] if isinstance(node, list) and part < len(node) else None
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    location[-1] += f" ({node['name'][:64]})"
            else:
                location.append(str(part))
                node = node.get(part) if isinstance(node, dict) else None
        message = _FRIENDLY.get(error["type"], error["msg"].removeprefix("Value error, "))
        described.append(f"{'.'.join(location) or 'declaration'}: {message}")
    return described


def _url_problems(name: str, declaration: ProviderDeclaration) -> list[str]:
    """Every URL the server will contact must be https, or http on loopback, and carry no credentials."""
    problems = []
    for field in (
        "api_base_url",
        "oauth_base_url",
        "authorize_url",
        "token_url",
        "revoke_url",
        "issuer",
        "discovery_url",
        "jwks_url",
        "refresh_url",
    ):
        value = getattr(declaration, field)
        if value is None:
            continue
        try:
            check_base_url(value, field)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        parts = urlsplit(value)
        if field in ("api_base_url", "oauth_base_url", "issuer") and (parts.query or parts.fragment):
            problems.append(f"{field} may not have a query or fragment")
    return problems


# ---- RFC 8414 discovery ------------------------------------------------------------------------------
class AuthorizationServerMetadata(BaseModel):
    """The fields of RFC 8414 §2 that grantkeeper uses; the rest are ignored."""

    model_config = ConfigDict(extra="ignore")

    issuer: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    revocation_endpoint: str | None = None
    token_endpoint_auth_methods_supported: list[str] = ["client_secret_basic"]  # RFC 8414 §2's default
    jwks_uri: str | None = None
    scopes_supported: list[str] | None = None
    authorization_response_iss_parameter_supported: bool = False  # RFC 9207 §3


def metadata_url(issuer: str, *, openid: bool = False) -> str:
    """RFC 8414 §3.1: the well-known suffix goes between the host and the issuer's path. OpenID Connect
    Discovery §4 appends it to the issuer instead."""
    if openid:
        return issuer.rstrip("/") + OPENID_WELL_KNOWN
    parts = urlsplit(issuer)
    return urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + parts.path.rstrip("/"), "", ""))


def _read_metadata(response: httpx2.Response, where: str) -> bytes:
    """The metadata document, within a size bound and a total deadline (a trickling server is cut off too)."""
    give_up = time.monotonic() + DISCOVERY_TIMEOUT_SECONDS
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > METADATA_MAX_BYTES or response.num_bytes_downloaded > METADATA_MAX_BYTES:
            raise ConfigError(f"{where} answered more than {METADATA_MAX_BYTES} bytes, which is not RFC 8414 metadata")
        if time.monotonic() > give_up:
            raise ConfigError(f"{where} did not finish answering within {DISCOVERY_TIMEOUT_SECONDS:g} s")
    return bytes(body)


def fetch_metadata(name: str, declaration: ProviderDeclaration) -> AuthorizationServerMetadata:
    assert declaration.issuer is not None
    url = declaration.discovery_url or metadata_url(declaration.issuer, openid=declaration.openid)
    where = f"custom provider {name!r}: discovery at {url}"
    try:
        with (
            httpx2.Client(
                timeout=DISCOVERY_TIMEOUT_SECONDS,
                follow_redirects=False,
                headers={"Accept": "application/json", "User-Agent": "grantkeeper/0.1"},
            ) as client,
            client.stream("GET", url) as response,
        ):
            body = _read_metadata(response, where) if response.status_code == 200 else b""
    except httpx2.HTTPError as exc:
        raise ConfigError(
            f"{where} failed: {type(exc).__name__}; is the issuer right and reachable? (or set "
            "authorize_url and token_url and drop issuer)"
        ) from None
    if response.status_code != 200:
        raise ConfigError(
            f"{where} answered HTTP {response.status_code}; the server may not support RFC 8414 "
            "(set authorize_url and token_url instead of issuer)"
        )
    try:
        metadata = AuthorizationServerMetadata.model_validate(json.loads(body))
    except (ValueError, ValidationError):
        raise ConfigError(f"{where} did not return RFC 8414 metadata (a JSON object with an issuer)") from None
    if metadata.issuer != declaration.issuer:
        raise ConfigError(
            f"{where} names issuer {metadata.issuer[:200]!r}, but issuer is configured as "
            f"{declaration.issuer!r}; RFC 8414 §3.3 requires them to be identical, so this metadata "
            "is not used (wrong server, or an impersonation attempt)"
        )
    if declaration.openid and metadata.jwks_uri is None and declaration.jwks_url is None:
        raise ConfigError(f"{where} has no jwks_uri, so id_tokens cannot be verified; set jwks_url")
    for field in ("authorization_endpoint", "token_endpoint", "revocation_endpoint", "jwks_uri"):
        value = getattr(metadata, field)
        if value is not None:
            try:
                check_base_url(value, f"the discovered {field}")
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
    return metadata


def _provider(
    name: str, source: str, declaration: ProviderDeclaration, metadata: AuthorizationServerMetadata | None
) -> DeclaredProvider:
    where = f"{source}: custom provider {name!r}"
    authorize = declaration.endpoint("authorize") or (metadata.authorization_endpoint if metadata else None)
    token = declaration.endpoint("token") or (metadata.token_endpoint if metadata else None)
    revoke = declaration.endpoint("revoke") or (metadata.revocation_endpoint if metadata else None)
    for kind, value in (("authorization_endpoint", authorize), ("token_endpoint", token)):
        if value is None:
            raise ConfigError(f"{where}: the discovery metadata has no {kind}; set it in the declaration")
    auth_method = declaration.client_auth_method
    if declaration.openid and (declaration.jwks_url or (metadata and metadata.jwks_uri)) is None:
        raise ConfigError(f"{where}: openid = true needs the issuer's jwks_uri (from discovery, or jwks_url)")
    if metadata is not None:
        supported = metadata.token_endpoint_auth_methods_supported
        if auth_method is None:
            auth_method = next((m for m in SUPPORTED_AUTH_METHODS if m in supported), None)
            if auth_method is None:
                raise ConfigError(
                    f"{where}: the token endpoint supports none of {', '.join(SUPPORTED_AUTH_METHODS)} "
                    f"(it offers {', '.join(supported)[:200]})"
                )
        elif auth_method not in supported:
            raise ConfigError(
                f"{where}: client_auth_method {auth_method!r} is not among the server's "
                f"token_endpoint_auth_methods_supported ({', '.join(supported)[:200]})"
            )
    scopes_supported = metadata.scopes_supported if metadata else None
    return DeclaredProvider.from_declaration(
        name,
        declaration,
        authorize_url=authorize,
        token_url=token,
        revoke_url=revoke,
        client_auth_method=auth_method,
        jwks_uri=metadata.jwks_uri if metadata else None,
        authorization_response_iss=bool(metadata and metadata.authorization_response_iss_parameter_supported),
        offline_access_supported=scopes_supported is None or "offline_access" in scopes_supported,
    )
