"""Prometheus metrics: tool calls and their outcomes, provider verdicts, refreshes. Scraped at /metrics."""

from __future__ import annotations

from functools import cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

TOOL_CALLS = Counter("grantkeeper_tool_calls", "Tool calls by tool and result status", ["tool", "status"],
                     registry=REGISTRY)
TOOL_SECONDS = Histogram("grantkeeper_tool_call_seconds", "Tool call latency", ["tool"], registry=REGISTRY,
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
LIFECYCLE_EVENTS = Counter("grantkeeper_lifecycle_events", "Lifecycle events by kind and connector",
                           ["kind", "connector"], registry=REGISTRY)


@cache
def _call_counter(tool: str, status: str) -> Any:
    return TOOL_CALLS.labels(tool, status)


@cache
def _call_timer(tool: str) -> Any:
    return TOOL_SECONDS.labels(tool)


def record_tool_call(tool: str, status: str, seconds: float) -> None:
    """On every call: the labelled children are looked up once per (tool, status), not per call."""
    _call_timer(tool).observe(seconds)
    _call_counter(tool, status).inc()


def render() -> bytes:
    return generate_latest(REGISTRY)
