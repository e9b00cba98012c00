"""A connector is a provider bound to this deployment: its spec with base-URL overrides and client credentials."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import providers
from providers.base import Provider, ProviderSpec
from server.custom_providers import declared_providers
from server.settings import DEFAULT_MAX_RESPONSE_BYTES, ConfigError, Settings


@dataclass(frozen=True)
class Connector:
    provider: Provider
    spec: ProviderSpec
    client_id: str | None
    client_secret: str | None = field(repr=False)
    # PEM of the private key that signs client assertions (private_key_jwt); never logged.
    client_private_key: str | None = field(default=None, repr=False)
    # The bound on one answer from this provider, compressed and decompressed (server/bounded_read.py).
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def token_url(self) -> str:
        return _endpoint(self.spec.oauth_base_url, self.spec.token_path)

    @property
    def authorize_url(self) -> str:
        return _endpoint(self.spec.authorize_base_url or self.spec.oauth_base_url, self.spec.authorize_path)

    def api_url(self, path: str) -> str:
        return self.spec.api_base_url + path

    @property
    def refresh_url(self) -> str:
        return self.spec.refresh_url or self.token_url

    @property
    def revoke_url(self) -> str | None:
        """The RFC 7009 revocation endpoint (declared or discovered), ready for offboarding."""
        return _endpoint(self.spec.oauth_base_url, self.spec.revoke_path) if self.spec.revoke_path else None

    @property
    def configured(self) -> bool:
        if self.spec.client_auth_method == "private_key_jwt":
            return bool(self.client_id and self.client_private_key)
        return bool(self.client_id and self.client_secret)

    @property
    def missing_client(self) -> str | None:
        """The settings the operator must set before anyone can connect through this connector, or None. A link
        handed out without them would dead-end after the user pressed Continue."""
        if self.configured:
            return None
        prefix = f"GRANTKEEPER_{self.name.upper()}"
        secret = "_CLIENT_PRIVATE_KEY_FILE" if self.spec.client_auth_method == "private_key_jwt" else "_CLIENT_SECRET"
        return f"{self.spec.display_name} has no OAuth client on this server: set {prefix}_CLIENT_ID and {prefix}{secret}."

    @cached_property
    def missing_base_url(self) -> str | None:
        """What the operator must set before this connector can work at all (a provider on a per-customer host
        has no default), or None."""
        endpoints_are_urls = all(_is_url(path) for path in (self.spec.token_path, self.spec.authorize_path))
        if self.spec.api_base_url and (self.spec.oauth_base_url or endpoints_are_urls):
            return None
        setting = f"GRANTKEEPER_{self.name.upper()}_API_BASE_URL"
        example = f" (e.g. {self.spec.base_url_example})" if self.spec.base_url_example else ""
        return f"{self.spec.display_name} has no fixed address: set {setting}{example}."


def _is_url(path: str) -> bool:
    return path.startswith(("https://", "http://"))


def _endpoint(base: str, path: str) -> str:
    """A spec path joined to its base URL; a declared provider's endpoint may be a full URL on another host."""
    return path if _is_url(path) else base + path


def load_connectors(settings: Settings) -> dict[str, Connector]:
    """Built-in providers, then those declared in configuration (which may fetch RFC 8414 metadata)."""
    connectors = {}
    for name, provider in {**providers.BUILTIN, **declared_providers(settings)}.items():
        overrides = settings.provider(name)
        oauth_base_url = overrides.oauth_base_url
        if not oauth_base_url and not provider.spec.oauth_base_url:
            # A provider on a per-customer host (Zendesk) serves OAuth from that same host.
            oauth_base_url = overrides.api_base_url
        spec = provider.spec.model_copy(
            update={
                key: value
                for key, value in (("api_base_url", overrides.api_base_url), ("oauth_base_url", oauth_base_url))
                if value
            }
        )
        if overrides.oauth_base_url and spec.authorize_base_url:
            # An overridden OAuth host (a simulator, a proxy) serves the authorize page too.
            spec = spec.model_copy(update={"authorize_base_url": overrides.oauth_base_url})
        private_key = (
            _read_private_key(name, overrides.client_private_key_file) if spec.client_auth_method == "private_key_jwt" else None
        )
        max_response_bytes = overrides.max_response_bytes or spec.max_response_bytes or settings.max_response_bytes
        connectors[name] = Connector(
            provider, spec, overrides.client_id, overrides.client_secret, private_key, max_response_bytes
        )
    return connectors


def _read_private_key(name: str, path: Path | None) -> str | None:
    """The PEM named by GRANTKEEPER_<NAME>_CLIENT_PRIVATE_KEY_FILE, checked to be a private key we can sign with."""
    if path is None:
        return None
    setting = f"GRANTKEEPER_{name.upper()}_CLIENT_PRIVATE_KEY_FILE"
    try:
        pem = path.expanduser().read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{setting}: cannot read {path} ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{setting}: {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{setting}: private_key_jwt signs with RS256, so the key must be an RSA key")
    return pem
