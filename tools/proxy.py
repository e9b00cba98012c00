"""`<connector>.request`: one guarded request to any endpoint of a connector's API that no tool covers, for every
connector, built-in or declared.

It takes the standard path (`ProviderSession.send`): the caller's own account, a fresh token, refresh on expiry,
the provider's classification, retries only when repeating is safe (GET, HEAD, PUT, DELETE; a POST or PATCH that
fails ambiguously answers `outcome_unknown` and is never repeated). The path must stay under the connector's API
base URL (providers/proxy_paths.py) and the answer is cut at the size limit. Operators choose the methods per
connector (GRANTKEEPER_<NAME>_PROXY_METHODS, default GET and HEAD; `none` removes the tool).
"""

# No `from __future__ import annotations`: the signature of `request` names values of `proxy_tool`'s scope
# (the connector's methods and name), which only an annotation evaluated where it is written can see.
import json
from collections.abc import Iterator
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from providers.answers import send_raw
from providers.base import ApiCall
from providers.custom import DEFAULT_MAX_RESPONSE_BYTES, DeclaredProvider
from providers.proxy_paths import UnsafePath, checked_proxy_path
from server.execute import ProviderSession
from server.results import result_model
from server.settings import DEFAULT_PROXY_METHODS, ConfigError
from tools.custom import DeclaredCallOk
from tools.toolset import AccountLabel, Tool, Toolset, with_choices

IDEMPOTENT_METHODS = {"GET", "HEAD", "PUT", "DELETE"}  # RFC 9110 §9.2.2
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
MAX_BODY_BYTES = 1024 * 1024
MAX_QUERY_PARAMETERS = 50

QueryValue = str | int | float | bool
Query = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=128)], QueryValue | Annotated[list[QueryValue], Field(max_length=100)]]
    | None,
    Field(max_length=MAX_QUERY_PARAMETERS, description="query parameters; a list repeats the parameter"),
]


class ProxyCallOk(DeclaredCallOk):
    """The provider's answer to a proxied request, as it came, within the size limit."""


ProxyCallResult = result_model(ProxyCallOk)


def tools(toolset: Toolset) -> Iterator[Tool]:
    """`<connector>.request` for every connector whose operator allows it any method; after every other tool, so a
    declared tool named `request` is reported rather than shadowed."""
    settings = toolset.runtime.settings
    for name in sorted(toolset.runtime.connectors):
        configured = settings.provider(name).proxy_methods
        methods = list(DEFAULT_PROXY_METHODS) if configured is None else configured
        if methods:
            yield proxy_tool(toolset, name, methods)


def proxy_tool(toolset: Toolset, connector_name: str, methods: list[str]) -> Tool:
    connector = toolset.runtime.connectors[connector_name]
    canonical = f"{connector_name}.request"
    exposed = toolset.exposed(canonical)
    if exposed in toolset.registered:
        raise ConfigError(
            f"{canonical!r} would be exposed as {exposed!r}, which {toolset.registered[exposed]!r} already "
            f"uses; rename that tool, or set GRANTKEEPER_{connector_name.upper()}_PROXY_METHODS=none"
        )
    limit = connector.provider.declaration.max_response_bytes if isinstance(connector.provider, DeclaredProvider) else None
    limit = limit or DEFAULT_MAX_RESPONSE_BYTES
    display = connector.spec.display_name

    async def request(
        ctx: Context,
        method: Annotated[str, Field(description="HTTP method; the operator allows " + ", ".join(methods))],
        path: Annotated[
            str,
            Field(min_length=1, max_length=2048, description=f"path under the {display} API, e.g. /users/me (no query string)"),
        ],
        query: Query = None,
        body: Annotated[Any, Field(description="JSON body, for POST, PUT, PATCH or DELETE")] = None,
        account: AccountLabel = None,
    ) -> Annotated[CallToolResult, ProxyCallResult]:
        toolset = Toolset.of(ctx)
        current = toolset.runtime.connectors[connector_name]
        try:
            checked = checked_proxy_path(path, api_base_url=current.spec.api_base_url or "https://unset.invalid")
        except UnsafePath as unsafe:
            return toolset.refuse(connector_name, "unsafe_path", str(unsafe))
        if body is not None and method not in BODY_METHODS:
            return toolset.refuse(connector_name, "body_not_allowed", f"a {method} request carries no body")
        if body is not None and len(json.dumps(body)) > MAX_BODY_BYTES:
            return toolset.refuse(connector_name, "body_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
        # Read at most `limit` bytes of the answer and cut it there (the bounded read every provider call uses).
        call = ApiCall(
            method,
            checked,
            params=query or None,
            json=body,
            idempotent=method in IDEMPOTENT_METHODS,
            max_response_bytes=limit,
            cut_at_bound=True,
        )

        async def operation(api: ProviderSession) -> ProxyCallOk:
            return ProxyCallOk.from_answer(await send_raw(api, call))

        return await toolset.run(ctx, connector_name, operation, account=account)

    request.__name__ = request.__qualname__ = exposed.replace(".", "_")
    request.__doc__ = (
        f"Send one request to the {display} API for an endpoint no other {display} tool covers, as the caller's "
        f"connected account. Allowed methods: {', '.join(methods)}. The path stays under the API's base URL; the "
        "answer is the provider's HTTP status and body (cut when large). A POST or PATCH that fails ambiguously is "
        "not repeated and answers outcome_unknown: check before trying again."
    )
    writes = [m for m in methods if m not in ("GET", "HEAD")]
    return Tool(
        canonical,
        with_choices(request, "method", methods),
        title=f"{display} API request",
        read_only=not writes,
        destructive=bool(writes),
        idempotent=all(m in IDEMPOTENT_METHODS for m in methods),
    )
