"""The authorization-code flow behind a magic link: `begin` spends the link on one flow (state + PKCE, sealed into
the link's row, bound to the browser by a cookie); `complete` checks the callback, exchanges the code, confirms
the provider account is the account's own, and installs the new credentials on the existing account.

Nothing is written before every check passes, and the write itself is one compare-and-set transaction, so a
replayed, forged, denied or mismatched callback leaves the vault as it was.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import httpx2
from authlib.common.security import generate_token

from providers.base import Verdict, json_body
from server.bounded_read import ResponseTooLarge, read_response_bounded
from server.connectors import Connector
from server.lifecycle.grants import credential_write
from server.lifecycle.oauth import TokenEndpointError, authorization_url, exchange_code
from server.lifecycle.oidc import IdTokenRejected, IdTokenVerifier
from server.monitoring.event_kinds import EventKind, Severity
from server.monitoring.logging import get_logger
from server.reauth.links import LinkView, ReauthRefused, Refusal, inspect_link
from server.runtime import Runtime
from server.vault import (
    NO_REFRESH_TOKEN,
    ConnectedAccount,
    ReauthorizationOutcome,
    TokenSecrets,
    VaultIntegrityError,
    VaultKeyError,
)
from server.vault.credentials import refreshless_reason
from server.vault.crypto import Sealed, hash_token, new_secret_token
from server.vault.models import MagicLink, utcnow
from server.vault.revocations import PendingRevocation
from server.vault.threads import in_vault_thread

FLOW_FIELD = "flow"
CALLBACK_PATH = "/oauth/callback"
PKCE_VERIFIER_LENGTH = 64  # RFC 7636: 43–128 characters


@dataclass(frozen=True)
class FlowStarted:
    authorize_url: str
    cookie_name: str
    cookie_value: str
    cookie_max_age: int


@dataclass(frozen=True)
class Reconnected:
    account: ConnectedAccount
    connector: Connector
    provider_account: str  # in words, e.g. "@octocat (user id 1)"
    purpose: str
    needs_user_at: datetime | None = None  # set when the grant came without a refresh token


def flow_cookie_name(link: MagicLink) -> str:
    """One cookie per flow, so two links opened in one browser (Slack and GitHub) do not overwrite each other."""
    return f"gk_flow_{link.id}"


class ReauthFlow:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.log = get_logger("grantkeeper.reauth")
        self.id_tokens = IdTokenVerifier(runtime.http)

    @property
    def redirect_uri(self) -> str:
        # Read per request: in stdio mode the public URL is only known once the page listener has bound its port.
        return self.runtime.settings.public_url + CALLBACK_PATH

    @property
    def flow_ttl(self) -> timedelta:
        return timedelta(seconds=self.runtime.settings.magic_link_ttl_seconds)

    def connector_for(self, account: ConnectedAccount) -> Connector:
        return self.runtime.connectors[account.connector]

    # ---- the link -----------------------------------------------------------------------------------
    async def open(self, token: str) -> LinkView:
        """What the link reconnects; `ReauthRefused` if it cannot be used. Reading a link never spends it, so a
        chat app's link preview does not burn it."""
        return await in_vault_thread(inspect_link, self.runtime.vault, token)

    async def begin(self, token: str) -> FlowStarted:
        """Spend the link on one authorization flow and say where to send the browser."""
        view = await self.open(token)
        connector = self.connector_for(view.account)
        if not connector.configured:
            raise ReauthRefused(Refusal.CLIENT_NOT_CONFIGURED, account=view.account)
        state = new_secret_token()
        verifier = generate_token(PKCE_VERIFIER_LENGTH)
        binding = new_secret_token()
        redirect_uri = self.redirect_uri
        # OpenID Connect: the nonce binds the id_token to this flow (OIDC Core §3.1.2.1); sealed with the state.
        nonce = new_secret_token() if connector.spec.openid else None
        sealed = self.runtime.vault.seal(
            "magic_link",
            view.link.id,
            FLOW_FIELD,
            {
                "code_verifier": verifier,
                "browser_binding": hash_token(binding),
                "redirect_uri": redirect_uri,
                "nonce": nonce,
            },
        )
        if not await in_vault_thread(self.runtime.vault.links.begin_flow, view.link.id, state=state, sealed_flow=sealed):
            raise ReauthRefused(Refusal.LINK_USED, account=view.account)  # a concurrent open won, or it just expired
        self.log.info("reauthorization_started", account=view.account.display_name, purpose=view.link.purpose)
        return FlowStarted(
            authorize_url=authorization_url(
                connector, redirect_uri=redirect_uri, state=state, code_verifier=verifier, nonce=nonce
            ),
            cookie_name=flow_cookie_name(view.link),
            cookie_value=binding,
            cookie_max_age=int(self.flow_ttl.total_seconds()),
        )

    # ---- the callback -------------------------------------------------------------------------------
    async def complete(self, query: Mapping[str, str], cookies: Mapping[str, str]) -> Reconnected:
        link, account, flow = await self._flow_for(query.get("state"))
        connector = self.connector_for(account)
        context = {"account": account, "connector": connector}
        if link.completed_at is not None:
            raise ReauthRefused(Refusal.FLOW_FINISHED, **context)
        if link.used_at is None or utcnow() > link.used_at + self.flow_ttl:
            raise ReauthRefused(Refusal.FLOW_EXPIRED, **context)
        binding = cookies.get(flow_cookie_name(link)) or ""
        if not hmac.compare_digest(hash_token(binding), str(flow.get("browser_binding", ""))):
            raise ReauthRefused(Refusal.OTHER_BROWSER, **context)
        self._check_issuer(connector, query.get("iss"), context)
        if error := query.get("error"):
            self.log.info("reauthorization_declined", account=account.display_name, provider_error=error[:64])
            refusal = Refusal.ACCESS_DENIED if error == "access_denied" else Refusal.PROVIDER_ERROR
            raise ReauthRefused(refusal, error=error[:64], **context)
        code = query.get("code")
        if not code:
            raise ReauthRefused(Refusal.CODE_MISSING, **context)

        try:
            grant = await exchange_code(
                connector,
                code=code,
                redirect_uri=flow["redirect_uri"],
                code_verifier=flow["code_verifier"],
                timeout=self.runtime.settings.refresh_timeout_seconds,
            )
        except TokenEndpointError as exc:
            self.log.warning("reauthorization_exchange_failed", account=account.display_name, provider_error=exc.error)
            raise ReauthRefused(Refusal.EXCHANGE_FAILED, error=exc.error, **context) from None
        if grant.access_token is None:  # exchange_code refuses such an answer; this says so to the type checker
            raise ReauthRefused(Refusal.EXCHANGE_FAILED, error="access_token_unusable", **context)

        try:
            return await self._accept(link, account, connector, flow, grant, context)
        except ReauthRefused as refused:
            # Tokens the provider issued for a connect we refuse are ended there, not just dropped. When the same
            # provider account may hold the grant that won (a race, a disabled account), only this token goes.
            same_account = refused.refusal in (Refusal.FLOW_FINISHED, Refusal.ACCOUNT_DISABLED)
            await self.runtime.offboarding.end_refused(
                account, TokenSecrets(grant.access_token, grant.refresh_token), same_account=same_account
            )
            raise

    async def _accept(
        self,
        link: MagicLink,
        account: ConnectedAccount,
        connector: Connector,
        flow: dict[str, Any],
        grant: Any,
        context: dict[str, Any],
    ) -> Reconnected:
        """Check whose grant this is and install it; any refusal here comes after the provider issued tokens."""
        provider_account_id, identity = grant.provider_account_id, grant.identity
        if connector.spec.openid:
            subject = await self._verified_subject(connector, grant.id_token, flow.get("nonce") or "", account, context)
            if provider_account_id is None and connector.spec.health_probe is None:
                provider_account_id, identity = subject
        if provider_account_id is None:
            provider_account_id, identity = await self._identify(connector, grant.access_token)
        if provider_account_id is None:
            raise ReauthRefused(Refusal.IDENTITY_UNKNOWN, **context)
        presented = connector.provider.describe_identity(provider_account_id, identity)
        if account.provider_account_id is not None and account.provider_account_id != provider_account_id:
            self._refuse_mismatch(account, provider_account_id)
            raise ReauthRefused(
                Refusal.IDENTITY_MISMATCH, presented=presented, expected=self._expected(account, connector), **context
            )

        write = credential_write(
            connector,
            grant,
            utcnow(),
            refresh_at_fraction=self.runtime.settings.refresh_at_fraction,
            due_listeners=self.runtime.tokens.due_listeners,
        )
        scopes = (grant.scope or "").replace(",", " ").split() or account.scopes.split()
        replaced: list[PendingRevocation] = []
        revocations = self.runtime.offboarding.revocations

        def queue_replaced(session: Any, secrets: TokenSecrets) -> None:
            replaced.append(revocations.pending_in(session, account.id, account.connector, "replaced", secrets))

        outcome = await in_vault_thread(
            self.runtime.vault.links.complete_flow,
            link,
            provider_account_id=provider_account_id,
            identity=identity,
            scopes=scopes,
            write=write,
            on_replaced=queue_replaced,
        )
        if outcome is ReauthorizationOutcome.ALREADY_COMPLETED:
            raise ReauthRefused(Refusal.FLOW_FINISHED, **context)
        if outcome is ReauthorizationOutcome.ACCOUNT_DISABLED:
            raise ReauthRefused(Refusal.ACCOUNT_DISABLED, **context)
        if outcome is ReauthorizationOutcome.IDENTITY_MISMATCH:  # another flow recorded a different account first
            self._refuse_mismatch(account, provider_account_id)
            fresh = await in_vault_thread(self.runtime.vault.accounts.get, account.id)
            raise ReauthRefused(
                Refusal.IDENTITY_MISMATCH, presented=presented, expected=self._expected(fresh, connector), **context
            )

        # This process serves agents too: drop what it cached about the account so the next call uses the new grant.
        self.runtime.executor.forget_account(account)
        await self.runtime.events.record(
            EventKind.REAUTHORIZED,
            account,
            purpose=link.purpose,
            previous_reason=link.reason,
            provider_account_id=provider_account_id,
        )
        for pending in replaced:  # the grant this reconnect replaced ends at the provider too
            await self.runtime.offboarding.end_replaced(account, pending)
        await self.runtime.elicitations.completed(account.display_name)
        if refreshless_reason(write):
            # Not a silent dead end: the operator is warned now, the user is told on the page and offered a
            # reconnect link ahead of expiry (accounts.list), and every listing says when it will stop working.
            await self.runtime.events.record(
                EventKind.REFRESH_TOKEN_MISSING,
                account,
                severity=Severity.WARNING,
                reason=NO_REFRESH_TOKEN,
                needs_user_at=write.access_expires_at.isoformat() if write.access_expires_at else None,
            )
            return Reconnected(account, connector, presented, link.purpose, write.access_expires_at)
        return Reconnected(account, connector, presented, link.purpose)

    def _check_issuer(self, connector: Connector, iss: str | None, context: dict[str, Any]) -> None:
        """RFC 9207 §2.4: a server that says it sends `iss` must send its own issuer; one that does not but sends
        it anyway must still send the right one. Stops a mix-up attack before any code is exchanged."""
        issuer = connector.spec.issuer
        if issuer is None or (iss is None and not connector.spec.authorization_response_iss):
            return
        if iss is None or not hmac.compare_digest(iss.encode(), issuer.encode()):
            self.log.warning(
                "reauthorization_issuer_mismatch", account=context["account"].display_name, issuer_present=iss is not None
            )
            raise ReauthRefused(Refusal.ISSUER_MISMATCH, **context)

    async def _verified_subject(
        self, connector: Connector, id_token: str | None, nonce: str, account: ConnectedAccount, context: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        if not id_token:
            self.log.warning("reauthorization_id_token_invalid", account=account.display_name, reason="missing")
            raise ReauthRefused(Refusal.ID_TOKEN_INVALID, error="missing", **context)
        try:
            claims = await self.id_tokens.verify(connector, id_token, nonce=nonce)
        except IdTokenRejected as rejected:
            self.log.warning("reauthorization_id_token_invalid", account=account.display_name, reason=rejected.reason)
            raise ReauthRefused(Refusal.ID_TOKEN_INVALID, error=rejected.reason, **context) from None
        identity = {
            key: claims[key] for key in ("sub", "name", "email", "preferred_username") if isinstance(claims.get(key), str)
        }
        return claims["sub"], identity

    async def _flow_for(self, state: str | None) -> tuple[MagicLink, ConnectedAccount, dict[str, Any]]:
        if not state:
            raise ReauthRefused(Refusal.STATE_MISSING)
        if len(state) > 128:
            raise ReauthRefused(Refusal.STATE_UNKNOWN)
        link = await in_vault_thread(self.runtime.vault.links.find_by_state, state)
        if link is None or link.flow_ciphertext is None or link.flow_key_id is None:
            raise ReauthRefused(Refusal.STATE_UNKNOWN)
        try:
            flow = self.runtime.vault.open("magic_link", link.id, FLOW_FIELD, Sealed(link.flow_key_id, link.flow_ciphertext))
        except (VaultIntegrityError, VaultKeyError):
            self.log.error("reauthorization_flow_unreadable", link_id=link.id)
            raise ReauthRefused(Refusal.STATE_UNKNOWN) from None
        account = await in_vault_thread(self.runtime.vault.accounts.get, link.account_id)
        return link, account, flow

    async def _identify(self, connector: Connector, access_token: str) -> tuple[str | None, dict[str, Any]]:
        """Ask the provider who the new token belongs to, through its health probe (GitHub: GET /user)."""
        probe = connector.spec.health_probe
        if probe is None:
            return None, {}
        pool = self.runtime.pools[connector.name]
        request = pool.client.build_request(
            probe.method,
            connector.api_url(probe.path),
            json=probe.body,
            headers={**connector.spec.api_headers, "Authorization": f"Bearer {access_token}"},
        )
        try:
            async with pool.connection() as client:
                with anyio.fail_after(self.runtime.settings.api_timeout_seconds):
                    streamed = await client.send(request, stream=True)
                    try:
                        response = await read_response_bounded(streamed, connector.max_response_bytes)
                    finally:
                        await streamed.aclose()
        except (TimeoutError, ResponseTooLarge, httpx2.HTTPError):
            return None, {}  # nothing is stored: the page says the account could not be identified
        if connector.provider.classify_api_response(response).verdict is not Verdict.OK:
            return None, {}
        return connector.provider.identity_from_probe(json_body(response))

    def _expected(self, account: ConnectedAccount, connector: Connector) -> str:
        if account.provider_account_id is None:
            return "the account recorded for it"
        return connector.provider.describe_identity(account.provider_account_id, account.provider_identity or {})

    def _refuse_mismatch(self, account: ConnectedAccount, presented_id: str) -> None:
        # A warning for the operator: someone completed a link with a different provider account. Not a vault
        # write, so a refused attempt leaves the vault exactly as it was.
        self.log.warning(
            "reauthorization_identity_mismatch",
            account=account.display_name,
            expected_provider_account_id=account.provider_account_id,
            presented_provider_account_id=presented_id,
        )
