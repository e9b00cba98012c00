"""RFC 8414 discovery for a declared provider with an `issuer`: the authorization server's metadata (or OpenID
Connect Discovery's), fetched within a size bound and a deadline, its issuer checked against the declared one and
its endpoints checked for safe URLs.

    metadata = fetch_metadata("acme", declaration)   # AuthorizationServerMetadata(token_endpoint=..., ...)
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit, urlunsplit

import httpx2
from pydantic import BaseModel, ConfigDict, ValidationError

from providers.custom import ProviderDeclaration
from server.settings import ConfigError, check_base_url

WELL_KNOWN = "/.well-known/oauth-authorization-server"
OPENID_WELL_KNOWN = "/.well-known/openid-configuration"
METADATA_MAX_BYTES = 256 * 1024
DISCOVERY_TIMEOUT_SECONDS = 10.0


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
