"""The `grantkeeper` argument parser, assembled from the command modules and the plugin commands."""

from __future__ import annotations

import argparse
import sys

from server.cli import accounts, console, keys, links, serve, sessions, vault_key, webhooks
from server.cli.common import Commands

DESCRIPTION = "The `grantkeeper` command: serve, manage accounts, check grants, run the demo."
PLUGIN_COMMANDS = "grantkeeper.commands"


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Every command, in the order `--help` lists them; plugin commands only when `argv` names none of ours."""
    parser = argparse.ArgumentParser(prog="grantkeeper", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(metavar="COMMAND")
    serve.add_serve(commands)
    links.add_link(commands)
    keys.add_keys(commands)
    sessions.add_sessions(commands)
    vault_key.add_vault(commands)
    accounts.add_accounts(commands)
    console.add_status(commands)
    console.add_events(commands)
    console.add_audit(commands)
    links.add_check(commands)
    webhooks.add_webhooks(commands)
    _add_plugin_commands(commands, argv)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("grantkeeper")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _add_plugin_commands(commands: Commands, argv: list[str] | None) -> None:
    """Commands registered by other packages (the `grantkeeper.commands` entry points, such as the example's
    `demo`), so that server/ names no example and no simulator. A built-in command skips the lookup: it scans
    the installed distributions, which `serve` should not pay for at every start."""
    words = sys.argv[1:] if argv is None else argv
    first = next((w for w in words if not w.startswith("-")), None)
    if first is not None and first in commands.choices:
        return
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_COMMANDS):
        entry.load()(commands)
