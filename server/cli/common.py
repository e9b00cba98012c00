"""What every command shares: exit codes, the error a command reports, who acts, account references, help texts."""

from __future__ import annotations

import argparse
import getpass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from server.vault import ConnectedAccount, Vault

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE = 0, 1, 2
ORG_HELP = "organisation (default GRANTKEEPER_ORG)"
USER_HELP = "user within the organisation (default GRANTKEEPER_USER, else your login name)"
JSON_HELP = "print JSON instead of a table"
# The sub-parsers action every command module adds its commands to (argparse names no public type for it).
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CliError(Exception):
    """A mistake the person at the command line can fix: printed as `grantkeeper: <message>`, exit 2."""


def cli_actor() -> str:
    """Who the audit trail says acted from this command line: the operating-system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def find_account_ref(vault: Vault, ref: str) -> ConnectedAccount:
    """An account by id or by org/user/connector[/label]."""
    parts = ref.split("/")
    if len(ref) > 700 or not ref:
        raise CliError("ACCOUNT must be an account id or org/user/connector[/label]")
    account: ConnectedAccount | None
    if len(parts) in (3, 4):
        account = vault.accounts.find(parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else "default")
    elif len(parts) == 1:
        try:
            account = vault.accounts.get(ref)
        except LookupError:
            account = None
    else:
        raise CliError("ACCOUNT must be an account id or org/user/connector[/label]")
    if account is None:
        raise CliError(f"no account {ref!r} (see grantkeeper status)")
    return account
