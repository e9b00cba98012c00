"""The encrypted vault of connected accounts: tables, sealing, storage operations by concept, migrations."""

from server.vault.accounts import NO_REFRESH_TOKEN, AccountExistsError, UnknownAccountError
from server.vault.credentials import CredentialSnapshot, CredentialWrite, TokenSecrets
from server.vault.crypto import Keyring, VaultIntegrityError, VaultKeyError
from server.vault.links import ReauthorizationOutcome
from server.vault.models import AccountStatus, ConnectedAccount
from server.vault.store import Vault

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
