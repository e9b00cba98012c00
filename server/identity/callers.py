"""Who is calling /mcp and /sse: one TokenVerifier for the SDK's bearer middleware that accepts an API key
(server/auth.py) or, depending on GRANTKEEPER_MCP_AUTHORIZATION, an access token from grantkeeper's own
authorization server or a JWT from the organisation's. Every one maps to org/user the same way."""

from __future__ import annotations

from mcp.server.auth.provider import AccessToken, TokenVerifier

from server.auth import KEY_PREFIX, ApiKeyVerifier
from server.identity.authorization_server import GrantkeeperAuthorizationServer
from server.identity.resource_server import ExternalTokenVerifier

MAX_BEARER_LENGTH = 16 * 1024


class CallerVerifier(TokenVerifier):
    def __init__(
        self,
        api_keys: ApiKeyVerifier,
        *,
        authorization_server: GrantkeeperAuthorizationServer | None = None,
        external: ExternalTokenVerifier | None = None,
        resource: str,
    ):
        self.api_keys = api_keys
        self.authorization_server = authorization_server
        self.external = external
        self.resource = resource

    async def verify_token(self, token: str) -> AccessToken | None:
        if not token or len(token) > MAX_BEARER_LENGTH:
            return None
        if token.startswith(KEY_PREFIX):
            return await self.api_keys.verify_token(token)
        if self.authorization_server is not None:
            access = await self.authorization_server.load_access_token(token)
            # RFC 8707: a token bound to another resource is no good here, whoever issued it.
            if access is not None and (access.resource or "").rstrip("/") == self.resource:
                return access
            return None
        if self.external is not None:
            return await self.external.verify_token(token)
        return None
