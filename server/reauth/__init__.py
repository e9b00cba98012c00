"""Re-authorization: magic links that bring a connected account back (or connect a new one) through the
provider's own consent page, for the same provider account only."""

from server.reauth.flow import FlowStarted, ReauthFlow, Reconnected
from server.reauth.links import LinkView, ReauthRefused, Refusal

__all__ = ["FlowStarted", "LinkView", "ReauthFlow", "ReauthRefused", "Reconnected", "Refusal"]
