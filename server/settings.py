"""Runtime settings: environment variables prefixed GRANTKEEPER_, then `config.toml` in the data directory."""

from __future__ import annotations

import getpass
import os
import tomllib
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "GRANTKEEPER_"
PROVIDER_FIELDS = (
    "client_id",
    "client_secret",
    "api_base_url",
    "oauth_base_url",
    "client_private_key_file",
    "proxy_methods",
    "max_response_bytes",
)
PROXY_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# The guarded proxy tool (`<connector>.request`) reads by default; writes are the operator's choice per connector.
DEFAULT_PROXY_METHODS = ("GET", "HEAD")
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
NOT_PROVIDERS = frozenset({"oidc"})  # GRANTKEEPER_OIDC_CLIENT_ID is the sign-in client, not a provider
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting, never its secret value."""


def check_base_url(url: str, setting: str) -> str:
    """A provider or public base URL must be absolute, and plain http is allowed only on loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{setting} must be an absolute http(s) URL, got {url!r}")
    if parts.username or parts.password:
        raise ConfigError(f"{setting} must not carry credentials in the URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(f"{setting} uses plain http on a non-loopback host; use https")
    return url.rstrip("/")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class ProviderSettings(BaseModel):
    """One provider's client credentials and, optionally, base URLs standing in for the real hosts."""

    client_id: str | None = None
    client_secret: str | None = Field(default=None, repr=False)
    # For private_key_jwt client authentication (RFC 7523): a PEM private key (RSA) in a file only the server reads.
    client_private_key_file: Path | None = None
    api_base_url: str | None = None
    oauth_base_url: str | None = None
    # This provider's bound on one answer (compressed and decompressed bytes), instead of the default.
    max_response_bytes: int | None = Field(default=None, ge=1024, le=1024**3)
    # Methods the `<connector>.request` tool may send (GRANTKEEPER_<NAME>_PROXY_METHODS=GET,HEAD,POST); "none"
    # removes the tool. Unset: GET and HEAD only.
    proxy_methods: list[str] | None = None

    @field_validator("proxy_methods", mode="before")
    @classmethod
    def _methods_from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [] if value.strip().lower() in ("", "none", "off") else [m.strip() for m in value.split(",")]
        if isinstance(value, list):
            methods = [str(m).upper() for m in value if str(m).strip()]
            unknown = sorted(set(methods) - set(PROXY_METHODS))
            if unknown:
                raise ConfigError(f"proxy_methods: {unknown[0][:20]!r} is not one of {', '.join(PROXY_METHODS)} (or none)")
            return list(dict.fromkeys(methods))
        return value


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads `config.toml` from the data directory; environment variables win over it."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]):
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field, field_name):  # pragma: no cover - required by the ABC, unused
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


def default_home() -> Path:
    configured = os.environ.get(f"{ENV_PREFIX}HOME")
    if configured is not None and not configured.strip():
        # An empty value would put the vault and its key in whatever directory the command runs from.
        raise ConfigError("GRANTKEEPER_HOME is set but empty; set it to a directory or unset it")
    return Path(configured or platformdirs.user_data_dir("grantkeeper"))


def _read_config_file(home: Path) -> dict[str, Any]:
    path = home / "config.toml"
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


class Settings(BaseSettings):
    """Everything the server reads at start. Each field is `GRANTKEEPER_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    home: Path = Field(default_factory=default_home)
    database_url: str | None = None
    vault_key: str | None = Field(default=None, repr=False)
    tool_names: Literal["underscore", "dotted"] = "underscore"
    org: str = "personal"
    user: str = Field(default_factory=getpass.getuser)
    public_url: str = "http://127.0.0.1:8765"  # unset: http://<listen_host>:<listen_port>
    log_level: str = "info"
    log_format: Literal["console", "json"] = "json"

    # Token lifecycle: the refresh becomes due at this fraction of the access token's lifetime.
    refresh_at_fraction: float = Field(default=0.75, gt=0, lt=1)
    # Inside this many seconds of expiry a call waits for the refresh instead of using the old token.
    mandatory_refresh_seconds: float = Field(default=60, ge=0)
    # A refresh token with a fixed lifetime is announced (`account.reauth_required`, reason refresh_token_expiring)
    # this long before it runs out, or at half its lifetime when that is shorter.
    refresh_expiry_warning_seconds: float = Field(default=7 * 86400, ge=0)
    # A token request's total deadline (connect, send and every read of the answer together).
    refresh_timeout_seconds: float = Field(default=10, gt=0)
    # The refresh lease is a heartbeat: taken for `lease_seconds` and renewed every third of it while the token
    # request is in flight, never beyond `lease_max_seconds` from when it was taken. A worker that dies frees the
    # grant within `lease_seconds`; a live one is never overtaken before its deadline.
    lease_seconds: float = Field(default=5, gt=0)
    lease_max_seconds: float = Field(default=30, gt=0)
    token_cache_seconds: float = Field(default=5, ge=0)

    # Provider calls. A request's deadline is total (connect, send and every read), not per read; a tool call,
    # retries and waits included, ends within its own deadline.
    api_timeout_seconds: float = Field(default=30, gt=0)
    tool_call_deadline_seconds: float = Field(default=60, gt=0)
    # Bound on one provider answer, compressed and decompressed; GRANTKEEPER_<NAME>_MAX_RESPONSE_BYTES per provider.
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=1024, le=1024**3)
    # Each connector has its own connection pool, so one provider's outage cannot take another's connections.
    api_max_connections: int = Field(default=20, ge=1, le=1000)
    retry_attempts: int = Field(default=3, ge=1, le=10)
    retry_initial_wait_seconds: float = Field(default=0.5, ge=0)
    retry_max_wait_seconds: float = Field(default=60, ge=0)
    rate_limit_max_wait_seconds: float = Field(default=10, ge=0)

    magic_link_ttl_seconds: int = Field(default=900, gt=0)
    # An account connected without a refresh token is offered a reconnect link this long before it expires.
    reconnect_ahead_seconds: float = Field(default=3600, ge=0)
    # Where `serve` listens: the HTTP transports, or in stdio mode the small page listener for magic links.
    # Unless public_url is set, links point at this address.
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8765, ge=0, le=65535)
    # Streamable HTTP without server-side sessions: any worker behind a load balancer can answer any request,
    # so no session affinity is needed (at the price of server-to-client requests such as URL elicitation).
    http_stateless: bool = False
    alert_webhook_url: str | None = None  # Slack-style incoming webhook for alerts (unsigned JSON)

    # Signed webhooks (Standard Webhooks) from the durable outbox; endpoints via `grantkeeper webhooks add`.
    webhooks_enabled: bool = True  # deliver the outbox from this worker
    webhook_timeout_seconds: float = Field(default=10, gt=0, le=300)  # total deadline of one delivery
    webhook_max_attempts: int = Field(default=15, ge=1, le=1000)  # then the message is dead-lettered
    webhook_backoff_initial_seconds: float = Field(default=5, ge=0)  # doubles after each failed attempt ...
    webhook_backoff_max_seconds: float = Field(default=3600, ge=0)  # ... up to this, with jitter
    webhook_poll_seconds: float = Field(default=5, gt=0)  # longest sleep between two outbox scans

    # Fleet mode: background work every `serve` runs beside its transport (server/background.py, docs/deployment.md).
    scheduler_enabled: bool = True  # proactive refresh of due grants in this worker
    scheduler_poll_seconds: float = Field(default=30, gt=0)  # longest sleep between two due scans
    scheduler_batch_size: int = Field(default=50, ge=1, le=1000)  # rows claimed per scan
    scheduler_concurrency: int = Field(default=8, ge=1, le=256)  # refreshes in flight per worker
    scheduler_provider_rate: float = Field(default=5, ge=0)  # token requests per second per provider per worker; 0: unpaced
    health_checks_enabled: bool = True  # scheduled health probes, and the startup validation
    health_check_interval_seconds: float = Field(default=3600, gt=0)  # how often each account is probed
    health_check_concurrency: int = Field(default=4, ge=1, le=64)
    health_check_provider_rate: float = Field(default=2, ge=0)  # probes per second per provider per worker
    startup_validation_max_age_seconds: float = Field(default=300, ge=0)  # at start, check accounts not checked since

    # Sign-in through the organisation's OpenID Connect provider (server/identity/, docs/remote-hosts.md).
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = Field(default=None, repr=False)
    oidc_scopes: str = "openid email profile"
    oidc_user_claim: str = "email"  # the claim that names the user; `sub` when this one is absent
    oidc_org: str | None = None  # every signed-in person belongs to this org ...
    oidc_org_claim: str | None = None  # ... or to the org this claim names
    oidc_allowed_email_domains: str = ""  # comma-separated; empty: any domain
    oidc_groups_claim: str = "groups"
    oidc_required_group: str | None = None
    admin_emails: str = ""  # comma-separated
    admin_group: str | None = None
    session_idle_seconds: int = Field(default=2 * 3600, gt=0)
    session_absolute_seconds: int = Field(default=12 * 3600, gt=0)
    # Without sign-in, an HTTP server cannot tell who opens a connect link; an agent could send its own link to
    # someone else and then act as them. Only for a trusted single-user setup.
    allow_unverified_connect_links: bool = False
    # Who may call /mcp and /sse besides API keys: nobody else ("api_keys"), people signed in through grantkeeper
    # as the MCP authorization server ("grantkeeper"), or bearers of JWTs from an external issuer ("external").
    mcp_authorization: Literal["api_keys", "grantkeeper", "external"] = "api_keys"
    mcp_dynamic_registration: bool = True
    mcp_access_token_seconds: int = Field(default=900, gt=0, le=86400)
    mcp_refresh_token_seconds: int = Field(default=30 * 86400, gt=0)
    # Dynamically registered MCP clients with no live grant, unused this long, are pruned by housekeeping.
    mcp_client_retention_days: float = Field(default=30, gt=0, le=36500)
    mcp_external_issuer: str | None = None
    mcp_external_jwks_url: str | None = None  # default: the issuer's discovery document says
    mcp_external_algorithms: str = "RS256,ES256"
    # Housekeeping and the web side under hostile clients (docs/ARCHITECTURE.md "Web side", README operator's guide).
    magic_link_retention_seconds: float = Field(default=86400, ge=0)  # dead link rows kept this long, then pruned
    housekeeping_interval_seconds: float = Field(default=600, gt=0)  # how often `serve` prunes
    # Unfinished sign-ins (/login) live at most this many at once, and this many per client address (behind a reverse
    # proxy every browser has the proxy's address); beyond, /login answers 429 until the oldest expires.
    signin_flows_max: int = Field(default=10_000, gt=0)
    signin_flows_per_address_max: int = Field(default=30, gt=0)
    # The operator's console (docs/ARCHITECTURE.md "Operator's console"): history kept, then pruned by housekeeping.
    audit_retention_days: float = Field(default=365, gt=0, le=36500)  # audit rows (admin actions, tool calls)
    event_retention_days: float = Field(default=90, gt=0, le=36500)  # lifecycle events
    revocation_retry_seconds: float = Field(default=60, gt=0, le=86400)  # how often pending revocations are retried
    mcp_session_idle_seconds: float = Field(default=1800, gt=0)  # a streamable HTTP session idle this long is closed
    http_header_timeout_seconds: float = Field(default=10, gt=0)  # a request's head must be in within this
    http_body_timeout_seconds: float = Field(default=30, gt=0)  # and its body within this of the head
    http_keep_alive_seconds: int = Field(default=5, ge=1, le=3600)  # idle keep-alive connections closed after this
    http_max_header_bytes: int = Field(default=16384, ge=1024, le=1048576)  # larger request heads: 400, closed
    http_max_concurrency: int | None = Field(default=None, ge=1)  # at this many open connections, new requests: 503
    metrics_token: str | None = Field(default=None, repr=False)  # set: /metrics needs `Authorization: Bearer <it>`
    metrics_port: int | None = Field(default=None, ge=0, le=65535)  # set: /metrics only on 127.0.0.1:<port>

    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    # Providers declared without code (docs/custom-providers.md): `[custom_providers.<name>]` here, and/or a TOML
    # or JSON file of the same shape (relative paths are taken from the data directory). Checked at start by
    # server/custom_providers/; client credentials stay in GRANTKEEPER_<NAME>_CLIENT_ID/_CLIENT_SECRET.
    custom_providers: dict[str, Any] = Field(default_factory=dict)
    providers_file: Path | None = None

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        file_data = _read_config_file(default_home())
        return (init_settings, env_settings, _TomlFileSource(settings_cls, file_data), file_secret_settings)

    @field_validator("public_url")
    @classmethod
    def _public_url_is_absolute(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Not echoed: a mistyped value may hold anything, a secret pasted into the wrong variable included.
            raise ConfigError("GRANTKEEPER_PUBLIC_URL must be an absolute http(s) URL such as https://grantkeeper.example.com")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _log_level_is_known(cls, value: str) -> str:
        if value.strip().lower() not in LOG_LEVELS:
            raise ConfigError(f"GRANTKEEPER_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        return value.strip().lower()

    @field_validator("database_url")
    @classmethod
    def _database_is_supported(cls, value: str | None) -> str | None:
        if not value:
            return None
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in DATABASE_SCHEMES:
            raise ConfigError(
                "GRANTKEEPER_DATABASE_URL must be a sqlite:/// or postgresql:// URL (other databases are not supported)"
            )
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook_is_safe(cls, value: str | None) -> str | None:
        return None if not value else check_base_url(value, "GRANTKEEPER_ALERT_WEBHOOK_URL")

    @field_validator("org", "user")
    @classmethod
    def _identity_is_plain(cls, value: str) -> str:
        if not value or "/" in value or len(value) > 200:
            raise ConfigError("GRANTKEEPER_ORG and GRANTKEEPER_USER must be non-empty, without '/'")
        return value

    @model_validator(mode="after")
    def _refresh_fits_in_its_lease(self) -> Settings:
        """The lease must outlive the token request it protects, or a second worker could present the same refresh
        token while the first one's answer is still on its way (and the provider would revoke the grant)."""
        if self.refresh_timeout_seconds >= self.lease_max_seconds:
            raise ConfigError(
                f"GRANTKEEPER_REFRESH_TIMEOUT_SECONDS ({self.refresh_timeout_seconds:g}) must be shorter than "
                f"GRANTKEEPER_LEASE_MAX_SECONDS ({self.lease_max_seconds:g}): a refresh may not outlast its lease"
            )
        if self.lease_seconds > self.lease_max_seconds:
            raise ConfigError(
                f"GRANTKEEPER_LEASE_SECONDS ({self.lease_seconds:g}) must not be longer than "
                f"GRANTKEEPER_LEASE_MAX_SECONDS ({self.lease_max_seconds:g})"
            )
        return self

    @model_validator(mode="after")
    def _merge_provider_env(self) -> Settings:
        """`GRANTKEEPER_SLACK_CLIENT_ID` and friends override `[providers.slack]` in config.toml."""
        names = set(self.providers)
        for key in os.environ:
            for field in PROVIDER_FIELDS:
                suffix = "_" + field.upper()
                if key.startswith(ENV_PREFIX) and key.endswith(suffix):
                    name = key[len(ENV_PREFIX) : -len(suffix)].lower()
                    if name and name.isidentifier() and name not in NOT_PROVIDERS:
                        names.add(name)
        for name in names:
            current = self.providers.get(name, ProviderSettings()).model_dump()
            for field in PROVIDER_FIELDS:
                env_value = os.environ.get(f"{ENV_PREFIX}{name.upper()}_{field.upper()}")
                if env_value:
                    current[field] = env_value
            for field in ("api_base_url", "oauth_base_url"):
                if current[field]:
                    current[field] = check_base_url(current[field], f"{ENV_PREFIX}{name.upper()}_{field.upper()}")
            self.providers[name] = ProviderSettings(**current)
        return self

    @model_validator(mode="after")
    def _identity_is_coherent(self) -> Settings:
        if self.oidc_issuer:
            check_base_url(self.oidc_issuer, "GRANTKEEPER_OIDC_ISSUER")  # kept as given: `iss` must match exactly
            if not self.oidc_client_id:
                raise ConfigError("GRANTKEEPER_OIDC_ISSUER is set but GRANTKEEPER_OIDC_CLIENT_ID is not")
        if self.mcp_authorization == "grantkeeper" and not self.oidc_issuer:
            raise ConfigError(
                "GRANTKEEPER_MCP_AUTHORIZATION=grantkeeper needs sign-in: set GRANTKEEPER_OIDC_ISSUER, "
                "GRANTKEEPER_OIDC_CLIENT_ID and GRANTKEEPER_OIDC_CLIENT_SECRET"
            )
        if self.mcp_authorization == "external":
            if not self.mcp_external_issuer:
                raise ConfigError("GRANTKEEPER_MCP_AUTHORIZATION=external needs GRANTKEEPER_MCP_EXTERNAL_ISSUER")
            check_base_url(self.mcp_external_issuer, "GRANTKEEPER_MCP_EXTERNAL_ISSUER")
            if "none" in {alg.strip().lower() for alg in self.mcp_external_algorithms.split(",")}:
                raise ConfigError("GRANTKEEPER_MCP_EXTERNAL_ALGORITHMS must not allow 'none'")
        if self.mcp_external_jwks_url:
            self.mcp_external_jwks_url = check_base_url(self.mcp_external_jwks_url, "GRANTKEEPER_MCP_EXTERNAL_JWKS_URL")
        return self

    @model_validator(mode="after")
    def _links_follow_the_listen_port(self) -> Settings:
        """Unless GRANTKEEPER_PUBLIC_URL is set, links point at the configured listener, so that `grantkeeper link`
        and `check` print the address `serve` listens on. Written past __setattr__ so the field still counts as
        unset: `serve` replaces it with the bound address (port 0, a taken port)."""
        if "public_url" not in self.model_fields_set:
            host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.listen_host, self.listen_host)
            host = f"[{host}]" if ":" in host else host
            self.__dict__["public_url"] = f"http://{host}:{self.listen_port or 8765}"
        return self

    @property
    def sign_in_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    def provider(self, name: str) -> ProviderSettings:
        return self.providers.get(name, ProviderSettings())

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'grantkeeper.db'}"
