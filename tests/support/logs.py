"""Undo `configure_logging`: the CLI configures the root logger with the stream it was given (in tests, pytest's
capture, which is closed after the test), so tests that run the CLI or capture logs put things back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog


@contextmanager
def logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "_grantkeeper", False):
                root.removeHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()
