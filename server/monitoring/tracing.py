"""OpenTelemetry spans for tool calls: one per call, with children for account resolution, refreshes (and their
lease wait and token request), provider requests and retries.

The code depends on `opentelemetry-api` only: without an SDK every span is a no-op. `configure_exporting` installs
the SDK's OTLP exporter when it is importable (`pip install grantkeeper[otel]`) and the standard OTEL_* variables
ask for it. Attributes pass an allow-list of names and scalar values, so a token, a secret or an argument value
cannot reach a span; exceptions are not recorded (their messages are not ours to vouch for), only their class.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

T = TypeVar("T")
PREFIX = "grantkeeper."
ATTRIBUTES = frozenset(
    {
        "tool",
        "connector",
        "account_id",
        "status",
        "trigger",
        "failure_class",
        "reason",
        "attempt",
        "retry",
        "verdict",
        "http_status",
        "outcome",
        "version",
    }
)
_call_span: ContextVar[Span | None] = ContextVar("grantkeeper_call_span", default=None)


# Looked up once, not per span (each lookup reads the environment). Until a provider is installed this is
# OpenTelemetry's proxy tracer, which hands spans to the provider installed later (`configure_exporting`).
_TRACER = trace.get_tracer("grantkeeper")


def _tracer() -> trace.Tracer:
    return _TRACER


def _no_provider() -> bool:
    """Whether no SDK tracer provider is installed (yet): then every span would be a no-op carrying its parent's
    context, so the helpers below skip making one. Asked on every span, not cached, because a provider may be
    installed at any time (`configure_exporting`, a test's in-memory exporter)."""
    # The proxy tracer resolves to the installed provider's tracer, or to a no-op one, without the environment
    # look-up that `get_tracer_provider` makes each time (a tool call asks three times). Not a proxy (a provider
    # was installed before this module loaded), or a future API without `_tracer`: ask the public way.
    resolved = getattr(_TRACER, "_tracer", None) if isinstance(_TRACER, trace.ProxyTracer) else None
    if resolved is not None:
        return isinstance(resolved, trace.NoOpTracer)
    return isinstance(trace.get_tracer_provider(), _NO_OP_PROVIDERS)


_NO_OP_PROVIDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def annotate(span: Span | None = None, **attributes: Any) -> None:
    """Set allowed attributes (names from ATTRIBUTES, str/bool/int/float values) on `span` or the current one."""
    span = span or trace.get_current_span()
    if not span.is_recording():
        return
    for name, value in attributes.items():
        if name in ATTRIBUTES and value is not None and isinstance(value, (str, bool, int, float)):
            span.set_attribute(PREFIX + name, value if not isinstance(value, str) else value[:200])


def annotate_call(**attributes: Any) -> None:
    """Set attributes on the tool call's span, from anywhere below it (e.g. the account id once resolved)."""
    span = _call_span.get()
    if span is not None:
        annotate(span, **attributes)


def failure_class(error: BaseException) -> str:
    return type(error).__name__


def span(name: str, *, call: bool = False, **attributes: Any) -> AbstractContextManager[Span]:
    """A child of the current span (made current inside the block). `call=True` marks the tool call's span."""
    if _no_provider():
        return _NO_SPAN  # every tool call enters several: without a provider, not even a generator is made
    return _recorded_span(name, call, attributes)


_NO_SPAN = nullcontext(trace.INVALID_SPAN)


@contextmanager
def _recorded_span(name: str, call: bool, attributes: dict[str, Any]) -> Iterator[Span]:
    with _tracer().start_as_current_span(PREFIX + name, record_exception=False, set_status_on_exception=False) as current:
        annotate(current, **attributes)
        token = _call_span.set(current) if call else None
        try:
            yield current
        except BaseException as error:
            annotate(current, failure_class=failure_class(error), reason=getattr(error, "reason", None))
            current.set_status(Status(StatusCode.ERROR))
            raise
        finally:
            if token is not None:
                _call_span.reset(token)


@contextmanager
def side_span(name: str, **attributes: Any) -> Iterator[Span]:
    """A child span that is not made current: for code that yields control to its caller mid-way (an httpx auth
    flow), where a current-span change would leak into the caller."""
    if _no_provider():
        yield trace.INVALID_SPAN
        return
    current = _tracer().start_span(PREFIX + name)
    annotate(current, **attributes)
    try:
        yield current
    except BaseException as error:
        annotate(current, failure_class=failure_class(error))
        current.set_status(Status(StatusCode.ERROR))
        raise
    finally:
        current.end()


def record_span(name: str, start_time_ns: int, **attributes: Any) -> None:
    """A child span that started at `start_time_ns` and ends now (a wait measured around existing code)."""
    if _no_provider():
        return
    finished = _tracer().start_span(PREFIX + name, start_time=start_time_ns)
    annotate(finished, **attributes)
    finished.end()


async def traced(name: str, attributes: dict[str, Any], fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`await fn(*args)` inside a span (for work started as a task, e.g. a single-flight refresh)."""
    with span(name, **attributes):
        return await fn(*args)


def current_ids() -> dict[str, str]:
    """trace_id / span_id of the current span for log lines; empty outside a recorded span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


def configure_exporting() -> bool:
    """Export spans over OTLP when the SDK and exporter are installed and OTEL_TRACES_EXPORTER (not `none`) or
    OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT is set; everything else (endpoint, headers, service name, sampling) is
    read by the SDK from the standard OTEL_* variables. Returns whether exporting was switched on."""
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or exporter_name == "none":
        return False
    if not exporter_name and not endpoint:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return False
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "grantkeeper")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True
