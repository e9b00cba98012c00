"""`grantkeeper serve --transport http|sse`: the whole web app is the server (over stdio it is not: see
server/stdio_server.py). The socket is bound before the app is built, so even on port 0 the public URL (the OAuth
issuer and resource) is known; it serves until SIGINT/SIGTERM. `/metrics` gets a loopback listener of its own when
GRANTKEEPER_METRICS_PORT is set.

    await serve_http(runtime, "http", host="0.0.0.0", port=8765)
"""

from __future__ import annotations

import contextlib
import signal
from urllib.parse import urlsplit

import anyio

from server.monitoring.logging import get_logger
from server.runtime import Runtime
from server.settings import is_loopback
from server.web.app import TRANSPORTS, build_web_app
from server.web.listener import Listener, adopt_public_url, bind, listener_url, listening
from server.web.listener_limits import ListenerLimits
from server.web.metrics import metrics_app

log = get_logger("grantkeeper.web")


async def serve_http(runtime: Runtime, transport: str, *, host: str | None = None, port: int | None = None) -> None:
    """`grantkeeper serve --transport http|sse`: the whole web app, until SIGINT/SIGTERM."""
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
        await _serve_web_app(runtime, transport, host, port, limits, metrics=metrics_port is None)


async def _serve_web_app(
    runtime: Runtime, transport: str, host: str, port: int, limits: ListenerLimits, *, metrics: bool
) -> None:
    settings = runtime.settings
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
