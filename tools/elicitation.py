"""A magic link as a URL-mode elicitation (MCP 2025-11-25), for clients that open URLs for their user."""

from __future__ import annotations

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import UrlElicitationRequiredError
from mcp.types import ElicitRequestURLParams

from server.results import ReauthRequired

# The protocol version that has notifications/elicitation/complete (2026-07-28 dropped it).
ELICITATION_COMPLETE_VERSION = "2025-11-25"


def declares_url_elicitation(ctx: Context) -> bool:
    """Whether the client said it can open URLs for the user."""
    try:
        capabilities = ctx.client_capabilities
    except (LookupError, AttributeError, ValueError):  # no request context (a direct call)
        return False
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and elicitation.url is not None


def elicitation_id(result: ReauthRequired) -> str:
    return result._link_id or f"reauth-{result.connector}"


def url_elicitation(result: ReauthRequired) -> UrlElicitationRequiredError:
    """The JSON-RPC error -32042 carrying the magic link."""
    message = (
        f"{result.connector} needs the account owner: open the link to reconnect {result.account} "
        f"({result.reason}), then call the tool again. The link works once and expires "
        f"{result.link_expires_at:%Y-%m-%d %H:%M} UTC."
    )
    return UrlElicitationRequiredError(
        [ElicitRequestURLParams(mode="url", message=message, url=result.magic_link, elicitation_id=elicitation_id(result))],
        message=f"Reconnecting {result.connector} requires the user",
    )
