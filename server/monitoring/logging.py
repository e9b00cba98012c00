"""structlog set-up: one redacting pipeline for our logs and every library's, written to stderr
(in stdio mode stdout belongs to the protocol)."""

from __future__ import annotations

import functools
import logging
import re
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict

from server.monitoring.tracing import current_ids

REDACTED = "[redacted]"
SECRET_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "client_secret",
        "token",
        "authorization",
        "code",
        "code_verifier",
        "password",
        "secret",
        "vault_key",
        "api_key",
        "key",
        "state",
        "magic_link",
        "cookie",
        "csrf_token",
    }
)


@functools.cache
def secret_patterns() -> list[tuple[re.Pattern[str], str]]:
    """Token shapes the providers declare (providers/*.py `secret_patterns`), then bearer headers, JWTs, our own
    keys and secrets carried in URLs. Compiled at the first line logged, not at import: `serve` answers its first
    request before it loads the providers."""
    from providers import BUILTIN

    return [
        *((re.compile(pattern), REDACTED) for provider in BUILTIN.values() for pattern in provider.spec.secret_patterns),
        (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
        (re.compile(r"(gk_flow_[0-9a-f]+=)[^;\s\"']+"), r"\1" + REDACTED),  # a link flow cookie (before gk_ keys)
        (re.compile(r"(gk_form=)[^;\s\"'&]+"), r"\1" + REDACTED),  # the form-token nonce cookie
        (re.compile(r"\bgk_[A-Za-z0-9_-]{10,}"), REDACTED),
        (re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
        (re.compile(r"(/connect/)[A-Za-z0-9_-]{16,}"), r"\1" + REDACTED),
        (
            re.compile(
                r"(?i)([?&](?:code|state|token|access_token|refresh_token|client_secret|code_verifier|csrf_token)=)[^&\s\"']+"
            ),
            r"\1" + REDACTED,
        ),
    ]


# Held at WARNING whatever GRANTKEEPER_LOG_LEVEL says: the HTTP client's request lines (noise, and they carry URLs),
# alembic's chatter, and the libraries whose debug output is whole protocol messages, tool results included (the
# user's content: messages, issues, mail). Debug level is for grantkeeper's own logs, which never hold a result body.
QUIET_LIBRARIES = ("httpx2", "httpcore", "httpcore2", "alembic", "mcp", "sse_starlette")


def redact_text(text: str) -> str:
    for pattern, replacement in secret_patterns():
        text = pattern.sub(replacement, text)
    return text


def _redact(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in SECRET_KEYS else _redact(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v, depth + 1) for v in value)
    return value


def _drop_color_message(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """uvicorn attaches an ANSI-coloured copy of some messages; the plain one is enough."""
    event_dict.pop("color_message", None)
    return event_dict


def add_trace_ids(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the current span's trace_id and span_id, so a log line can be found from its trace."""
    for key, value in current_ids().items():
        event_dict.setdefault(key, value)
    return event_dict


def redact_secrets(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: drop values under secret-sounding keys, mask token-shaped strings anywhere."""
    return _redact(event_dict)


def configure_logging(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        add_trace_ids,
    ]
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_color_message,
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_grantkeeper", False):
            root.removeHandler(existing)
    handler._grantkeeper = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "grantkeeper") -> Any:
    return structlog.get_logger(name)
