"""The encrypted vault of connected accounts: tables, sealing, storage operations, migrations."""

from server.vault.crypto import Keyring, VaultIntegrityError, VaultKeyError
from server.vault.models import AccountStatus, ConnectedAccount
from server.vault.store import (
    AccountExistsError,
    CredentialSnapshot,
    CredentialWrite,
    TokenSecrets,
    UnknownAccountError,
    Vault,
)

__all__ = [
    "AccountExistsError",
    "AccountStatus",
    "ConnectedAccount",
    "CredentialSnapshot",
    "CredentialWrite",
    "Keyring",
    "TokenSecrets",
    "UnknownAccountError",
    "Vault",
    "VaultIntegrityError",
    "VaultKeyError",
]
