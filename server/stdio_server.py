"""`grantkeeper serve` over stdio, started in two halves: the protocol first, everything else beside it.

    await serve_stdio(settings, host="127.0.0.1", port=8765)

A client spawns the server and waits for its answer to `initialize`, which needs nothing but the settings. So the
transport starts at once on an empty server (server/app.py `tool_server`), and once that answer is out (or stdin
closed), beside the transport, in this order: the vault opens (in a worker thread; the migration runs only when
the schema is behind), the page listener binds, links start pointing at it, the tools are installed, the gate
opens, and the background work starts. `tools/list` and `tools/call` wait at the gate meanwhile: a call is never
refused for arriving early, and no link is handed out before the listener it points at is ours. If the vault
cannot open, the transport stops and the error ends the process as it would have before serving.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from server.app import StartupGate, ToolServer, tool_server
from server.monitoring.logging import get_logger
from server.settings import Settings
from server.stdio import run_stdio

if TYPE_CHECKING:
    from server.runtime import Runtime
    from server.web.listener import Listener
    from server.web.listener_limits import ListenerLimits

log = get_logger("grantkeeper.serve")


async def serve_stdio(settings: Settings, *, host: str, port: int, runtime: Runtime | None = None) -> None:
    """Serve MCP over stdin/stdout until stdin closes. `runtime`: already open (`serve --require-healthy` checks
    the accounts first); otherwise it opens once the transport is up. Raises what stopped the runtime opening."""
    server = tool_server()
    gate = server.gate = StartupGate()
    answered, transport_closed = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(_run_beside_transport, settings, server, gate, host, port, runtime, answered, transport_closed, group)
        await run_stdio(server, first_reply_sent=answered)
        # Stdin closed. A start-up not begun or still under way runs to its end first (so a failure is still
        # reported), then the background work stops and the listeners close.
        answered.set()
        transport_closed.set()
    if gate.failure is not None:
        raise gate.failure


async def _run_beside_transport(
    settings: Settings,
    server: ToolServer,
    gate: StartupGate,
    host: str,
    port: int,
    runtime: Runtime | None,
    answered: anyio.Event,
    transport_closed: anyio.Event,
    transport: anyio.abc.TaskGroup,
) -> None:
    if runtime is None:
        # Opening the vault imports most of grantkeeper, in a thread that would compete with the event loop for
        # the interpreter: it begins once the first answer (to `initialize`) is out.
        await answered.wait()
        try:
            runtime = await anyio.to_thread.run_sync(_open_runtime, settings)
        except Exception as failure:
            gate.fail(failure)
            transport.cancel_scope.cancel()
            return
    await _serve_runtime(runtime, server, gate, host, port, transport_closed, transport)


async def _serve_runtime(
    runtime: Runtime,
    server: ToolServer,
    gate: StartupGate,
    host: str,
    port: int,
    transport_closed: anyio.Event,
    transport: anyio.abc.TaskGroup,
) -> None:
    """Listeners, tools, gate, then background until the transport closes; the runtime closes last."""
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                await _start_listeners(stack, runtime, host, port)
                from server.app import install_tools

                install_tools(server, runtime, stdio_identity=True)
            except Exception as failure:
                gate.fail(failure)
            else:
                gate.open()
                await _run_background_until(runtime, transport_closed)
        if gate.failure is not None:
            transport.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await runtime.aclose()


async def _run_background_until(runtime: Runtime, transport_closed: anyio.Event) -> None:
    from server.background import run_background

    async with anyio.create_task_group() as background:
        background.start_soon(run_background, runtime)
        await transport_closed.wait()
        background.cancel_scope.cancel()


def _open_runtime(settings: Settings) -> Runtime:
    from server.monitoring.tracing import configure_exporting
    from server.runtime import Runtime

    if configure_exporting():
        log.info("trace_export_enabled")
    return Runtime.open(settings)


async def _start_listeners(stack: contextlib.AsyncExitStack, runtime: Runtime, host: str, port: int) -> None:
    """The page listener (magic links, sign-in, the console) on loopback, and `/metrics` on a listener of its own
    when GRANTKEEPER_METRICS_PORT asks for one; links point at the page listener from here on."""
    from server.web.listener import adopt_public_url, listening
    from server.web.listener_limits import ListenerLimits
    from server.web.metrics import metrics_app

    settings = runtime.settings
    limits = ListenerLimits.from_settings(settings)
    if settings.metrics_port is not None:
        metrics = await stack.enter_async_context(
            listening(metrics_app(settings, runtime.metrics), "127.0.0.1", settings.metrics_port, limits)
        )
        log.info("metrics_listener_started", url=f"{metrics.url}/metrics")
    listener = await _page_listener(stack, runtime, host, port, limits)
    if listener is not None:
        adopt_public_url(settings, listener.url)
        log.info("page_listener_started", url=listener.url, public_url=settings.public_url)


async def _page_listener(
    stack: contextlib.AsyncExitStack, runtime: Runtime, host: str, port: int, limits: ListenerLimits
) -> Listener | None:
    from server.web.app import build_web_app
    from server.web.listener import listening

    settings = runtime.settings
    app = build_web_app(runtime, metrics=settings.metrics_port is None)
    try:
        return await stack.enter_async_context(listening(app, host, port, limits))
    except OSError as exc:
        if "public_url" in settings.model_fields_set:
            # The operator named where links are served (a shared page server); they keep pointing there.
            log.warning(
                "page_listener_unavailable",
                host=host,
                port=port,
                error=str(exc),
                notice="Magic links point at GRANTKEEPER_PUBLIC_URL; something else must serve them.",
            )
            return None
        # Whatever holds the port is not known to be ours: a link to it could land on another process's server.
        # Take a free port instead; links follow it (adopt_public_url).
        log.warning(
            "page_listener_unavailable",
            host=host,
            port=port,
            error=str(exc),
            notice="Serving the link pages on a free port instead; links point there.",
        )
        return await stack.enter_async_context(listening(app, host, 0, limits))
