"""`grantkeeper serve`: which listeners run for a transport, and for how long. Over stdio the MCP session runs on
stdin/stdout with the page listener beside it (on loopback, on a free port if ours is taken); over HTTP or SSE the
whole web app is the server, until SIGINT/SIGTERM. `/metrics` gets a loopback listener of its own when
GRANTKEEPER_METRICS_PORT is set.

    await serve(runtime, "stdio")
"""

from __future__ import annotations

import contextlib
import signal
from urllib.parse import urlsplit

import anyio

from server.app import build_server
from server.monitoring.logging import get_logger
from server.runtime import Runtime
from server.settings import is_loopback
from server.stdio import run_stdio
from server.web.app import TRANSPORTS, build_web_app
from server.web.listener import Listener, adopt_public_url, bind, listener_url, listening
from server.web.listener_limits import ListenerLimits
from server.web.metrics import metrics_app

log = get_logger("grantkeeper.web")


async def serve(runtime: Runtime, transport: str, *, host: str | None = None, port: int | None = None) -> None:
    """`grantkeeper serve`: stdio with the page listener beside it, or the whole web app over HTTP."""
    settings = runtime.settings
    host = host or settings.listen_host
    port = settings.listen_port if port is None else port
    limits = ListenerLimits.from_settings(settings)
    metrics_port = settings.metrics_port
    async with contextlib.AsyncExitStack() as metrics_stack:
        if metrics_port is not None:
            metrics = await metrics_stack.enter_async_context(
                listening(metrics_app(settings, runtime.metrics), "127.0.0.1", metrics_port, limits)
            )
            log.info("metrics_listener_started", url=f"{metrics.url}/metrics")
        await _serve_transport(runtime, transport, host, port, limits, metrics=metrics_port is None)


async def _serve_transport(
    runtime: Runtime, transport: str, host: str, port: int, limits: ListenerLimits, *, metrics: bool
) -> None:
    settings = runtime.settings
    if transport == "stdio":
        async with contextlib.AsyncExitStack() as stack:
            app = build_web_app(runtime, metrics=metrics)
            try:
                listener = await stack.enter_async_context(listening(app, host, port, limits))
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
                    listener = None
                else:
                    # Whatever holds the port is not known to be ours: a link to it could land on another process's
                    # server. Take a free port instead; links follow it (adopt_public_url below).
                    log.warning(
                        "page_listener_unavailable",
                        host=host,
                        port=port,
                        error=str(exc),
                        notice="Serving the link pages on a free port instead; links point there.",
                    )
                    listener = await stack.enter_async_context(listening(app, host, 0, limits))
            if listener is not None:
                adopt_public_url(settings, listener.url)
                log.info("page_listener_started", url=listener.url, public_url=settings.public_url)
            server, _ = build_server(runtime)
            await run_stdio(server)
        return
    transports = TRANSPORTS if transport == "http" else ("sse",)
    # Bound first, so that with port 0 the public URL (the OAuth issuer and resource) is known when the app is built.
    sock = bind(host, port)
    adopt_public_url(settings, listener_url(sock))
    app = build_web_app(runtime, transports=transports, host=host, metrics=metrics)
    async with listening(app, host, port, limits, sock=sock) as listener:
        adopt_public_url(settings, listener.url)
        if host in ("0.0.0.0", "::") and "public_url" not in settings.model_fields_set:
            log.warning(
                "public_url_guessed",
                public_url=settings.public_url,
                notice="Set GRANTKEEPER_PUBLIC_URL to the address browsers reach this server at.",
            )
        public_host = urlsplit(settings.public_url).hostname or ""
        if settings.public_url.startswith("http://") and not is_loopback(public_host):
            log.warning(
                "public_url_not_https",
                public_url=settings.public_url,
                notice="Magic links and OAuth callbacks would cross the network in clear text; serve "
                "them over https (a TLS-terminating proxy) and set GRANTKEEPER_PUBLIC_URL to it.",
            )
        endpoints = {"mcp": f"{listener.url}/mcp"} if "http" in transports else {}
        log.info("http_server_started", url=listener.url, public_url=settings.public_url, sse=f"{listener.url}/sse", **endpoints)
        await until_signalled_or_closed(listener)
    log.info("http_server_stopped")


async def until_signalled_or_closed(listener: Listener) -> None:
    """SIGINT/SIGTERM end the block (uvicorn then drains connections), so the caller's clean-up still runs."""
    async with anyio.create_task_group() as group:

        async def on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("shutting_down", signal=signal.Signals(signum).name)
                    break
            group.cancel_scope.cancel()

        group.start_soon(on_signal)
        await listener.wait_closed()
        group.cancel_scope.cancel()
