"""`grantkeeper serve`: the MCP server over stdio (pages on a loopback listener beside it) or HTTP."""

from __future__ import annotations

import argparse
import sys

import anyio

from server.cli.common import (
    EXIT_OK,
    EXIT_UNHEALTHY,
    CliError,
    Commands,
)
from server.settings import Settings


def add_serve(commands: Commands) -> None:
    """`serve`."""
    serve = commands.add_parser("serve", help="run the MCP server (stdio for Claude Desktop)")
    serve.add_argument(
        "--transport",
        choices=["stdio", "sse", "http"],
        default="stdio",
        help="stdio (plus a loopback listener for magic-link pages); http: streamable HTTP at /mcp "
        "and SSE at /sse; sse: SSE only. HTTP callers need an API key (grantkeeper keys create)",
    )
    serve.add_argument("--host", help="listen address (default GRANTKEEPER_LISTEN_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default GRANTKEEPER_LISTEN_PORT, 8765; 0 picks one)")
    serve.add_argument(
        "--require-healthy",
        action="store_true",
        help="check every account first and refuse to start if any needs re-authorization",
    )
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.port is not None and not 0 <= args.port <= 65535:
        raise CliError("--port must be between 0 and 65535")
    host = args.host or settings.listen_host
    port = settings.listen_port if args.port is None else args.port
    if args.transport == "stdio" and not args.require_healthy:
        # The common start (Claude Desktop spawning us): answer `initialize` first, open the vault beside it.
        from server.stdio_server import serve_stdio

        anyio.run(lambda: serve_stdio(settings, host=host, port=port))
        return EXIT_OK
    return _serve_with_runtime_first(settings, args, host, port)


def _serve_with_runtime_first(settings: Settings, args: argparse.Namespace, host: str, port: int) -> int:
    """HTTP, and `--require-healthy`: the runtime opens (and the accounts are checked) before the transport."""
    from server.background import refusal_message, require_healthy, serve_with_background
    from server.http_server import serve_http
    from server.monitoring.logging import get_logger
    from server.monitoring.tracing import configure_exporting
    from server.runtime import Runtime
    from server.stdio_server import serve_stdio

    if configure_exporting():
        get_logger("grantkeeper").info("trace_export_enabled")
    runtime = Runtime.open(settings)

    async def serve() -> int:
        try:
            if args.require_healthy and (unhealthy := await require_healthy(runtime)):
                print(refusal_message(unhealthy), file=sys.stderr)
                return EXIT_UNHEALTHY
            if args.transport == "stdio":
                await serve_stdio(settings, host=host, port=port, runtime=runtime)
                return EXIT_OK
            # The scheduler and health checks run beside the transport; startup validation never delays it.
            await serve_with_background(runtime, lambda: serve_http(runtime, args.transport, host=host, port=port))
            return EXIT_OK
        finally:
            await runtime.aclose()

    code: int = anyio.run(serve)
    return code
