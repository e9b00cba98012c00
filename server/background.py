"""Everything a worker does besides answering tool calls, started by `serve` beside its transport.

    await serve_with_background(runtime, server.run_stdio_async)

- the refresh scheduler (server/lifecycle/scheduler.py) keeps grants fresh before they are used;
- the health monitor (server/lifecycle/health.py) validates accounts at start, then probes them on a schedule;
- the housekeeper (server/housekeeping.py) prunes magic links that can no longer be used, and old audit rows and
  lifecycle events;
- offboarding (server/lifecycle/offboarding.py) retries upstream revocations a provider has not yet accepted;
- the webhook deliverer (server/monitoring/webhooks.py) sends the outbox of signed webhooks.

Neither blocks the transport: the server answers from its first moment while the startup validation runs.
Both share their work with the other workers through the database, so N workers do the work of one, N times
as fast. `require_healthy` is the blocking variant `serve --require-healthy` runs before the transport starts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from server.housekeeping import Housekeeper
from server.lifecycle.health import HealthMonitor, Unhealthy
from server.lifecycle.scheduler import RefreshScheduler
from server.monitoring.logging import get_logger
from server.monitoring.webhooks import WebhookDeliverer
from server.runtime import Runtime


def health_monitor(runtime: Runtime) -> HealthMonitor:
    return HealthMonitor(runtime.settings, runtime.vault, runtime.executor, runtime.events)


def refresh_scheduler(runtime: Runtime) -> RefreshScheduler:
    return RefreshScheduler(runtime.settings, runtime.vault, runtime.tokens)


def housekeeper(runtime: Runtime) -> Housekeeper:
    return Housekeeper(runtime.settings, runtime.vault)


def webhook_deliverer(runtime: Runtime) -> WebhookDeliverer:
    deliverer = WebhookDeliverer(runtime.settings, runtime.vault)
    runtime.events.webhook_listeners.append(deliverer.nudge)
    return deliverer


async def run_background(runtime: Runtime) -> None:
    """Run the scheduler, the health monitor and the webhook deliverer (as the settings enable them) and the
    housekeeper until cancelled."""
    settings = runtime.settings
    log = get_logger("grantkeeper.background")
    log.info(
        "background_started",
        scheduler=settings.scheduler_enabled,
        health_checks=settings.health_checks_enabled,
        webhooks=settings.webhooks_enabled,
    )
    async with anyio.create_task_group() as group:
        if settings.scheduler_enabled:
            group.start_soon(refresh_scheduler(runtime).run)
        if settings.health_checks_enabled:
            group.start_soon(health_monitor(runtime).run)
        group.start_soon(housekeeper(runtime).run)
        group.start_soon(runtime.offboarding.run)
        if settings.webhooks_enabled:
            group.start_soon(webhook_deliverer(runtime).run)


async def serve_with_background(runtime: Runtime, transport: Callable[[], Awaitable[None]]) -> None:
    """Run `transport` (e.g. `server.run_stdio_async`) with the background work beside it; when the transport
    ends, stop the background (refreshes already talking to a provider finish first)."""
    async with anyio.create_task_group() as group:
        group.start_soon(run_background, runtime)
        await transport()
        group.cancel_scope.cancel()


async def require_healthy(runtime: Runtime) -> list[Unhealthy]:
    """Check every active account now; the ones that need a person (empty when all are healthy)."""
    return await health_monitor(runtime).require_healthy()


def refusal_message(unhealthy: list[Unhealthy]) -> str:
    lines = [f"grantkeeper: refusing to start (--require-healthy): {len(unhealthy)} account(s) need attention"]
    for item in unhealthy:
        who = "its owner must re-authorize" if item.status == "reauth_required" else "an administrator must act"
        lines.append(f"  {item.account}: {item.status} ({item.reason or 'no reason recorded'}) - {who}")
    lines.append("Run `grantkeeper check` for re-authorization links.")
    return "\n".join(lines)
