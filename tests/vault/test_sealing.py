"""Secrets at rest: sealed per row and field, refused when tampered with or moved, never stored in the clear."""

from __future__ import annotations

import io
import logging
import os
import stat

import pytest
from sqlalchemy import update
from sqlmodel import Session

from server.monitoring.logging import configure_logging
from server.vault import Keyring, VaultIntegrityError
from server.vault.crypto import load_or_create_keyring, new_key_spec
from server.vault.models import Credential
from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client
from tests.support.stored import assert_no_plaintext, database_contents

pytestmark = pytest.mark.anyio


def set_ciphertext(vault, account_id: str, blob: bytes) -> None:
    with Session(vault.engine) as session:
        session.execute(update(Credential).where(Credential.account_id == account_id).values(ciphertext=blob))
        session.commit()


def ciphertext_of(vault, account_id: str) -> bytes:
    with Session(vault.engine) as session:
        return session.get(Credential, account_id).ciphertext


async def test_tampered_ciphertext_is_refused_with_a_clear_error(runtime, settings, slack_sim):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    blob = bytearray(ciphertext_of(runtime.vault, account.id))
    blob[20] ^= 0x01
    set_ciphertext(runtime.vault, account.id, bytes(blob))

    with pytest.raises(VaultIntegrityError, match="tampered with, or copied from another row"):
        runtime.vault.credentials.read(account.id)
    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", {"channel": "C0GENERAL"})
    assert result["status"] == "admin_action_required"
    assert result["reason"] == "vault_integrity_failed"
    assert slack_sim.counters.api_requests == 0
    assert any(e.kind == "vault_integrity_failed" and e.severity == "critical" for e in runtime.vault.events.recent())


async def test_ciphertext_copied_onto_another_account_is_refused(runtime, settings, slack_sim):
    alice = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), user="alice")
    bob = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), user="bob")
    set_ciphertext(runtime.vault, bob.id, ciphertext_of(runtime.vault, alice.id))

    with pytest.raises(VaultIntegrityError):
        runtime.vault.credentials.read(bob.id)
    assert runtime.vault.credentials.read(alice.id).access_token  # the original row still opens


async def test_no_token_reaches_the_database_file_or_the_logs(runtime, settings, slack_sim, github_sim):
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    try:
        slack_tokens = slack_sim.issue_grant()
        github_tokens = github_sim.issue_grant()
        slack = seed_account(settings, runtime.vault, "slack", slack_tokens, expired=True)
        github = seed_account(settings, runtime.vault, "github", github_tokens)
        github_sim.expire_access_tokens()
        async with mcp_client(runtime) as client:
            assert (await call(client, "slack_read_channel", {"channel": "C0GENERAL"}))["status"] == "ok"
            assert (await call(client, "github_search_issues", {"query": "bug"}))["status"] == "ok"
            slack_sim.revoke()
            revoked = await call(client, "slack_read_channel", {"channel": "C0GENERAL"})
        assert revoked["status"] == "reauth_required"
        secrets = [
            slack_tokens.access_token,
            slack_tokens.refresh_token,
            github_tokens.access_token,
            github_tokens.refresh_token,
            "sim-slack-secret",
            "sim-github-secret",
            revoked["magic_link"].rsplit("/", 1)[1],
        ]
        for account in (slack, github):
            current = runtime.vault.credentials.read(account.id)
            secrets += [current.access_token, current.refresh_token]
    finally:
        logging.getLogger().handlers.clear()

    raw = database_contents(settings, runtime.vault.engine)
    logs = stream.getvalue()
    assert "refresh_succeeded" in logs and "reauth_required" in logs  # the logs did capture the story
    assert_no_plaintext(raw, secrets)
    for secret in secrets:
        assert secret not in logs


def test_first_run_creates_a_private_key_file_and_reuses_it(tmp_path):
    key_file = tmp_path / "data" / "vault.key"
    first, created = load_or_create_keyring(None, key_file)
    assert created
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second, created_again = load_or_create_keyring(None, key_file)
    assert not created_again and second.primary_id == first.primary_id


def test_a_key_file_others_can_read_is_refused(tmp_path):
    key_file = tmp_path / "vault.key"
    key_file.write_text(new_key_spec())
    os.chmod(key_file, 0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        load_or_create_keyring(None, key_file)


def test_old_keys_still_open_what_they_sealed_while_the_first_key_seals(tmp_path):
    old_spec, new_spec = new_key_spec(), new_key_spec()
    sealed = Keyring.parse(old_spec).seal(b"secret", b"aad")
    rotated = Keyring.parse(f"{new_spec},{old_spec}")
    assert rotated.open(sealed, b"aad") == b"secret"
    assert rotated.seal(b"x", b"aad").key_id == rotated.primary_id != sealed.key_id
    with pytest.raises(ValueError, match="not configured"):
        Keyring.parse(new_spec).open(sealed, b"aad")


def test_malformed_vault_key_settings_are_clear_errors():
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring.parse("short:c2hvcnQ")
    with pytest.raises(ValueError, match="base64"):
        Keyring.parse("bad:%%%%")
