"""AES-256-GCM sealing of secrets, bound to the row and field they belong to, under rotatable keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class VaultKeyError(ValueError):
    """The vault key setting or key file is malformed or missing."""


class VaultIntegrityError(RuntimeError):
    """A ciphertext failed authentication: it was altered, or copied from another row or field."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    blob: bytes


def associated_data(table: str, row_id: str, field: str) -> bytes:
    return f"grantkeeper/v1|{table}|{row_id}|{field}".encode()


class Keyring:
    """The first key seals; every key opens, so old rows stay readable while `keys rotate` re-seals them."""

    def __init__(self, keys: list[tuple[str, bytes]]):
        if not keys:
            raise VaultKeyError("no vault key configured")
        for key_id, key in keys:
            if len(key) != 32:
                raise VaultKeyError(f"vault key {key_id!r} must be 32 bytes (AES-256), got {len(key)}")
        self.primary_id = keys[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        self._raw = dict(keys)

    @classmethod
    def parse(cls, spec: str) -> Keyring:
        """`[id:]base64key[,[id:]base64key…]`; without an id, one is derived from the key."""
        keys = []
        for entry in (part.strip() for part in spec.split(",")):
            if not entry:
                continue
            key_id, _, encoded = entry.rpartition(":")
            try:
                key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
            except (ValueError, TypeError, binascii.Error):
                raise VaultKeyError("a vault key is not valid base64") from None
            keys.append((key_id or _derive_key_id(key), key))
        return cls(keys)

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def derive(self, purpose: str) -> list[bytes]:
        """One 32-byte key per configured key for a non-encryption `purpose` (e.g. signing form tokens), the
        primary's first. Every worker sharing the vault key derives the same keys; the vault key itself is never
        used for two jobs."""
        label = f"grantkeeper/v1|derive|{purpose}".encode()
        return [hmac.new(self._raw[key_id], label, hashlib.sha256).digest() for key_id in self._ciphers]

    def seal(self, plaintext: bytes, aad: bytes) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        return Sealed(self.primary_id, nonce + self._ciphers[self.primary_id].encrypt(nonce, plaintext, aad))

    def open(self, sealed: Sealed, aad: bytes) -> bytes:
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise VaultKeyError(f"ciphertext was sealed with key {sealed.key_id!r}, which is not configured")
        nonce, body = sealed.blob[:NONCE_BYTES], sealed.blob[NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, body, aad)
        except InvalidTag:
            raise VaultIntegrityError(
                "a stored secret failed authentication: it was tampered with, or copied from another row"
            ) from None


def _derive_key_id(key: bytes) -> str:
    return "k" + hashlib.sha256(key).hexdigest()[:8]


def new_key_spec() -> str:
    key = AESGCM.generate_key(bit_length=256)
    return f"{_derive_key_id(key)}:{base64.urlsafe_b64encode(key).decode().rstrip('=')}"


def load_or_create_keyring(configured: str | None, key_file: Path) -> tuple[Keyring, bool]:
    """Return the keyring and whether a key file was just created (the caller announces it)."""
    if configured:
        return Keyring.parse(configured), False
    if key_file.exists():
        mode = stat.S_IMODE(key_file.stat().st_mode)
        if mode & 0o077:
            raise VaultKeyError(f"{key_file} is readable by others (mode {mode:o}); run: chmod 600 {key_file}")
        return Keyring.parse(key_file.read_text()), False
    key_file.parent.mkdir(parents=True, exist_ok=True)
    spec = new_key_spec()
    # Written aside, then hard-linked into place: two processes starting at once must agree on one key,
    # and neither may read a half-written file.
    tmp = key_file.with_name(f".{key_file.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(spec + "\n")
    try:
        os.link(tmp, key_file)
    except FileExistsError:
        return Keyring.parse(key_file.read_text()), False
    finally:
        tmp.unlink()
    return Keyring.parse(spec), True


def new_secret_token() -> str:
    """256 random bits, URL-safe: magic links, API keys, OAuth state."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
