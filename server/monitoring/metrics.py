"""Prometheus metrics: tool calls and their outcomes, lifecycle events, audit rows dropped. Scraped at /metrics.

Each runtime counts in a registry of its own, never the process-global default one: two runtimes in one process
(a test after another, a command beside a server) do not see each other's counts."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

CALL_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tool_calls = Counter(
            "grantkeeper_tool_calls", "Tool calls by tool and result status", ["tool", "status"], registry=self.registry
        )
        self.tool_seconds = Histogram(
            "grantkeeper_tool_call_seconds", "Tool call latency", ["tool"], registry=self.registry, buckets=CALL_SECONDS_BUCKETS
        )
        self.lifecycle_events = Counter(
            "grantkeeper_lifecycle_events",
            "Lifecycle events by kind and connector",
            ["kind", "connector"],
            registry=self.registry,
        )
        self.audit_rows_dropped = Counter(
            "grantkeeper_audit_rows_dropped",
            "Audit rows never written (queue full, or the database refusing them at shutdown), by reason",
            ["reason"],
            registry=self.registry,
        )
        # The labelled children, looked up once per label set rather than per call (the hot path).
        self._counters: dict[tuple[str, str], Any] = {}
        self._timers: dict[str, Any] = {}

    def record_tool_call(self, tool: str, status: str, seconds: float | None = None) -> None:
        """A finished tool call; `seconds` None for one refused before it ran (its latency is not the tool's)."""
        if seconds is not None:
            timer = self._timers.get(tool) or self._timers.setdefault(tool, self.tool_seconds.labels(tool))
            timer.observe(seconds)
        key = (tool, status)
        counter = self._counters.get(key) or self._counters.setdefault(key, self.tool_calls.labels(tool, status))
        counter.inc()

    def record_event(self, kind: str, connector: str) -> None:
        self.lifecycle_events.labels(kind, connector).inc()

    def record_audit_rows_dropped(self, reason: str, count: int) -> None:
        self.audit_rows_dropped.labels(reason).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
