"""Everything one server process holds: settings, vault, connectors, token manager, executor, HTTP connection pools."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field

import httpx2

from server.connectors import Connector, load_connectors
from server.elicitations import ElicitationWatch
from server.execute import Caller, Executor
from server.lifecycle.offboarding import Offboarding
from server.lifecycle.tokens import TokenManager
from server.monitoring.alerts import AlertPolicy
from server.monitoring.audit import AuditTrail
from server.monitoring.events import EventRecorder
from server.monitoring.logging import get_logger
from server.monitoring.metrics import Metrics
from server.pools import USER_AGENT, ConnectorPools, cookieless_jar
from server.settings import Settings
from server.vault import Vault
from server.vault.crypto import VaultKeyError, load_or_create_keyring
from server.vault.database import make_engine, migrate


@dataclass
class Runtime:
    settings: Settings
    vault: Vault
    connectors: dict[str, Connector]
    events: EventRecorder
    tokens: TokenManager
    executor: Executor
    pools: ConnectorPools
    # For what is not a connector's API call (an OpenID issuer's key set at callback time); API calls use `pools`.
    http: httpx2.AsyncClient
    offboarding: Offboarding
    audit: AuditTrail
    created_key_file: bool = False
    elicitations: ElicitationWatch = field(default_factory=ElicitationWatch)  # clients waiting on a link
    metrics: Metrics = field(default_factory=Metrics)  # this runtime's own registry, served at /metrics
    _closed: bool = field(default=False, repr=False)
    _stdio_caller: Caller | None = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: Settings, *, connectors: dict[str, Connector] | None = None) -> Runtime:
        """Open the vault (creating the key and migrating the schema on first run). Blocking. `connectors`: already
        loaded from `settings` (declared providers may have fetched their metadata)."""
        vault, key_created = open_vault(settings)
        connectors = load_connectors(settings) if connectors is None else connectors
        metrics = Metrics()
        events = EventRecorder(vault, AlertPolicy(vault, settings.alert_webhook_url), metrics)
        tokens = TokenManager(settings, vault, connectors, events)
        pools = ConnectorPools(settings)  # one per connector: a hanging provider holds only its own connections
        executor = Executor(settings, vault, connectors, tokens, events, pools)
        http = httpx2.AsyncClient(
            timeout=settings.api_timeout_seconds,
            limits=httpx2.Limits(max_connections=settings.api_max_connections),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            cookies=cookieless_jar(),  # it serves every account too (revocations, key sets)
        )
        # Revocations go out on the general client: bounded by their own deadline and answer size (offboarding.py).
        offboarding = Offboarding(settings, vault, connectors, events, http, forget=executor.forget_account)
        return cls(
            settings,
            vault,
            connectors,
            events,
            tokens,
            executor,
            pools,
            http,
            offboarding,
            AuditTrail(vault.engine, metrics=metrics),
            key_created,
            metrics=metrics,
        )

    def stdio_caller(self) -> Caller:
        caller = self._stdio_caller
        if caller is None:  # asked on every stdio tool call; the settings do not change
            caller = self._stdio_caller = Caller(self.settings.org, self.settings.user or getpass.getuser())
        return caller

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.tokens.aclose()
        await self.events.alerts.drain()
        await self.pools.aclose()
        await self.http.aclose()
        await self.audit.aclose()  # the queued tool-call rows, before the engine goes
        self.vault.engine.dispose()


def open_vault(settings: Settings) -> tuple[Vault, bool]:
    """The vault, and whether its key file was just created."""
    key_file = settings.home / "vault.key"
    if not settings.vault_key and not settings.effective_database_url.startswith("sqlite") and not key_file.exists():
        # Workers sharing a database must share one key; a key file made by each would seal secrets the others
        # cannot open.
        raise VaultKeyError(
            "a shared database needs GRANTKEEPER_VAULT_KEY (make one: grantkeeper vault new-key); no key file is created for it"
        )
    keyring, created = load_or_create_keyring(settings.vault_key, key_file)
    if created:
        get_logger("grantkeeper").warning(
            "vault_key_created",
            path=str(key_file),
            notice="A new vault key was generated. Back it up: without it the stored grants cannot be decrypted. "
            "Set GRANTKEEPER_VAULT_KEY to manage the key yourself.",
        )
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    return Vault(engine, keyring), created
