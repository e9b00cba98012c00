"""`/healthz`: 200 while the vault's database answers, 503 when it does not (for load balancers and orchestrators).

Route("/healthz", health_check(runtime), methods=["GET"])
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.monitoring.logging import get_logger
from server.runtime import Runtime

log = get_logger("grantkeeper.web")


def health_check(runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    """The `/healthz` endpoint: it pings the database from a worker thread, so a slow database never blocks the loop."""

    async def healthz(request: Request) -> Response:
        try:
            await anyio.to_thread.run_sync(_ping, runtime)
        except Exception:
            log.warning("healthz_database_unreachable", exc_info=True)
            return JSONResponse({"status": "unhealthy", "database": "unreachable"}, 503, headers={"Cache-Control": "no-store"})
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    return healthz


def _ping(runtime: Runtime) -> None:
    with runtime.vault.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
