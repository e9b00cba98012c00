"""What every tool shares: a tool as data (`Tool`), the registry that exposes it (`Toolset`), and the one path a
call takes — caller, account, executor, audit row — and the one place it is counted (`Toolset.call`).

    TOOLS = [Tool("slack.read_channel", read_channel, title="Read a Slack channel", read_only=True, idempotent=True)]

    async def read_channel(ctx: Context, channel: ChannelId, account: AccountLabel = None) -> Annotated[...]:
        return await Toolset.of(ctx).run(ctx, "slack", operation, account=account)
"""

from __future__ import annotations

import inspect
import time
import typing
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.exceptions import UrlElicitationRequiredError
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field, ValidationError

from server.execute import Caller, ProviderSession
from server.monitoring import tracing
from server.results import InvalidInput, Ok, ReauthRequired, reason_of, to_call_result
from server.runtime import Runtime
from server.vault.models import LABEL_PATTERN
from tools.elicitation import ELICITATION_COMPLETE_VERSION, declares_url_elicitation, elicitation_id, url_elicitation

MAX_ARGUMENT_PROBLEMS = 5

AccountLabel = Annotated[
    str | None,
    Field(
        pattern=f"^{LABEL_PATTERN}$",
        description="which of the caller's accounts for this service, by its label (see accounts_list), e.g. 'work'; "
        "omitted: the default account",
    ),
]

ToolFunction = Callable[..., Awaitable[CallToolResult]]


def exposed_name(canonical: str, naming: Literal["underscore", "dotted"]) -> str:
    return canonical if naming == "dotted" else canonical.replace(".", "_")


class UnauthenticatedCaller(PermissionError):
    pass


@dataclass(frozen=True)
class Tool:
    """A tool as data: its canonical (dotted) name, given here once, the typed function, and its promises.

    `per_account`: it acts on one of the caller's accounts, so its function takes `account: AccountLabel = None`.
    The description is the function's docstring unless given (tools built from declarations)."""

    name: str
    fn: ToolFunction
    title: str
    read_only: bool
    destructive: bool = False
    idempotent: bool = False
    per_account: bool = True
    description: str | None = None


@dataclass
class ToolCall:
    """The call being run, as the recording needs it: set by `Toolset.call`, read by `Toolset.run`."""

    tool: str
    toolset: Toolset
    refused: bool = False  # refused for its arguments before it ran: its latency is not the tool's


_current_call: ContextVar[ToolCall | None] = ContextVar("current_tool_call", default=None)


def with_signature(fn: ToolFunction, signature: inspect.Signature, annotations: dict[str, Any]) -> ToolFunction:
    """`fn` presenting `signature` to the MCP server, which derives the input schema from it: for tools whose
    parameters come from configuration (declared operations, the proxy's allowed methods)."""
    # inspect's documented override; typeshed declares no `__signature__` on functions.
    fn.__signature__ = signature  # type: ignore[attr-defined]
    fn.__annotations__ = annotations  # the SDK finds the context parameter here
    return fn


def with_choices(fn: ToolFunction, parameter: str, choices: list[str]) -> ToolFunction:
    """`fn` (unchanged) behind a signature whose `parameter` may only be one of `choices`, an enum in the input
    schema: for choices known once configuration is read (the connectors, the allowed methods)."""
    signature = inspect.signature(fn, eval_str=True)
    hints = typing.get_type_hints(fn, include_extras=True)
    declared = hints[parameter]
    metadata = typing.get_args(declared)[1:] if typing.get_origin(declared) is Annotated else ()
    choice = Annotated[(Literal.__getitem__(tuple(choices)), *metadata)] if metadata else Literal.__getitem__(tuple(choices))
    parameters = [p.replace(annotation=choice) if p.name == parameter else p for p in signature.parameters.values()]

    async def chosen(*args: Any, **kwargs: Any) -> CallToolResult:
        return await fn(*args, **kwargs)

    chosen.__name__, chosen.__qualname__, chosen.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    return with_signature(chosen, signature.replace(parameters=parameters), {**hints, parameter: choice})


@dataclass
class Toolset:
    """The tools of one server and the runtime they act through."""

    server: MCPServer  # server/app.py's ToolServer, which sends every call through `call`
    runtime: Runtime
    # Over HTTP a caller is whoever its API key names; only stdio falls back to the configured identity.
    stdio_identity: bool = True
    registered: dict[str, str] = field(default_factory=dict)  # exposed name -> canonical name

    @staticmethod
    def of(ctx: Context) -> Toolset:
        """The toolset serving the call `ctx` belongs to."""
        call = _current_call.get()
        if call is not None:  # the usual way in: cheaper than the context's server, a pydantic private attribute
            return call.toolset
        toolset = getattr(ctx.mcp_server, "toolset", None)  # set by server/app.py install_tools
        if not isinstance(toolset, Toolset):
            raise TypeError("grantkeeper's tools run on a server with a Toolset installed")
        return toolset

    def exposed(self, canonical: str) -> str:
        return exposed_name(canonical, self.runtime.settings.tool_names)

    def add(self, tool: Tool) -> None:
        takes_label = "account" in inspect.signature(tool.fn).parameters
        if takes_label != tool.per_account:
            raise TypeError(f"{tool.name}: a tool takes the `account` argument exactly when it acts on an account")
        exposed = self.exposed(tool.name)
        annotations = ToolAnnotations(
            title=tool.title,
            read_only_hint=tool.read_only,
            destructive_hint=tool.destructive,
            idempotent_hint=tool.idempotent,
            open_world_hint=True,
        )
        description = tool.description or inspect.getdoc(tool.fn)
        self.server.add_tool(tool.fn, name=exposed, title=tool.title, description=description, annotations=annotations)
        self.registered[exposed] = tool.name

    async def call(self, exposed: str, call_tool: Callable[[], Awaitable[Any]]) -> Any:
        """Run one tool call through the MCP server and count it: the one place a call is recorded in metrics."""
        if exposed not in self.registered:
            return await call_tool()  # the SDK answers an unknown name; counting it would let callers mint labels
        current = ToolCall(self.registered[exposed], self)
        token = _current_call.set(current)
        started = time.perf_counter()
        try:
            result = await call_tool()
        except ToolError as error:
            if isinstance(error, UnexpectedToolError) or not isinstance(error.__cause__, ValidationError):
                self._count(current, "internal_error", started)
                raise
            current.refused = True
            result = invalid_arguments(current.tool, error.__cause__)
        except UrlElicitationRequiredError:
            self._count(current, "reauth_required", started)
            raise
        except Exception:
            self._count(current, "internal_error", started)
            raise
        finally:
            _current_call.reset(token)
        structured = result.structured_content if isinstance(result, CallToolResult) else None
        self._count(current, str((structured or {}).get("status", "ok")), started)
        return result

    def _count(self, call: ToolCall, status: str, started: float) -> None:
        self.runtime.metrics.record_tool_call(call.tool, status, None if call.refused else time.perf_counter() - started)

    def caller(self) -> Caller:
        return self.caller_and_via()[0]

    def via(self) -> str:
        """How the caller came in, for the audit trail: the API key's id, or stdio."""
        return self.caller_and_via()[1]

    def caller_and_via(self) -> tuple[Caller, str]:
        """The verified caller, and how they came in (for the audit trail), from one look at the access token."""
        token = get_access_token()
        if token is not None:
            claims = token.claims or {}
            return Caller(str(claims["org"]), str(claims["user"])), f"key:{claims.get('key_id', '?')}"
        if not self.stdio_identity:
            raise UnauthenticatedCaller("no authenticated caller")
        return self.runtime.stdio_caller(), "stdio"

    async def run(
        self,
        ctx: Context,
        connector: str,
        operation: Callable[[ProviderSession], Awaitable[Ok]],
        *,
        account: str | None,
    ) -> CallToolResult:
        """`operation` on the caller's `connector` account labelled `account` (None: the default one), through the
        executor; one audit row for the call; a magic link as a URL elicitation for clients that take one."""
        tool = current_tool()
        started = time.perf_counter()
        caller, via = self.caller_and_via()
        with tracing.span("tool_call", call=True, tool=tool, connector=connector) as span:
            result = await self.runtime.executor.run(caller, connector, operation, label=account)
            tracing.annotate(span, status=result.status, reason=reason_of(result))
        status = result.status
        # The audit row names the call, never its arguments or its answer.
        target = f"{caller.org}/{caller.user}/{connector}" + (f"/{account}" if account and account != "default" else "")
        await self.runtime.audit.record_tool_call(
            f"{caller.org}/{caller.user}",
            target=target,
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000),
            tool=tool,
            via=via,
        )
        if isinstance(result, ReauthRequired) and declares_url_elicitation(ctx):
            elicitation = url_elicitation(result)
            session = ctx.session
            if getattr(session, "protocol_version", None) == ELICITATION_COMPLETE_VERSION:
                # Told with notifications/elicitation/complete when the owner completes the link.
                self.runtime.elicitations.watch(result.account, elicitation_id(result), session)
            raise elicitation
        return to_call_result(result)

    def refuse(self, connector: str, reason: str, why: str) -> CallToolResult:
        """An `invalid_input` answer for arguments refused before anything is sent (`why` is safe to show)."""
        call = _current_call.get()
        if call is not None:
            call.refused = True
        return to_call_result(
            InvalidInput(
                connector=connector, reason=reason, next_step=f"{why}. Change the arguments; the same call will fail again."
            )
        )


def current_tool() -> str:
    """The canonical name of the tool call being run."""
    call = _current_call.get()
    if call is None:
        raise LookupError("a tool runs inside Toolset.call (through the MCP server)")
    return call.tool


def invalid_arguments(tool: str, error: ValidationError) -> CallToolResult:
    # Argument names and expectations only, never the values: they are the caller's data.
    problems = [
        f"{'.'.join(str(part) for part in problem['loc'])[:80] or 'arguments'}: {problem['msg'][:200]}"
        for problem in error.errors(include_input=False, include_url=False)[:MAX_ARGUMENT_PROBLEMS]
    ]
    connector = tool.split(".", 1)[0] if "." in tool else None
    return to_call_result(
        InvalidInput(
            connector=connector if connector != "accounts" else None,
            reason="invalid_arguments",
            next_step=f"Fix the arguments and call again ({'; '.join(problems)}).",
        )
    )
