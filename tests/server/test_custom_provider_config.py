"""Declaring providers: config.toml and a providers file, RFC 8414 discovery, and clear refusals of bad config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from server import cli
from server.connectors import load_connectors
from server.custom_providers.discovery import metadata_url
from server.custom_providers.reading import read_declarations
from server.settings import ConfigError, Settings
from simulators import OAuth2Simulator, SimulatorServer
from simulators.seeding import seed_account
from tests.support.custom import ACME_CLIENT, acme_declaration, opened_runtime, write_config
from tests.support.mcp import call, mcp_client

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = """
[custom_providers.acme]
api_base_url = "https://api.acme.example/v1"
token_url = "https://auth.acme.example/oauth/token"
authorize_url = "https://auth.acme.example/oauth/authorize"
"""
TOOL = """
[[custom_providers.acme.tools]]
name = "list_projects"
description = "List projects."
path = "/projects"
"""


@pytest.fixture
def home(isolated_environment: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in ACME_CLIENT.items():
        monkeypatch.setenv(key, value)
    isolated_environment.mkdir(parents=True, exist_ok=True)
    return isolated_environment


def refused(text: str) -> str:
    write_config(Path(Settings().home), text)
    with pytest.raises(ConfigError) as raised:
        load_connectors(Settings())
    return str(raised.value)


@pytest.fixture
def oauth2(oauth2_server: SimulatorServer):
    """Serve a fresh simulator with the given options; returns (simulator, url)."""

    def serve(**options: object) -> tuple[OAuth2Simulator, str]:
        oauth2_server.app = OAuth2Simulator(**options)
        return oauth2_server.app, oauth2_server.url

    return serve


# ---- declared in config.toml or a file ---------------------------------------------------------------
def test_a_provider_declared_in_config_toml_becomes_a_connector_with_client_credentials_from_the_environment(home):
    write_config(
        home,
        MINIMAL + 'client_auth_method = "client_secret_post"\nscopes = ["read", "write"]\n'
        "default_access_ttl_seconds = 1800\nrotates_refresh_token = false\n" + TOOL,
    )

    acme = load_connectors(Settings())["acme"]

    assert acme.token_url == "https://auth.acme.example/oauth/token"
    assert acme.authorize_url == "https://auth.acme.example/oauth/authorize"
    assert acme.api_url("/projects") == "https://api.acme.example/v1/projects"
    assert (acme.client_id, acme.client_secret) == ("sim-oauth2-client", "sim-oauth2-secret")
    assert acme.spec.display_name == "Acme" and acme.spec.client_auth_method == "client_secret_post"
    assert (acme.spec.scopes, acme.spec.default_access_ttl_seconds, acme.spec.rotates_refresh_token) == (
        ["read", "write"],
        1800,
        False,
    )
    assert {"slack", "github"} <= set(load_connectors(Settings()))


def test_paths_under_oauth_base_url_follow_its_environment_override_like_built_ins(home, monkeypatch):
    write_config(
        home,
        '[custom_providers.acme]\napi_base_url = "https://api.acme.example"\n'
        'oauth_base_url = "https://auth.acme.example"\nauthorize_path = "/authorize"\ntoken_path = "/token"\n',
    )
    monkeypatch.setenv("GRANTKEEPER_ACME_OAUTH_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("GRANTKEEPER_ACME_API_BASE_URL", "http://127.0.0.1:9/api")

    acme = load_connectors(Settings())["acme"]

    assert (acme.token_url, acme.authorize_url) == ("http://127.0.0.1:9/token", "http://127.0.0.1:9/authorize")
    assert acme.spec.client_auth_method == "client_secret_basic"  # RFC 6749 §2.3.1's must-support method
    assert acme.api_url("/x") == "http://127.0.0.1:9/api/x"


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_a_providers_file_named_by_the_environment_is_read_from_the_data_directory(home, monkeypatch, suffix):
    declaration = {
        "custom_providers": {
            "acme": {
                "api_base_url": "https://api.acme.example",
                "token_url": "https://auth.acme.example/token",
                "authorize_url": "https://auth.acme.example/authorize",
                "tools": [{"name": "me", "description": "Who am I.", "path": "/me"}],
            }
        }
    }
    text = (
        json.dumps(declaration)
        if suffix == ".json"
        else (MINIMAL + '[[custom_providers.acme.tools]]\nname = "me"\ndescription = "Who am I."\npath = "/me"\n')
    )
    (home / f"providers{suffix}").write_text(text)
    monkeypatch.setenv("GRANTKEEPER_PROVIDERS_FILE", f"providers{suffix}")

    [(name, (source, parsed))] = read_declarations(Settings()).items()

    assert name == "acme" and source.endswith(f"providers{suffix}")
    assert [tool.name for tool in parsed.tools] == ["me"]


def test_the_same_provider_in_config_toml_and_the_providers_file_is_refused(home, monkeypatch):
    (home / "providers.toml").write_text(MINIMAL)
    monkeypatch.setenv("GRANTKEEPER_PROVIDERS_FILE", str(home / "providers.toml"))
    message = refused(MINIMAL)
    assert "custom provider 'acme' is also declared in config.toml" in message


@pytest.mark.anyio
async def test_the_example_file_declares_working_tools(home, monkeypatch, oauth2):
    sim, url = oauth2()
    sim.add_project("Apollo")
    example = (ROOT / "examples" / "custom-provider.toml").read_text()
    (home / "acme.toml").write_text(example.replace("http://127.0.0.1:8700", url))
    monkeypatch.setenv("GRANTKEEPER_PROVIDERS_FILE", "acme.toml")
    monkeypatch.setenv("GRANTKEEPER_VAULT_KEY", "test:" + "a" * 43)

    async with opened_runtime() as runtime:
        seed_account(
            runtime.settings, runtime.vault, "acme", sim.issue_grant(), expired=True, org="personal", user=runtime.settings.user
        )
        async with mcp_client(runtime) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            listed = await call(client, "acme_list_projects", {"status": "active"})
        probe = await runtime.executor.probe(runtime.vault.accounts.find("personal", runtime.settings.user, "acme"))

    assert {"acme_whoami", "acme_list_projects", "acme_get_project", "acme_create_project"} <= names
    assert listed["status"] == "ok" and listed["data"]["projects"][0]["name"] == "Apollo"
    assert probe.status == "ok" and probe.provider_account_id == "user-1"


# ---- RFC 8414 discovery ------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_a_provider_with_an_issuer_takes_its_endpoints_from_discovery_and_its_tools_work(home, env, oauth2):
    sim, url = oauth2(auth_methods=("client_secret_post",))
    write_config(home, acme_declaration(url, endpoints=f'issuer = "{url}"\n'))

    async with opened_runtime() as runtime:
        acme = runtime.connectors["acme"]
        seed_account(runtime.settings, runtime.vault, "acme", sim.issue_grant(), expired=True)
        async with mcp_client(runtime) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            result = await call(client, "acme_list_projects", {})

    assert (acme.token_url, acme.authorize_url) == (f"{url}/oauth/token", f"{url}/oauth/authorize")
    assert acme.spec.revoke_path == f"{url}/oauth/revoke"
    assert acme.spec.client_auth_method == "client_secret_post"  # the only method the server offers
    assert "acme_list_projects" in names
    assert result["status"] == "ok", result
    assert sim.counters.refreshes_ok == 1
    assert sim.counters.endpoint("metadata") >= 1  # fetched whenever connectors load (here: runtime and seeding)


def test_discovery_prefers_basic_and_explicit_endpoints_win(home, oauth2):
    _sim, url = oauth2()
    write_config(home, acme_declaration(url, endpoints=f'issuer = "{url}"\ntoken_url = "{url}/custom/token"\n'))

    acme = load_connectors(Settings())["acme"]

    assert acme.spec.client_auth_method == "client_secret_basic"
    assert acme.token_url == f"{url}/custom/token" and acme.authorize_url == f"{url}/oauth/authorize"


def test_an_issuer_mismatch_is_refused_naming_both(home, oauth2):
    _sim, url = oauth2(issuer="https://login.other.example")
    message = refused(acme_declaration(url, endpoints=f'issuer = "{url}"\n'))
    assert "custom provider 'acme'" in message and f"{url}/.well-known/oauth-authorization-server" in message
    assert "'https://login.other.example'" in message and f"configured as '{url}'" in message
    assert "RFC 8414" in message


def test_a_server_without_metadata_is_a_clear_error(home, oauth2):
    _sim, url = oauth2(metadata=False)
    message = refused(acme_declaration(url, endpoints=f'issuer = "{url}"\n'))
    assert "custom provider 'acme': discovery at" in message and "answered HTTP 404" in message


def test_an_unreachable_issuer_is_a_clear_error(home):
    with SimulatorServer(OAuth2Simulator()) as gone:
        url = gone.url
    message = refused(acme_declaration(url, endpoints=f'issuer = "{url}"\n'))
    assert "discovery at" in message and "failed: ConnectError" in message


def test_an_endless_metadata_document_is_refused_at_the_size_bound(home, oauth2):
    sim, url = oauth2()
    sim.huge_answer(count=1, size=64 * 1024 * 1024)  # far more than socket buffers hold
    message = refused(acme_declaration(url, endpoints=f'issuer = "{url}"\ndiscovery_url = "{url}/api/me"\n'))
    assert "discovery at" in message and "answered more than 262144 bytes" in message
    assert sim.counters.wait_for("answers_abandoned", 1)  # the rest was never read


def test_a_trickling_metadata_document_is_cut_at_the_discovery_deadline(home, oauth2, monkeypatch):
    import server.custom_providers.discovery

    monkeypatch.setattr(server.custom_providers.discovery, "DISCOVERY_TIMEOUT_SECONDS", 0.5)
    sim, url = oauth2()
    sim.trickle(count=1, interval=0.02)  # each read gets a byte well within the read timeout; the body never ends
    message = refused(acme_declaration(url, endpoints=f'issuer = "{url}"\ndiscovery_url = "{url}/api/me"\n'))
    assert "discovery at" in message and "did not finish answering within 0.5 s" in message
    assert sim.counters.wait_for("answers_abandoned", 1)


def test_a_client_auth_method_the_server_does_not_offer_is_refused(home, oauth2):
    _sim, url = oauth2(auth_methods=("client_secret_basic",))
    message = refused(acme_declaration(url, endpoints=f'issuer = "{url}"\nclient_auth_method = "client_secret_post"\n'))
    assert "client_auth_method 'client_secret_post' is not among" in message


def test_the_metadata_url_inserts_the_well_known_suffix_before_the_issuer_path():
    assert metadata_url("https://auth.example") == "https://auth.example/.well-known/oauth-authorization-server"
    assert metadata_url("https://auth.example/tenant/1") == (
        "https://auth.example/.well-known/oauth-authorization-server/tenant/1"
    )


# ---- refusals ----------------------------------------------------------------------------------------
def test_an_unknown_field_is_named_with_its_provider_tool_and_parameter(home):
    message = refused(MINIMAL + TOOL + 'params = [{ name = "limit", type = "integer", requried = true }]\n')
    assert "config.toml [custom_providers]: custom provider 'acme': " in message
    assert "tools[0] (list_projects).params[0] (limit).requried: unknown field" in message


def test_a_name_that_shadows_a_built_in_provider_is_refused(home):
    message = refused(MINIMAL.replace("custom_providers.acme", "custom_providers.slack"))
    assert "custom provider 'slack': the name shadows the built-in provider 'slack'" in message


@pytest.mark.parametrize("name", ["accounts", "Acme", "acme-crm", "9acme"])
def test_a_reserved_or_malformed_name_is_refused(home, name):
    message = refused(MINIMAL.replace("custom_providers.acme", f'custom_providers."{name}"'))
    assert f"custom provider '{name}'" in message and "name" in message


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("api_base_url", "http://api.acme.example", "api_base_url uses plain http on a non-loopback host"),
        ("token_url", "http://10.0.0.8/token", "token_url uses plain http on a non-loopback host"),
        ("authorize_url", "ftp://auth.acme.example/authorize", "authorize_url must be an absolute http(s) URL"),
        ("api_base_url", "https://user:pw@api.acme.example", "api_base_url must not carry credentials"),
        ("api_base_url", "https://api.acme.example/v1?key=1", "api_base_url may not have a query"),
    ],
)
def test_unsafe_urls_are_refused(home, field, value, problem):
    text = re.sub(rf'^{field} = ".*"$', f'{field} = "{value}"', MINIMAL, flags=re.MULTILINE)
    message = refused(text)
    assert f"custom provider 'acme': {problem}" in message
    assert "pw@" not in message


def test_client_credentials_inside_a_declaration_are_refused_without_echoing_them(home):
    message = refused(MINIMAL + 'client_secret = "s3cr3t-value"\n')
    assert "client_secret do not belong in a provider declaration" in message
    assert "GRANTKEEPER_ACME_CLIENT_SECRET" in message and "s3cr3t-value" not in message


@pytest.mark.parametrize(
    ("tool", "problem"),
    [
        ('path = "/projects/{id}"', "path placeholder {id} has no parameter of that name"),
        ('path = "projects"', "must start with '/'"),
        ('path = "/projects/../admin"', "may not contain '//', '.' or '..' segments"),
        ('path = "https://evil.example/x"', "must start with '/'"),
        ('path = "/projects?all=1"', "may not carry a query or fragment"),
        ('path = "/p"\nparams = [{ name = "q", in = "body" }]', "GET requests carry no body"),
        (
            'path = "/p"\nparams = [{ name = "n", type = "integer", default = "ten" }]',
            "default does not match the parameter's type and constraints",
        ),
        ('path = "/p"\nparams = [{ name = "n", type = "integer", pattern = "[0-9]+" }]', "pattern applies to string"),
        ('path = "/p"\nparams = [{ name = "s", pattern = "([a-z" }]', "is not a valid regular expression"),
        ('path = "/p"\nparams = [{ name = "s", pattern = "(?=a)a" }]', "look-around or backreferences"),
        ('path = "/p"\nparams = [{ name = "class" }]', "is reserved; choose another name"),
        ('path = "/p"\nmethod = "TRACE"', "method: Input should be"),
        ('path = "/p"\nread_only = true\ndestructive = true', "cannot be both read_only and destructive"),
    ],
)
def test_malformed_tool_declarations_are_refused_with_the_reason(home, tool, problem):
    text = MINIMAL + '[[custom_providers.acme.tools]]\nname = "broken"\ndescription = "x"\n' + tool + "\n"
    message = refused(text)
    assert "tools[0] (broken)" in message and problem in message


def test_tool_names_that_collide_once_flattened_are_refused(home, env):
    other = MINIMAL.replace("custom_providers.acme", "custom_providers.acme_x")
    write_config(
        home,
        MINIMAL
        + '[[custom_providers.acme.tools]]\nname = "x_y"\ndescription = "x"\npath = "/a"\n'
        + other
        + '[[custom_providers.acme_x.tools]]\nname = "y"\ndescription = "y"\npath = "/b"\n',
    )
    from server.app import build_server
    from server.runtime import Runtime

    runtime = Runtime.open(Settings())
    try:
        with pytest.raises(ConfigError, match=re.escape("'acme_x.y' would be exposed as 'acme_x_y', which 'acme.x_y' already")):
            build_server(runtime)
    finally:
        import anyio

        anyio.run(runtime.aclose)


def test_the_command_line_reports_a_bad_declaration_as_a_configuration_error(home, capsys):
    write_config(home, MINIMAL + TOOL + 'params = [{ name = "limit", type = "integer", requried = true }]\n')
    assert cli.main(["accounts", "add", "acme"]) == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert error.startswith("grantkeeper: configuration error: invalid custom provider configuration")
    assert "params[0] (limit).requried: unknown field" in error


# ---- conformance settings: OpenID Connect, private_key_jwt, the proxy -------------------------------------
def test_openid_needs_keys_to_verify_id_tokens(home, oauth2):
    _, url = oauth2()  # plain OAuth 2.0: its RFC 8414 document has no jwks_uri
    problem = refused(
        MINIMAL.replace(
            'token_url = "https://auth.acme.example/oauth/token"\nauthorize_url = "https://auth.acme.example/oauth/authorize"\n',
            "",
        )
        + f'issuer = "{url}"\nopenid = true\ndiscovery_url = "{url}/.well-known/oauth-authorization-server"\n'
    )
    assert "jwks_uri" in problem


def test_openid_discovery_reads_the_openid_configuration(home, oauth2):
    _, url = oauth2(oidc=True)
    write_config(
        Path(Settings().home),
        MINIMAL.replace(
            'token_url = "https://auth.acme.example/oauth/token"\nauthorize_url = "https://auth.acme.example/oauth/authorize"\n',
            "",
        )
        + f'issuer = "{url}"\nopenid = true\n',
    )
    spec = load_connectors(Settings())["acme"].spec
    assert (spec.openid, spec.issuer, spec.jwks_uri) == (True, url, f"{url}/oauth/jwks")
    assert spec.authorization_response_iss and spec.request_offline_access
    assert spec.revoke_path is not None  # the discovered revocation endpoint is kept for offboarding


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read"),
        ("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", "not an unencrypted PEM private key"),
        ("ec", "must be an RSA key"),
    ],
)
def test_a_private_key_file_that_cannot_sign_is_a_clear_error_without_its_content(home, tmp_path, monkeypatch, content, problem):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key_file = tmp_path / "client.pem"
    if content == "ec":
        content = (
            ec.generate_private_key(ec.SECP256R1())
            .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            .decode()
        )
    if content is not None:
        key_file.write_text(content)
    monkeypatch.setenv("GRANTKEEPER_ACME_CLIENT_PRIVATE_KEY_FILE", str(key_file))
    message = refused(MINIMAL + 'client_auth_method = "private_key_jwt"\n')
    assert problem in message and "GRANTKEEPER_ACME_CLIENT_PRIVATE_KEY_FILE" in message
    assert "BEGIN" not in message


@pytest.mark.parametrize(
    "params",
    [
        '{ prompt = "consent\\u0000" }',
        '{ "bad name" = "x" }',
        '{ prompt = "' + "x" * 600 + '" }',
        '{ redirect_uri = "https://evil.example" }',
    ],
)
def test_hostile_authorize_params_are_refused(home, params):
    assert "authorize_params" in refused(MINIMAL + f"authorize_params = {params}\n")


def test_an_unknown_proxy_method_is_refused(home, monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_ACME_PROXY_METHODS", "GET,CONNECT")
    with pytest.raises((ConfigError, ValueError), match="CONNECT"):
        Settings()
