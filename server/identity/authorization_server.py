"""grantkeeper as the OAuth 2.1 authorization server of its own MCP endpoints, on the MCP SDK's auth server
(`OAuthAuthorizationServerProvider`): /authorize hands over to the OIDC sign-in and a consent page
(server/identity/consent.py); codes, access and refresh tokens are stored only as SHA-256 hashes; the RFC 8707
`resource` is bound into every code and token (its audience), must be this server's MCP URL, and a /token request
naming another is refused with `invalid_target`; access tokens are
short-lived; refresh tokens rotate, and presenting a spent one revokes the whole grant (RFC 9700 §4.14.2).

Clients are registered by Client ID Metadata Document (a URL client_id, server/identity/client_documents.py) or by
RFC 7591 dynamic registration (stored in `mcp_client`, secret sealed)."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    TokenError,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from sqlalchemy import ColumnElement, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from server.identity.client_documents import ClientDocumentError, ClientDocuments, looks_like_document_url
from server.identity.models import McpAuthorization, McpClient, McpGrant, McpToken
from server.monitoring.logging import get_logger
from server.settings import Settings
from server.vault import Vault
from server.vault.crypto import Sealed, hash_token, new_secret_token
from server.vault.models import utcnow
from server.vault.threads import in_vault_thread

TOOLS_SCOPE = "tools"
CONSENT_PATH = "/oauth/consent"
REQUEST_TTL = timedelta(minutes=10)
CODE_TTL = timedelta(minutes=1)
ACCESS_PREFIX = "gka_"  # tells our tokens from API keys (gk_) and from JWTs at a glance
REFRESH_PREFIX = "gkr_"
LAST_USED_EVERY = timedelta(seconds=60)

# The `resource` values (RFC 8707) of the /token request being handled. The SDK's token handler parses them but hands
# them to the provider only for the jwt-bearer grant, so `TokenResourceGate` (server/identity/mcp_auth.py) reads the
# form in front of it and leaves them here for the code and refresh exchanges. None: not a /token request.
requested_resources: ContextVar[tuple[str, ...] | None] = ContextVar("requested_resources", default=None)


def mcp_resource_url(settings: Settings) -> str:
    return settings.public_url + "/mcp"


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def check_requested_resource(bound: str | None) -> None:
    """A token request may name a resource (RFC 8707 §2.2); if it does, every one must be the resource the code or
    refresh token was bound to at /authorize, else `invalid_target` and nothing is issued.

    Checked after the SDK has authenticated the client and verified PKCE and before the code or refresh token is
    spent, so a mismatch leaves the code usable: RFC 8707 makes `invalid_target` an error about the request, not
    the grant, and RFC 6749 §4.1.2 burns a code on use, not on a refused request. Only the holder of the PKCE
    verifier gets this far, and burning its code would only turn a client's mistake into a fresh sign-in."""
    for resource in requested_resources.get() or ():
        if bound is None or resource.rstrip("/") != bound.rstrip("/"):
            raise TokenError("invalid_target", "resource is not the one this grant was authorized for")


class GrantkeeperAuthorizationServer(OAuthAuthorizationServerProvider[AuthorizationCode, RefreshToken, AccessToken]):
    """The provider the SDK's /authorize, /token, /register and /revoke handlers call. The SDK's default answers
    the one grant it does not offer (SEP-990 identity assertions) with `unsupported_grant_type`."""

    def __init__(self, vault: Vault, settings: Settings, documents: ClientDocuments):
        self.vault = vault
        self.engine = vault.engine
        self.settings = settings
        self.documents = documents
        self.log = get_logger("grantkeeper.authorization_server")
        self.reuse_detections = 0

    @property
    def resource(self) -> str:
        return mcp_resource_url(self.settings)

    # ---- clients -------------------------------------------------------------------------------------
    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if looks_like_document_url(client_id):
            try:
                return await self.documents.client(client_id)
            except ClientDocumentError as refused:
                self.log.warning("client_document_refused", reason=str(refused))
                return None
        if len(client_id) > 64:
            return None
        row = await in_vault_thread(self._client_row, client_id)
        if row is None:
            return None
        secret = None
        if row.secret_key_id and row.secret_ciphertext:
            secret = self.vault.open("mcp_client", row.client_id, "secret", Sealed(row.secret_key_id, row.secret_ciphertext))[
                "secret"
            ]
        return OAuthClientInformationFull.model_validate(
            {**row.client_metadata, "client_id": row.client_id, "client_secret": secret}
        )

    def _client_row(self, client_id: str) -> McpClient | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(McpClient, client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        metadata = client_info.model_dump(mode="json", exclude_none=True, exclude={"client_secret", "client_id"})
        row = McpClient(client_id=client_info.client_id or new_secret_token(), client_metadata=metadata)
        if client_info.client_secret:
            sealed = self.vault.seal("mcp_client", row.client_id, "secret", {"secret": client_info.client_secret})
            row.secret_key_id, row.secret_ciphertext = sealed.key_id, sealed.blob
        await in_vault_thread(self._insert, row)
        self.log.info("mcp_client_registered", client_id=row.client_id, client_name=client_info.client_name)

    def _insert(self, *rows: McpClient | McpAuthorization) -> None:
        with Session(self.engine, expire_on_commit=False) as session:
            for row in rows:
                session.add(row)
            session.commit()

    # ---- /authorize -------------------------------------------------------------------------------
    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        if params.resource is not None and params.resource.rstrip("/") != self.resource:
            raise AuthorizeError("invalid_target", "resource is not this server's MCP endpoint")
        scopes = params.scopes or [TOOLS_SCOPE]
        if set(scopes) - {TOOLS_SCOPE}:
            raise AuthorizeError("invalid_scope", f"the only scope is '{TOOLS_SCOPE}'")
        request_token = new_secret_token()
        row = McpAuthorization(
            request_hash=hash_token(request_token),
            client_id=client.client_id or "",
            params={
                "state": params.state,
                "scopes": scopes,
                "code_challenge": params.code_challenge,
                "redirect_uri": str(params.redirect_uri),
                "redirect_uri_provided_explicitly": params.redirect_uri_provided_explicitly,
                "resource": self.resource,
                "client_name": client.client_name,
            },
            expires_at=utcnow() + REQUEST_TTL,
        )
        await in_vault_thread(self._insert, row)
        return f"{self.settings.public_url}{CONSENT_PATH}?request={request_token}"

    def pending_request(self, request_token: str) -> McpAuthorization | None:
        if not request_token or len(request_token) > 128:
            return None
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.exec(select(McpAuthorization).where(McpAuthorization.request_hash == hash_token(request_token))).first()
        if row is None or row.decided_at is not None or row.expires_at <= utcnow():
            return None
        return row

    def decide(self, request_token: str, *, org: str, user: str, allow: bool) -> tuple[McpAuthorization, str | None] | None:
        """Record the person's answer once; returns the request and, when allowed, the new code (only copy)."""
        code = new_secret_token() if allow else None
        now = utcnow()
        with Session(self.engine, expire_on_commit=False) as session:
            decided = session.exec(
                update(McpAuthorization)
                .where(
                    col(McpAuthorization.request_hash) == hash_token(request_token),
                    col(McpAuthorization.decided_at).is_(None),
                    col(McpAuthorization.expires_at) > now,
                )
                .values(
                    decided_at=now, org=org, user=user, code_hash=hash_token(code) if code else None, expires_at=now + CODE_TTL
                )
            )
            session.commit()
            if decided.rowcount != 1:
                return None
            row = session.exec(select(McpAuthorization).where(McpAuthorization.request_hash == hash_token(request_token))).one()
        return row, code

    # ---- codes ------------------------------------------------------------------------------------
    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        if not authorization_code or len(authorization_code) > 128:
            return None
        row = await in_vault_thread(self._code_row, authorization_code)
        if row is None or row.client_id != client.client_id or row.used_at is not None or row.org is None:
            return None
        params = row.params
        return AuthorizationCode(
            code=authorization_code,
            scopes=params["scopes"],
            expires_at=_epoch(row.expires_at),
            client_id=row.client_id,
            code_challenge=params["code_challenge"],
            redirect_uri=params["redirect_uri"],
            redirect_uri_provided_explicitly=params["redirect_uri_provided_explicitly"],
            resource=params["resource"],
            subject=f"{row.org}/{row.user}",
        )

    def _code_row(self, code: str) -> McpAuthorization | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.exec(select(McpAuthorization).where(McpAuthorization.code_hash == hash_token(code))).first()

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        check_requested_resource(authorization_code.resource)
        return await in_vault_thread(self._exchange_code, client, authorization_code)

    def _exchange_code(self, client: OAuthClientInformationFull, code: AuthorizationCode) -> OAuthToken:
        now = utcnow()
        with Session(self.engine, expire_on_commit=False) as session:
            spent = session.exec(
                update(McpAuthorization)
                .where(col(McpAuthorization.code_hash) == hash_token(code.code), col(McpAuthorization.used_at).is_(None))
                .values(used_at=now)
            )
            if spent.rowcount != 1:
                raise TokenError("invalid_grant", "authorization code was already used")
            row = session.exec(select(McpAuthorization).where(McpAuthorization.code_hash == hash_token(code.code))).one()
            grant = McpGrant(
                client_id=row.client_id,
                client_name=(row.params.get("client_name") or "")[:200] or None,
                org=row.org or "",
                user=row.user or "",
                scopes=" ".join(code.scopes),
                resource=code.resource,
                created_at=now,
                last_used_at=now,
            )
            session.add(grant)
            session.flush()
            token = self._issue(session, grant, now)
            session.commit()
        self.log.info("mcp_grant_created", grant_id=grant.id, client_id=grant.client_id, org=grant.org, user=grant.user)
        return token

    def _issue(self, session: Session, grant: McpGrant, now: datetime) -> OAuthToken:
        access, refresh = ACCESS_PREFIX + new_secret_token(), REFRESH_PREFIX + new_secret_token()
        access_ttl = self.settings.mcp_access_token_seconds
        session.add(
            McpToken(
                token_hash=hash_token(access),
                grant_id=grant.id,
                kind="access",
                created_at=now,
                expires_at=now + timedelta(seconds=access_ttl),
            )
        )
        session.add(
            McpToken(
                token_hash=hash_token(refresh),
                grant_id=grant.id,
                kind="refresh",
                created_at=now,
                expires_at=now + timedelta(seconds=self.settings.mcp_refresh_token_seconds),
            )
        )
        return OAuthToken(access_token=access, expires_in=access_ttl, scope=grant.scopes, refresh_token=refresh)

    # ---- refresh ----------------------------------------------------------------------------------
    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> RefreshToken | None:
        return await in_vault_thread(self._load_refresh, client, refresh_token)

    def _load_refresh(self, client: OAuthClientInformationFull, refresh_token: str) -> RefreshToken | None:
        if not refresh_token.startswith(REFRESH_PREFIX) or len(refresh_token) > 128:
            return None
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.get(McpToken, hash_token(refresh_token))
            if row is None or row.kind != "refresh":
                return None
            grant = session.get(McpGrant, row.grant_id)
        if grant is None or grant.revoked_at is not None or grant.client_id != client.client_id:
            return None
        if row.used_at is not None:
            self._revoke_for_reuse(grant)
            return None
        return RefreshToken(
            token=refresh_token,
            client_id=grant.client_id,
            scopes=grant.scopes.split(),
            expires_at=_epoch(row.expires_at),
            resource=grant.resource,
            subject=f"{grant.org}/{grant.user}",
        )

    def _revoke_for_reuse(self, grant: McpGrant) -> None:
        """A spent refresh token came back: someone holds a copy. End the grant for everyone (RFC 9700)."""
        self.reuse_detections += 1
        self.revoke_grants(grant_id=grant.id, reason="refresh_token_reused")
        self.log.warning(
            "mcp_refresh_token_reused",
            grant_id=grant.id,
            client_id=grant.client_id,
            org=grant.org,
            user=grant.user,
            notice="The MCP client session was revoked; the person must sign in again.",
        )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        check_requested_resource(refresh_token.resource)
        return await in_vault_thread(self._rotate, refresh_token)

    def _rotate(self, refresh_token: RefreshToken) -> OAuthToken:
        now = utcnow()
        with Session(self.engine, expire_on_commit=False) as session:
            spent = session.exec(
                update(McpToken)
                .where(col(McpToken.token_hash) == hash_token(refresh_token.token), col(McpToken.used_at).is_(None))
                .values(used_at=now)
            )
            row = session.get(McpToken, hash_token(refresh_token.token))
            grant = session.get(McpGrant, row.grant_id) if row else None
            if spent.rowcount != 1 or grant is None:
                session.rollback()
                if grant is not None:
                    self._revoke_for_reuse(grant)  # two presentations raced: the loser is a reuse
                raise TokenError("invalid_grant", "refresh token was already used")
            token = self._issue(session, grant, now)
            session.commit()
        return token

    # ---- access tokens --------------------------------------------------------------------------------
    async def load_access_token(self, token: str) -> AccessToken | None:
        return await in_vault_thread(self._load_access, token)

    def _load_access(self, token: str) -> AccessToken | None:
        if not token.startswith(ACCESS_PREFIX) or len(token) > 128:
            return None
        now = utcnow()
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.get(McpToken, hash_token(token))
            if row is None or row.kind != "access" or row.expires_at <= now:
                return None
            grant = session.get(McpGrant, row.grant_id)
            if grant is None or grant.revoked_at is not None:
                return None
            if grant.last_used_at is None or now - grant.last_used_at > LAST_USED_EVERY:
                session.exec(update(McpGrant).where(col(McpGrant.id) == grant.id).values(last_used_at=now))
                session.commit()
        return AccessToken(
            token=token,
            client_id=grant.client_id,
            scopes=grant.scopes.split(),
            expires_at=_epoch(row.expires_at),
            resource=grant.resource,
            subject=f"{grant.org}/{grant.user}",
            claims={"org": grant.org, "user": grant.user, "grant_id": grant.id},
        )

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        row = await in_vault_thread(self._token_row, token.token)
        if row is not None:
            await in_vault_thread(self.revoke_grants, grant_id=row.grant_id, reason="revoked_by_client")

    def _token_row(self, token: str) -> McpToken | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(McpToken, hash_token(token))

    def revoke_grants(self, **which: Any) -> int:
        return revoke_grants(self.engine, **which)


# ---- operators (`grantkeeper sessions`) -------------------------------------------------------------------
def list_grants(engine: Engine, *, include_revoked: bool = False) -> list[McpGrant]:
    with Session(engine, expire_on_commit=False) as session:
        rows = list(session.exec(select(McpGrant).order_by(col(McpGrant.created_at))))
    return rows if include_revoked else [row for row in rows if row.revoked_at is None]


def revoke_grants(
    engine: Engine,
    *,
    grant_id: str | None = None,
    org: str | None = None,
    user: str | None = None,
    reason: str = "revoked_by_operator",
) -> int:
    """Revoke one MCP client session by id, or every live one of org (and user). Its tokens stop working at once."""
    conditions: list[ColumnElement[bool]] = [col(McpGrant.revoked_at).is_(None)]
    if grant_id:
        conditions.append(col(McpGrant.id) == grant_id)
    if org:
        conditions.append(col(McpGrant.org) == org)
    if user:
        conditions.append(col(McpGrant.user) == user)
    if len(conditions) == 1:
        raise ValueError("name a grant id, or an org (and user)")
    with Session(engine) as session:
        result = session.exec(update(McpGrant).where(*conditions).values(revoked_at=utcnow(), revoked_reason=reason))
        session.commit()
        return result.rowcount
