"""`grantkeeper demo`: the example triage agent against the built-in provider simulators, joined to the CLI
through the `grantkeeper.commands` entry point (pyproject.toml), so server/ names neither."""

from __future__ import annotations

import argparse
from typing import Any


def register_demo_command(commands: Any) -> None:
    """Adds `demo` to the CLI's subcommands (an argparse sub-parsers action)."""
    demo = commands.add_parser(
        "demo",
        help="run the example triage agent against the built-in provider simulators "
        "through a timeline of token expiry, faults and a revocation",
    )
    demo.add_argument("--fast", action="store_true", help="a shorter run (under a minute) instead of 100+ token lifetimes")
    demo.set_defaults(handler=run_demo_command)


def run_demo_command(settings: Any, args: argparse.Namespace) -> int:
    from examples.triage_agent.demo import run_demo

    return run_demo(fast=args.fast)
