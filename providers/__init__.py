"""Provider knowledge: specs, response classifiers and API operations, one module per SaaS provider."""

from __future__ import annotations

from providers import github, google, slack, zendesk
from providers.base import Provider, ProviderSpec

BUILTIN: dict[str, Provider] = {p.spec.name: p for p in (slack.PROVIDER, github.PROVIDER, google.PROVIDER, zendesk.PROVIDER)}


def builtin(name: str) -> Provider:
    try:
        return BUILTIN[name]
    except KeyError:
        raise LookupError(f"unknown connector {name!r}; known: {', '.join(sorted(BUILTIN))}") from None


__all__ = ["BUILTIN", "Provider", "ProviderSpec", "builtin"]
