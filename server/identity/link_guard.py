"""Who may complete a connect or reconnect link. With sign-in configured: only the signed-in person the link was
made for (its org and user), for a first-time connect too. Without sign-in the opener cannot be known: over
stdio (one local user, pages on loopback) links work as before; over HTTP a first-time connect link made by an
agent is refused unless the operator accepts the risk (GRANTKEEPER_ALLOW_UNVERIFIED_CONNECT_LINKS) — otherwise
an agent could send its own link to someone else and then act as them (docs/remote-hosts.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from server.identity.sessions import SignedIn
from server.settings import Settings
from server.vault import ConnectedAccount
from server.vault.models import MagicLink


class LinkDecision(StrEnum):
    PROCEED = "proceed"
    SIGN_IN = "sign_in"  # ask the browser to sign in first
    WRONG_PERSON = "wrong_person"
    UNVERIFIED_REFUSED = "admin_action_required"


@dataclass(frozen=True)
class LinkGuard:
    settings: Settings
    remote: bool  # serving the HTTP transports: the link may be opened by anyone on the network

    def decide(self, link: MagicLink, account: ConnectedAccount, signed_in: SignedIn | None) -> LinkDecision:
        if self.settings.sign_in_enabled:
            if signed_in is None:
                return LinkDecision.SIGN_IN
            person = signed_in.person
            if (person.org, person.user) != (account.org, account.user):
                return LinkDecision.WRONG_PERSON
            return LinkDecision.PROCEED
        first_connect_by_agent = link.purpose == "connect" and link.issued_by != "operator"
        if self.remote and first_connect_by_agent and not self.settings.allow_unverified_connect_links:
            return LinkDecision.UNVERIFIED_REFUSED
        return LinkDecision.PROCEED
