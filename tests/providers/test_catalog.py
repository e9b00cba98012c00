"""The catalog of ready declarations: every entry loads by name, cites its documentation, and passes a conformance
run against the OAuth 2.0 simulator configured with that entry's documented quirks (token lifetime, rotation,
client authentication, token body encoding, refresh-token error code, identity endpoint) — connect through a magic
link, refresh, rotation, revocation, and the grant declared dead afterwards."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from providers import catalog
from providers.custom import ProviderDeclaration
from server.connectors import load_connectors
from server.lifecycle.oauth import revoke_grant
from server.settings import ConfigError, Settings
from simulators import OAuth2Simulator, SimulatorServer
from simulators.person import link_user
from tests.support.custom import opened_runtime, write_config
from tests.support.mcp import call, mcp_client
from tests.support.web import outcome_of, web_server

pytestmark = pytest.mark.anyio
EXPECTED = {
    "linear",
    "notion",
    "atlassian",
    "hubspot",
    "salesforce",
    "microsoft_graph",
    "gitlab",
    "asana",
    "dropbox",
    "box",
    "discord",
    "intercom",
    "figma",
    "airtable",
    "monday",
}


def declaration_of(name: str) -> ProviderDeclaration:
    return ProviderDeclaration.model_validate(catalog.load(name), context={"provider": name})


def test_the_catalog_has_the_promised_entries_and_ships_as_package_data():
    assert set(catalog.names()) >= EXPECTED
    shipped = {item.name for item in resources.files("providers.catalog").iterdir()}
    assert {f"{name}.toml" for name in EXPECTED} <= shipped
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"*.toml"' in pyproject


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_entry_cites_its_documentation(name):
    text = resources.files("providers.catalog").joinpath(f"{name}.toml").read_text()
    declaration = declaration_of(name)
    cited = re.findall(r"^#.*?(https://\S+)", text, flags=re.MULTILINE)
    assert declaration.docs_url is not None and declaration.docs_url.startswith("https://")
    assert "Sources:" in text and cited, f"{name} must cite the pages it was taken from"
    assert declaration.health_probe is not None and declaration.health_probe.account_id_field
    assert 2 <= len(declaration.tools) <= 4


@pytest.mark.parametrize("hostile", ["../../../etc/passwd", "linear/../notion", "LINEAR", "", "x" * 200, "nope"])
def test_an_unknown_or_hostile_catalog_name_is_a_clear_error(hostile, isolated_environment, monkeypatch):
    isolated_environment.mkdir(parents=True, exist_ok=True)
    write_config(isolated_environment, f'[custom_providers.mine]\nfrom_catalog = "{hostile}"\n')
    with pytest.raises(ConfigError, match="is not in the catalog"):
        load_connectors(Settings())


def test_keys_beside_from_catalog_override_the_entry(isolated_environment):
    isolated_environment.mkdir(parents=True, exist_ok=True)
    write_config(
        isolated_environment,
        '[custom_providers.gitlab_work]\nfrom_catalog = "gitlab"\n'
        'api_base_url = "https://gitlab.example.com/api/v4"\nscopes = ["read_user"]\n',
    )
    connector = load_connectors(Settings())["gitlab_work"]
    assert connector.spec.api_base_url == "https://gitlab.example.com/api/v4"
    assert connector.spec.scopes == ["read_user"]
    assert connector.token_url == "https://gitlab.com/oauth/token"  # not overridden: the entry's
    assert connector.revoke_url == "https://gitlab.com/oauth/revoke"


def simulator_for(declaration: ProviderDeclaration) -> OAuth2Simulator:
    """The standards-following simulator, behaving as the entry says the provider behaves."""
    probe = declaration.health_probe
    assert probe is not None and probe.account_id_field is not None
    return OAuth2Simulator(
        access_ttl=declaration.default_access_ttl_seconds or None,
        rotation=declaration.rotates_refresh_token,
        auth_methods=(declaration.client_auth_method or "client_secret_basic",),
        refresh_tokens="always" if declaration.issues_refresh_token else "never",
        refresh_error=((declaration.errors.refresh_token_rejected or ["invalid_grant"])[0], 400),
        probe_route=(probe.method, probe.path, probe.account_id_field),
        default_scopes=declaration.scopes,
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_catalog_entry_conformance(name, env, oauth2_server: SimulatorServer, isolated_environment, monkeypatch):
    declaration = declaration_of(name)
    sim = oauth2_server.app = simulator_for(declaration)
    url = oauth2_server.url
    overrides = {"api_base_url": url, "authorize_url": f"{url}/oauth/authorize", "token_url": f"{url}/oauth/token"}
    if declaration.revoke_url:
        overrides["revoke_url"] = f"{url}/oauth/revoke"
    if declaration.refresh_url:
        overrides["refresh_url"] = f"{url}/oauth/token"
    write_config(
        isolated_environment,
        f'[custom_providers.{name}]\nfrom_catalog = "{name}"\n'
        + "".join(f'{key} = "{value}"\n' for key, value in overrides.items()),
    )
    monkeypatch.setenv(f"GRANTKEEPER_{name.upper()}_CLIENT_ID", "sim-oauth2-client")
    monkeypatch.setenv(f"GRANTKEEPER_{name.upper()}_CLIENT_SECRET", "sim-oauth2-secret")
    # This run is about the provider; who may open an agent's connect link is proven in tests/identity.
    monkeypatch.setenv("GRANTKEEPER_ALLOW_UNVERIFIED_CONNECT_LINKS", "true")

    async with opened_runtime() as runtime, web_server(runtime), mcp_client(runtime) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        first = await call(client, "accounts_connect", {"connector": name})
        # connect: the user approves at the (simulated) provider; the entry's probe names the account
        async with link_user() as owner:
            page = await owner.reconnect(first["magic_link"], sub=f"{name}-user")
        assert outcome_of(page) == "reconnected", page.text[:400]
        account = runtime.vault.accounts.find("acme", "alice", name)
        connected = runtime.vault.credentials.read(account.id)

        if declaration.issues_refresh_token:
            # refresh, and rotation as documented
            refreshed = await runtime.tokens.refresh(account, connected.version, trigger="conformance")
            rotated = refreshed.refresh_token != connected.refresh_token
        connector = runtime.connectors[name]
        # revocation: RFC 7009 at the declared endpoint, or the user revoking at the provider
        if connector.revoke_url is not None:
            current = runtime.vault.credentials.read(account.id)
            assert await revoke_grant(connector, current.refresh_token or current.access_token, timeout=5)
        else:
            sim.revoke()
        runtime.executor.forget_account(account)
        probe = await runtime.executor.probe(account)
        after = runtime.vault.accounts.find("acme", "alice", name)

    assert {f"{name}_{tool.name}" for tool in declaration.tools} <= tools
    assert account.provider_account_id == f"{name}-user"
    if declaration.issues_refresh_token:
        assert connected.refresh_token is not None and account.status_reason is None
        assert refreshed.version == connected.version + 1
        assert sim.counters.refreshes_ok == 1
        assert rotated is declaration.rotates_refresh_token
    else:
        assert connected.refresh_token is None
        # a token that does not expire is no dead end: active without qualification
        assert connected.access_expires_at is None and (account.status, account.status_reason) == ("active", None)
    assert sim.counters.endpoint("revoke") == (1 if declaration.revoke_url else 0)
    assert probe.status == "reauth_required"
    assert after.status == "reauth_required"
