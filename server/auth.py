"""API keys for HTTP callers: each key names one identity (org/user), is shown once, and is stored as a hash.

The MCP SDK's bearer middleware asks `ApiKeyVerifier` (through server/identity/callers.py) about every request on
/mcp and /sse; a missing, unknown or revoked key gets 401 before any tool runs. Tools then act for the key's
identity only (`Toolset.caller`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
from mcp.server.auth.provider import AccessToken, TokenVerifier

from server.vault import Vault
from server.vault.crypto import new_secret_token
from server.vault.models import ApiKey

KEY_PREFIX = "gk_"
SHOWN_PREFIX_LENGTH = 10  # "gk_" and 7 characters: enough to tell keys apart in a listing, useless to an attacker
MAX_KEY_LENGTH = 128
TOOLS_SCOPE = "tools"


@dataclass(frozen=True)
class IssuedKey:
    key: str = field(repr=False)
    record: ApiKey


def create_api_key(vault: Vault, *, org: str, user: str, description: str | None = None, admin: bool = False) -> IssuedKey:
    """A new key for org/user. The returned `key` is the only copy; the vault keeps its SHA-256. `admin`: the key
    may also use the operator's console (/dashboard), for headless use."""
    key = KEY_PREFIX + new_secret_token()
    record = vault.api_keys.create(
        key=key, prefix=key[:SHOWN_PREFIX_LENGTH], org=org, user=user, description=description, admin=admin
    )
    return IssuedKey(key, record)


class ApiKeyVerifier(TokenVerifier):
    def __init__(self, vault: Vault):
        self.vault = vault

    async def verify_token(self, token: str) -> AccessToken | None:
        if not token.startswith(KEY_PREFIX) or len(token) > MAX_KEY_LENGTH:
            return None
        record = await anyio.to_thread.run_sync(self.vault.api_keys.find, token)
        if record is None:
            return None
        # client_id + subject identify the principal: the SDK refuses to let one key use another key's session.
        return AccessToken(
            token=token,
            client_id=f"grantkeeper-key:{record.id}",
            scopes=[TOOLS_SCOPE],
            subject=f"{record.org}/{record.user}",
            claims={"org": record.org, "user": record.user, "key_id": record.id, "admin": bool(record.admin)},
        )
