"""`grantkeeper vault`: make a new vault key, re-seal every secret under the first configured one."""

from __future__ import annotations

import argparse
import sys

from server.cli.common import (
    EXIT_OK,
    EXIT_UNHEALTHY,
    Commands,
)
from server.settings import Settings


def add_vault(commands: Commands) -> None:
    """`vault new-key|rekey`."""
    vault = commands.add_parser("vault", help="the vault key").add_subparsers(metavar="ACTION")
    vault.add_parser("new-key", help="print a new vault key to put first in GRANTKEEPER_VAULT_KEY").set_defaults(
        handler=cmd_vault_new_key
    )
    vault.add_parser("rekey", help="re-seal every secret under the first configured key").set_defaults(handler=cmd_vault_rekey)


def cmd_vault_new_key(settings: Settings, args: argparse.Namespace) -> int:
    from server.vault.crypto import new_key_spec

    print(new_key_spec())
    print(
        "Put it first in GRANTKEEPER_VAULT_KEY (new,old), restart the workers, then run `grantkeeper vault rekey`; "
        "drop the old key once rekey reports nothing left.",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_vault_rekey(settings: Settings, args: argparse.Namespace) -> int:
    from server.runtime import open_vault

    vault, _ = open_vault(settings)
    counts = vault.reseal_with_primary_key()
    print(
        f"re-sealed under key {vault.keyring.primary_id}: {counts.credentials} credential(s), "
        f"{counts.magic_link_flows} link flow(s); {counts.credentials_current} credential(s) already were"
    )
    if counts.unreadable:
        print(f"{counts.unreadable} secret(s) did not open with any configured key and were left as they are", file=sys.stderr)
        return EXIT_UNHEALTHY
    return EXIT_OK
