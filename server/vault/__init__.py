"""The encrypted vault of connected accounts: tables, sealing, storage operations, migrations."""

from server.vault.crypto import Keyring, VaultIntegrityError, VaultKeyError
from server.vault.models import AccountStatus, ConnectedAccount
from server.vault.store import (
    NO_REFRESH_TOKEN,
    AccountExistsError,
    CredentialSnapshot,
    CredentialWrite,
    ReauthorizationOutcome,
    TokenSecrets,
    UnknownAccountError,
    Vault,
)

__all__ = [
    "NO_REFRESH_TOKEN",
    "AccountExistsError",
    "AccountStatus",
    "ConnectedAccount",
    "CredentialSnapshot",
    "CredentialWrite",
    "Keyring",
    "ReauthorizationOutcome",
    "TokenSecrets",
    "UnknownAccountError",
    "Vault",
    "VaultIntegrityError",
    "VaultKeyError",
]

import server.identity.models  # noqa: F401  (the identity tables belong to the same schema)
