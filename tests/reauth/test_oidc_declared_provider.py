"""A declared OpenID Connect provider against the simulator in stock-OIDC mode: a refresh token without special
settings, the id_token naming the account, forged id_tokens and a rewritten RFC 9207 `iss` refused with nothing
written, and private_key_jwt client authentication."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from simulators import OAuth2Simulator, SimulatorServer
from simulators.oauth2 import ID_TOKEN_FAULTS
from simulators.person import link_user
from tests.support.custom import ACME_CLIENT, ACME_TOOLS, opened_runtime, write_config
from tests.support.mcp import call, mcp_client
from tests.support.web import outcome_of, vault_rows, web_server

pytestmark = pytest.mark.anyio


def oidc_declaration(url: str, *, probe: bool = False, extra: str = "") -> str:
    """A stock OIDC declaration: the issuer, `openid = true`, scopes. No authorize_params, no offline settings."""
    lines = [
        "[custom_providers.acme]",
        'display_name = "Acme"',
        f'api_base_url = "{url}/api"',
        f'issuer = "{url}"',
        "openid = true",
        'scopes = ["projects:read", "projects:write"]',
    ]
    if probe:
        lines.append('health_probe = { path = "/me", account_id_field = "sub" }')
    return "\n".join([*lines, extra, ACME_TOOLS])


@pytest.fixture
def serve(env, oauth2_server: SimulatorServer, isolated_environment: Path, monkeypatch):
    """Serve a fresh OIDC-mode simulator and declare it; returns the simulator."""
    for key, value in ACME_CLIENT.items():
        monkeypatch.setenv(key, value)

    def start(*, probe: bool = False, extra: str = "", **options: object) -> OAuth2Simulator:
        oauth2_server.app = OAuth2Simulator(oidc=True, **options)
        write_config(isolated_environment, oidc_declaration(oauth2_server.url, probe=probe, extra=extra))
        return oauth2_server.app

    return start


EXPECTED_REASON = {"unsigned": "algorithm_not_allowed", "garbage": "malformed", "no_nonce": "wrong_nonce"}


def unchanged_except_links(before: dict, after: dict) -> dict:
    return {name: rows for name, rows in after.items() if name not in ("magic_link", "lifecycle_event") and rows != before[name]}


async def connect(runtime, client, **identity: str):
    first = await call(client, "acme_list_projects", {})
    assert (first["status"], first["reason"]) == ("reauth_required", "not_connected")
    async with link_user() as owner:
        return await owner.reconnect(first["magic_link"], **identity)


async def test_a_stock_oidc_declaration_connects_with_a_refresh_token_and_the_id_token_names_the_account(serve):
    sim = serve()
    async with opened_runtime() as runtime, web_server(runtime), mcp_client(runtime) as client:
        page = await connect(runtime, client, sub="user-42")
        assert outcome_of(page) == "reconnected"
        account = runtime.vault.accounts.find("acme", "alice", "acme")
        credential = runtime.vault.credentials.read(account.id)
        # The refresh token works: expire the access token at the provider and call again.
        sim.expire_access_tokens()
        runtime.tokens.forget(account.id)
        await runtime.tokens.refresh(account, credential.version, trigger="test")
        after = await call(client, "acme_list_projects", {})

    assert credential.refresh_token is not None
    assert sim.counters.endpoint("refresh_token_withheld") == 0
    assert account.provider_account_id == "user-42"  # no health_probe: the verified id_token's sub
    assert (account.status, account.status_reason) == ("active", None)
    assert after["status"] == "ok"
    # offline_access with prompt=consent was asked for, and a nonce that the id_token had to carry back.
    authorize = next(path for method, path in sim.requests if path.startswith("/oauth/authorize?"))
    assert "offline_access" in authorize and "prompt=consent" in authorize and "nonce=" in authorize


async def test_with_a_health_probe_the_probe_names_the_account_and_the_id_token_is_still_checked(serve):
    sim = serve(probe=True)
    sim.id_token_fault = "wrong_audience"
    async with opened_runtime() as runtime, web_server(runtime), mcp_client(runtime) as client:
        page = await connect(runtime, client)
    assert outcome_of(page) == "id_token_invalid"


@pytest.mark.parametrize("fault", ID_TOKEN_FAULTS)  # every forgery the simulator can make
async def test_a_forged_id_token_is_refused_and_nothing_is_written(serve, fault):
    sim = serve()
    sim.id_token_fault = fault
    async with opened_runtime() as runtime, web_server(runtime), mcp_client(runtime) as client:
        first = await call(client, "acme_list_projects", {})
        before = vault_rows(runtime)
        async with link_user() as owner:
            page = await owner.reconnect(first["magic_link"])
        after = vault_rows(runtime)
        events = [e.kind for e in runtime.vault.events.recent()]
    assert outcome_of(page) == "id_token_invalid"
    assert EXPECTED_REASON.get(fault, fault) in page.text  # the page says which check failed (never the token)
    assert unchanged_except_links(before, after) == {}
    assert "reauthorized" not in events
    assert sim.counters.snapshot().get("code_exchanges_ok") == 1  # it was the id_token that failed, not the exchange


async def test_a_rewritten_iss_in_the_callback_is_refused_before_the_code_is_exchanged(serve):
    sim = serve()
    sim.rewrite_iss = "https://attacker.example"
    async with opened_runtime() as runtime, web_server(runtime), mcp_client(runtime) as client:
        first = await call(client, "acme_list_projects", {})
        before = vault_rows(runtime)
        async with link_user() as owner:
            page = await owner.reconnect(first["magic_link"])
        after = vault_rows(runtime)
    assert outcome_of(page) == "issuer_mismatch"
    assert unchanged_except_links(before, after) == {}
    assert sim.counters.snapshot().get("token_requests", 0) == 0


async def test_an_iss_missing_from_a_server_that_advertises_it_is_refused(serve):
    sim = serve()
    async with opened_runtime() as runtime, web_server(runtime), mcp_client(runtime) as client:
        sim.iss_parameter = False  # after start: the metadata grantkeeper read says `iss` is sent
        page = await connect(runtime, client)
    assert outcome_of(page) == "issuer_mismatch"


def _key_pair(directory: Path, name: str) -> tuple[Path, dict]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = directory / f"{name}.pem"
    path.write_bytes(pem)
    path.chmod(0o600)
    return path, RSAKey.import_key(pem).as_dict(private=False)


async def test_private_key_jwt_connects_and_refreshes_and_a_wrong_key_needs_an_administrator(serve, tmp_path, monkeypatch):
    key_file, public = _key_pair(tmp_path, "client")
    _, other_public = _key_pair(tmp_path, "other")
    monkeypatch.delenv("GRANTKEEPER_ACME_CLIENT_SECRET")
    monkeypatch.setenv("GRANTKEEPER_ACME_CLIENT_PRIVATE_KEY_FILE", str(key_file))
    sim = serve(auth_methods=("private_key_jwt",), client_public_key=public, extra='client_auth_method = "private_key_jwt"')
    async with opened_runtime() as runtime, web_server(runtime), mcp_client(runtime) as client:
        page = await connect(runtime, client)
        assert outcome_of(page) == "reconnected"
        account = runtime.vault.accounts.find("acme", "alice", "acme")
        version = runtime.vault.credentials.read(account.id).version
        refreshed = await runtime.tokens.refresh(account, version, trigger="test")
        assert refreshed.version == version + 1

        sim.client_public_key = RSAKey.import_key(other_public)  # the provider no longer knows our key
        sim.expire_access_tokens()  # the next call gets a 401 and refreshes, signing with the key we hold
        result = await call(client, "acme_list_projects", {})

    assert sim.counters.endpoint("client_assertion_ok") == 2  # the code exchange and the refresh
    assert (result["status"], result["reason"]) == ("admin_action_required", "client_credentials_rejected")


@pytest.mark.parametrize(
    ("fault", "reason"), [("huge", "jwks_too_large"), ("malformed", "jwks_malformed"), ("error", "jwks_unavailable")]
)
async def test_a_key_set_that_is_huge_malformed_or_missing_refuses_the_sign_in_and_writes_nothing(serve, fault, reason):
    sim = serve()
    sim.jwks_fault = fault
    async with opened_runtime() as runtime, web_server(runtime), mcp_client(runtime) as client:
        first = await call(client, "acme_list_projects", {})
        before = vault_rows(runtime)
        async with link_user() as owner:
            page = await owner.reconnect(first["magic_link"])
        after = vault_rows(runtime)
    assert outcome_of(page) == "id_token_invalid" and reason in page.text
    assert unchanged_except_links(before, after) == {}


async def test_keys_rotated_by_the_issuer_are_fetched_again_once(serve):
    sim = serve()
    async with opened_runtime() as runtime, web_server(runtime), mcp_client(runtime) as client:
        assert outcome_of(await connect(runtime, client)) == "reconnected"
        sim.rotate_signing_key()
        link = await call(client, "accounts_connect", {"connector": "acme"})
        async with link_user() as owner:
            again = await owner.reconnect(link["magic_link"])
    assert outcome_of(again) == "reconnected"
    assert sim.counters.endpoint("jwks") == 2  # cached for the first sign-in, re-read once for the unknown kid
