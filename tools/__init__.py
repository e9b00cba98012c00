"""The tools agents see. Each is a thin typed function: validated arguments in, a structured result out.

Canonical names are dotted (`slack.read_channel`); over MCP they are exposed as `slack_read_channel` unless
GRANTKEEPER_TOOL_NAMES=dotted, because Claude Desktop and the Anthropic API reject names with dots.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import UrlElicitationRequiredError
from mcp.types import CallToolResult, ElicitRequestURLParams, ToolAnnotations
from pydantic import Field

from server.execute import Caller, ProviderSession
from server.monitoring import tracing
from server.results import Ok, ReauthRequired, reason_of, result_model, to_call_result
from server.runtime import Runtime
from server.vault.models import LABEL_PATTERN

# The protocol version that has notifications/elicitation/complete (2026-07-28 dropped it).
ELICITATION_COMPLETE_VERSION = "2025-11-25"


def exposed_name(canonical: str, naming: Literal["underscore", "dotted"]) -> str:
    return canonical if naming == "dotted" else canonical.replace(".", "_")


class UnauthenticatedCaller(PermissionError):
    pass


AccountLabel = Annotated[
    str | None,
    Field(
        default=None,
        pattern=f"^{LABEL_PATTERN}$",
        description="which of the caller's accounts for this service, by its label (see accounts_list), e.g. 'work'; "
        "omitted: the default account",
    ),
]
# The `account` argument of the call being run. Every tool gets the argument from `Toolset.tool`, so a tool added
# anywhere (declared providers, proxies) takes it without knowing; `Toolset.run` reads it here.
_requested_label: ContextVar[str | None] = ContextVar("requested_label", default=None)


def with_account_argument(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with an optional keyword argument `account` (the account's label) added to its signature."""
    signature = inspect.signature(fn, eval_str=True)
    if "account" in signature.parameters:
        raise TypeError(f"{fn.__name__} already has an `account` parameter")
    parameters = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    label = inspect.Parameter("account", inspect.Parameter.KEYWORD_ONLY, annotation=AccountLabel, default=None)
    # Keyword-only, before the context parameter, which stays last.
    parameters = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD else p
        for p in parameters
    ]
    parameters.insert(next((i for i, p in enumerate(parameters) if p.name == "ctx"), len(parameters)), label)

    @functools.wraps(fn)
    async def labelled(*args: Any, account: str | None = None, **kwargs: Any) -> Any:
        token = _requested_label.set(account)
        try:
            return await fn(*args, **kwargs)
        finally:
            _requested_label.reset(token)

    labelled.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    labelled.__annotations__ = {**getattr(fn, "__annotations__", {}), "account": AccountLabel}
    del labelled.__wrapped__  # the MCP server must read the new signature, not the wrapped one
    return labelled


@dataclass
class Toolset:
    server: MCPServer
    runtime: Runtime
    # Over HTTP a caller is whoever its API key names; only stdio falls back to the configured identity.
    stdio_identity: bool = True
    registered: dict[str, str] = field(default_factory=dict)  # exposed name -> canonical name

    def tool(
        self,
        name: str,
        *,
        title: str,
        ok: type[Ok],
        read_only: bool,
        destructive: bool = False,
        idempotent: bool = False,
        per_account: bool = True,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register `fn` as a tool. `per_account`: it acts on one account and takes the optional `account` label."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            fn.__annotations__["return"] = Annotated[CallToolResult, result_model(ok)]
            if per_account:
                fn = with_account_argument(fn)
            exposed = exposed_name(name, self.runtime.settings.tool_names)
            annotations = ToolAnnotations(
                title=title,
                read_only_hint=read_only,
                destructive_hint=destructive,
                idempotent_hint=idempotent,
                open_world_hint=True,
            )
            self.server.tool(name=exposed, title=title, description=fn.__doc__, annotations=annotations)(fn)
            self.registered[exposed] = name
            return fn

        return register

    def caller(self, ctx: Context | None) -> Caller:
        token = get_access_token()
        if token is not None:
            claims = token.claims or {}
            return Caller(str(claims["org"]), str(claims["user"]))
        if not self.stdio_identity:
            raise UnauthenticatedCaller("no authenticated caller")
        return self.runtime.stdio_caller()

    def via(self) -> str:
        """How the caller came in, for the audit trail: the API key's id, or stdio."""
        token = get_access_token()
        return f"key:{(token.claims or {}).get('key_id', '?')}" if token is not None else "stdio"

    async def run(
        self, ctx: Context | None, connector: str, operation: Callable[[ProviderSession], Awaitable[Ok]], *, tool: str
    ) -> CallToolResult:
        started = time.perf_counter()
        caller, label = self.caller(ctx), requested_label()
        with tracing.span("tool_call", call=True, tool=tool, connector=connector) as span:
            result = await self.runtime.executor.run(caller, connector, operation, label=label)
            tracing.annotate(span, status=result.status, reason=reason_of(result))
        status, elapsed = result.status, time.perf_counter() - started
        self.runtime.metrics.record_tool_call(tool, status, elapsed)
        # The audit row names the call, never its arguments or its answer.
        target = f"{caller.org}/{caller.user}/{connector}" + (f"/{label}" if label and label != "default" else "")
        await self.runtime.audit.record_tool_call(
            f"{caller.org}/{caller.user}",
            target=target,
            status=status,
            duration_ms=round(elapsed * 1000),
            tool=tool,
            via=self.via(),
        )
        if isinstance(result, ReauthRequired) and declares_url_elicitation(ctx):
            elicitation = url_elicitation(result)
            session = ctx.session if ctx is not None else None
            if getattr(session, "protocol_version", None) == ELICITATION_COMPLETE_VERSION:
                # Told with notifications/elicitation/complete when the owner completes the link.
                self.runtime.elicitations.watch(result.account, elicitation.elicitations[0].elicitation_id, session)
            raise elicitation
        return to_call_result(result)


def requested_label() -> str | None:
    """The `account` argument of the tool call being run (None: the default account)."""
    return _requested_label.get()


def declares_url_elicitation(ctx: Context | None) -> bool:
    """Whether the client said it can open URLs for the user (MCP 2025-11-25 URL-mode elicitation)."""
    try:
        capabilities = ctx.client_capabilities if ctx is not None else None
    except (LookupError, AttributeError, ValueError):  # no request context (a direct call)
        return False
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and elicitation.url is not None


def url_elicitation(result: ReauthRequired) -> UrlElicitationRequiredError:
    """The JSON-RPC error -32042 carrying the magic link, for clients that open URLs themselves."""
    message = (
        f"{result.connector} needs the account owner: open the link to reconnect {result.account} "
        f"({result.reason}), then call the tool again. The link works once and expires "
        f"{result.link_expires_at:%Y-%m-%d %H:%M} UTC."
    )
    return UrlElicitationRequiredError(
        [
            ElicitRequestURLParams(
                mode="url", message=message, url=result.magic_link, elicitation_id=result._link_id or f"reauth-{result.connector}"
            )
        ],
        message=f"Reconnecting {result.connector} requires the user",
    )


def register_all(toolset: Toolset) -> None:
    from tools import accounts, github, google, slack, zendesk

    for module in (slack, github, google, zendesk, accounts):
        module.register(toolset)

    from tools import custom  # tools of providers declared in configuration, after the built-in names

    custom.register(toolset)

    from tools import proxy  # `<connector>.request` for every connector, after every named tool

    proxy.register(toolset)
