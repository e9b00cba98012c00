"""`/metrics` for Prometheus: tool calls by status, lifecycle events by kind; no account names. With
GRANTKEEPER_METRICS_TOKEN set, only for `Authorization: Bearer <that token>`. Served by the web app, or by a
loopback listener of its own when GRANTKEEPER_METRICS_PORT is set (`metrics_app`).

    Route("/metrics", metrics_endpoint(settings, runtime.metrics), methods=["GET"])
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.monitoring.metrics import Metrics
from server.settings import Settings
from server.web.security import bearer_matches


def metrics_endpoint(settings: Settings, metrics: Metrics) -> Callable[[Request], Awaitable[Response]]:
    """The `/metrics` endpoint over `metrics`, behind the metrics token when one is set."""

    async def prometheus_metrics(request: Request) -> Response:
        if settings.metrics_token and not bearer_matches(request.headers.get("authorization", ""), settings.metrics_token):
            return JSONResponse(
                {"error": "unauthorized"},
                401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"', "Cache-Control": "no-store"},
            )
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    return prometheus_metrics


def metrics_app(settings: Settings, metrics: Metrics) -> Starlette:
    """`/metrics` alone, for its own loopback listener (GRANTKEEPER_METRICS_PORT)."""
    return Starlette(routes=[Route("/metrics", metrics_endpoint(settings, metrics), methods=["GET"])])
