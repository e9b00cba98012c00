"""Which tools a server offers, in the order their names are claimed: the built-in tools, the accounts tools, the
operations of declared providers, then `<connector>.request` for every connector."""

from __future__ import annotations

from tools import accounts, custom, github, google, proxy, slack, zendesk
from tools.toolset import Toolset

BUILTIN = [*slack.TOOLS, *github.TOOLS, *google.TOOLS, *zendesk.TOOLS]


def register_all(toolset: Toolset) -> None:
    for tool in [*BUILTIN, *accounts.tools(sorted(toolset.runtime.connectors))]:
        toolset.add(tool)
    # Each later group checks its names against those already taken, so it is built once they are.
    for tool in custom.tools(toolset):
        toolset.add(tool)
    for tool in proxy.tools(toolset):
        toolset.add(tool)
