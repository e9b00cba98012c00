"""The `grantkeeper` command: serve, manage accounts, check grants, run the demo.

    grantkeeper serve                 # main(["serve"]): the entry point pyproject.toml names

One module per command group (serve, accounts, links, keys, sessions, vault_key, console, webhooks); parser.py
assembles them. Command modules import what a command needs inside it, so `serve` answers its first request
without loading what only the other commands use.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

from server.cli.common import EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, CliError
from server.cli.parser import build_parser
from server.monitoring.logging import configure_logging
from server.settings import ConfigError, Settings

__all__ = ["EXIT_OK", "EXIT_UNHEALTHY", "EXIT_USAGE", "CliError", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        settings = Settings()
    except (ValidationError, ConfigError) as exc:
        print(f"grantkeeper: configuration error: {_config_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    try:
        code: int = args.handler(settings, args)
        return code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = _failure_message(exc)
        if message is None:
            raise
        print(f"grantkeeper: {message}", file=sys.stderr)
        return EXIT_USAGE


def _config_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        # Never echo input values: a malformed secret must not end up on screen or in a log.
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors(include_input=False))
    return str(exc)


def _failure_message(exc: Exception) -> str | None:
    """What to print for a failure a person can fix (exit 2), or None for a bug. The vault's and the database's
    exception classes are looked up only when something failed: importing them costs `serve` its cold start."""
    from sqlalchemy.exc import OperationalError

    from server.vault.crypto import VaultKeyError

    if isinstance(exc, (CliError, VaultKeyError)):
        return str(exc)
    if isinstance(exc, ConfigError):  # found when connectors load: a declared provider, or its discovery
        return f"configuration error: {exc}"
    if isinstance(exc, OperationalError):
        return f"database unavailable ({type(exc.orig).__name__}); check GRANTKEEPER_DATABASE_URL"
    return None
