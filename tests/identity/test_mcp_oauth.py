"""The MCP SDK's own OAuth client reaches grantkeeper's HTTP transport from nothing: 401 with `resource_metadata`
→ protected resource metadata → authorization server metadata → client registration (a Client ID Metadata
Document served over loopback https, or dynamic registration) → sign-in at the OIDC simulator and consent, in real
headless Chromium → token → tools as that person. Then refresh rotates, and replaying the spent refresh token
revokes the MCP session (counted in the database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from sqlmodel import Session, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.identity.client_documents import ClientDocuments
from server.identity.models import McpAuthorization, McpClient, McpGrant, McpToken
from server.web.app import build_web_app
from server.web.listener import adopt_public_url, bind, listener_url, listening
from simulators.seeding import seed_account
from tests.identity.conftest import query_of
from tests.support.tls import https_server

pytestmark = [pytest.mark.anyio, pytest.mark.browser]
REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"  # never reached: Chromium's request is intercepted


@pytest.fixture
def env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("GRANTKEEPER_MCP_AUTHORIZATION", "grantkeeper")
    return {**env, "GRANTKEEPER_MCP_AUTHORIZATION": "grantkeeper"}


class ClientDocumentHost:
    """The MCP client's developer's web server: serves its metadata document (and some broken ones) over https."""

    def __init__(self) -> None:
        self.base = ""
        self.app = Starlette(routes=[Route("/{name}.json", self.document)])
        self.hang = anyio.Event()

    def url(self, name: str = "client") -> str:
        return f"{self.base}/{name}.json"

    async def document(self, request: Request) -> Response:
        name = request.path_params["name"]
        good = {
            "client_id": self.url(name),
            "client_name": "Test Agent",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "scope": "tools",
        }
        if name == "wrong-id":
            return JSONResponse({**good, "client_id": self.url("client")})
        if name == "huge":
            return JSONResponse({**good, "client_name": "x" * 20_000})
        if name == "slow":
            await self.hang.wait()
        if name == "uncached":
            return JSONResponse(good, headers={"Cache-Control": "no-store"})
        if name == "secretive":
            return JSONResponse({**good, "token_endpoint_auth_method": "client_secret_basic"})
        return JSONResponse(good, headers={"Cache-Control": "max-age=60"})


@pytest.fixture
async def documents(tmp_path) -> AsyncIterator[tuple[ClientDocumentHost, Any]]:
    host = ClientDocumentHost()
    with https_server(host.app, tmp_path) as (base, trust):
        host.base = base
        yield host, trust
        host.hang.set()


@pytest.fixture
async def web(runtime, documents) -> AsyncIterator[str]:
    _, trust = documents
    sock = bind("127.0.0.1", 0)
    adopt_public_url(runtime.settings, listener_url(sock))
    async with httpx2.AsyncClient(verify=trust, timeout=10) as fetcher:
        app = build_web_app(runtime, transports=("http", "sse"), client_documents_http=fetcher)
        async with listening(app, "127.0.0.1", 0, sock=sock) as listener:
            yield listener.url


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class PersonAtChromium:
    """The redirect and callback handlers of the MCP client: the person signs in and consents in Chromium."""

    def __init__(self, browser: Any, person: str):
        self.browser, self.person = browser, person
        self.landed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.pages_seen: list[str] = []

    async def redirect(self, authorization_url: str) -> None:
        page = await (await self.browser.new_context()).new_page()

        async def capture(route: Any) -> None:
            if not self.landed.done():
                self.landed.set_result(route.request.url)
            await route.fulfill(status=200, body="You can close this tab.")

        await page.route("http://127.0.0.1:9/**", capture)
        await page.goto(authorization_url)  # → consent → sign in first → the IdP's login page
        async with page.expect_navigation(url="**/oauth/consent?**"):
            await page.click(f"#person-{self.person}")
        self.pages_seen.append(await page.content())
        assert await page.inner_text("#client-name") == "Test Agent"
        assert f"{self.person} (org acme)" in await page.inner_text("#person")
        await page.click("#allow")
        await asyncio.wait_for(asyncio.shield(self.landed), 30)

    async def callback(self) -> AuthorizationCodeResult:
        query = query_of(await self.landed)
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))


@asynccontextmanager
async def oauth_session(web: str, provider: OAuthClientProvider) -> AsyncIterator[ClientSession]:
    async with httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(30, read=60)) as client:
        async with streamable_http_client(f"{web}/mcp", http_client=client) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def client_metadata() -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name="Test Agent",
        redirect_uris=[REDIRECT_URI],
        token_endpoint_auth_method="none",
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        scope="tools",
    )


def rows(runtime, model: Any) -> list[Any]:
    with Session(runtime.vault.engine) as session:
        return list(session.exec(select(model)))


async def test_discovery_starts_from_a_401(web):
    async with httpx2.AsyncClient(timeout=10) as client:
        refused = await client.post(f"{web}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        challenge = refused.headers["www-authenticate"]
        assert refused.status_code == 401 and challenge.startswith("Bearer ")
        assert f'resource_metadata="{web}/.well-known/oauth-protected-resource/mcp"' in challenge
        resource = (await client.get(f"{web}/.well-known/oauth-protected-resource/mcp")).json()
        assert resource["resource"] == f"{web}/mcp" and resource["authorization_servers"] == [web]
        metadata = (await client.get(f"{web}/.well-known/oauth-authorization-server")).json()
    assert metadata["client_id_metadata_document_supported"] is True
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "none" in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["registration_endpoint"] == f"{web}/register"


async def run_the_whole_loop(runtime, settings, slack_sim, web, chromium, *, client_metadata_url: str | None):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), user="bob", provider_account_id="T0SIMTEAM:U0SIMUSER")
    storage, person = MemoryStorage(), PersonAtChromium(chromium, "bob")
    provider = OAuthClientProvider(
        f"{web}/mcp", client_metadata(), storage, person.redirect, person.callback, client_metadata_url=client_metadata_url
    )
    async with oauth_session(web, provider) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert {"slack_read_channel", "accounts_list"} <= names
        listed = (await session.call_tool("accounts_list", {})).structured_content
        assert (listed["org"], listed["user"]) == ("acme", "bob")
        assert [account["connector"] for account in listed["accounts"]] == ["slack"]
        read = (await session.call_tool("slack_read_channel", {"channel": "C0GENERAL", "limit": 1})).structured_content
        assert read["status"] == "ok"

        # The access token is short-lived; the client refreshes it, and the refresh token rotates.
        spent_refresh = storage.tokens.refresh_token
        provider.context.token_expiry_time = 1.0  # the client's own clock says "expired": its next request refreshes
        again = (await session.call_tool("accounts_list", {})).structured_content
        assert again["status"] == "ok"
    assert storage.tokens.refresh_token != spent_refresh
    [grant] = rows(runtime, McpGrant)
    assert (grant.org, grant.user, grant.revoked_at) == ("acme", "bob", None)
    refresh_rows = [row for row in rows(runtime, McpToken) if row.kind == "refresh"]
    assert len(refresh_rows) == 2 and sum(row.used_at is not None for row in refresh_rows) == 1

    # Someone replays the spent refresh token: refused, and the whole MCP session is revoked.
    async with httpx2.AsyncClient(timeout=10) as client:
        client_id = storage.client.client_id
        replay = await client.post(
            f"{web}/token", data={"grant_type": "refresh_token", "refresh_token": spent_refresh, "client_id": client_id}
        )
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
        current = await client.post(
            f"{web}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Authorization": f"Bearer {storage.tokens.access_token}", "Accept": "application/json, text/event-stream"},
        )
        assert current.status_code == 401
        rotated = await client.post(
            f"{web}/token",
            data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": storage.tokens.refresh_token},
        )
        assert rotated.status_code == 400
    revoked = [row for row in rows(runtime, McpGrant) if row.revoked_reason == "refresh_token_reused"]
    assert len(revoked) == 1
    # Tokens and codes are stored as hashes only.
    stored = str([row.model_dump() for row in rows(runtime, McpToken) + rows(runtime, McpAuthorization)])
    for secret in (spent_refresh, storage.tokens.refresh_token, storage.tokens.access_token):
        assert secret not in stored
    return storage


async def test_the_sdk_client_signs_in_with_a_client_metadata_document(runtime, settings, slack_sim, web, documents, chromium):
    host, _ = documents
    storage = await run_the_whole_loop(runtime, settings, slack_sim, web, chromium, client_metadata_url=host.url())
    assert storage.client.client_id == host.url()
    assert rows(runtime, McpClient) == []  # nothing registered: the document is the registration


async def test_the_sdk_client_signs_in_with_dynamic_registration(runtime, settings, slack_sim, web, chromium):
    storage = await run_the_whole_loop(runtime, settings, slack_sim, web, chromium, client_metadata_url=None)
    [registered] = rows(runtime, McpClient)
    assert registered.client_id == storage.client.client_id and registered.client_metadata["client_name"] == "Test Agent"


def authorize_params(client_id: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "state": "s1",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "scope": "tools",
        **extra,
    }


@pytest.mark.parametrize(
    "document, says",
    [
        ("http://example.com/client.json", "must use https"),
        ("https://10.1.2.3/client.json", "private or reserved network"),
        ("https://127.0.0.1:1/", "must have a path"),
        ("wrong-id", "client_id is not its own URL"),
        ("huge", "larger than"),
        ("slow", "did not answer within"),
        ("secretive", "authenticates with 'none'"),
    ],
)
async def test_bad_client_metadata_documents_get_clear_errors_and_register_nothing(runtime, web, documents, document, says):
    host, _ = documents
    client_id = document if "://" in document else host.url(document)
    async with httpx2.AsyncClient(timeout=30) as client:
        answer = await client.get(f"{web}/authorize", params=authorize_params(client_id))
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_client"
    assert says in answer.json()["error_description"]
    assert rows(runtime, McpAuthorization) == [] and rows(runtime, McpClient) == []


async def test_a_redirect_uri_the_document_does_not_list_is_refused(runtime, web, documents):
    host, _ = documents
    async with httpx2.AsyncClient(timeout=10) as client:
        answer = await client.get(
            f"{web}/authorize", params=authorize_params(host.url(), redirect_uri="http://127.0.0.1:9/oauth/callback/evil")
        )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    assert rows(runtime, McpAuthorization) == []


async def test_a_token_for_another_resource_is_not_issued(runtime, web, documents):
    host, _ = documents
    async with httpx2.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{web}/authorize", params=authorize_params(host.url(), resource="https://other.example/mcp"))
    assert answer.status_code == 302 and query_of(answer.headers["location"])["error"] == "invalid_target"
    assert rows(runtime, McpAuthorization) == []


async def test_the_consent_answer_needs_the_pages_csrf_token(runtime, web, documents, browser_factory):
    host, _ = documents
    bob = browser_factory()
    await bob.sign_in(web, "bob")
    started = await bob.client.get(f"{web}/authorize", params=authorize_params(host.url()))
    consent_url = started.headers["location"]
    request_token = query_of(consent_url)["request"]
    page = await bob.client.get(consent_url)
    assert "Test Agent" in page.text and "bob (org acme)" in page.text
    forged = await bob.client.post(
        f"{web}/oauth/consent", params={"request": request_token}, data={"csrf_token": "f" * 64, "decision": "allow"}
    )
    assert forged.status_code == 403
    assert all(row.code_hash is None for row in rows(runtime, McpAuthorization))
    declined = await bob.client.post(
        f"{web}/oauth/consent",
        params={"request": request_token},
        data={"csrf_token": page.text.split('name="csrf_token" value="')[1].split('"')[0], "decision": "deny"},
    )
    answer = query_of(declined.headers["location"])
    assert (answer["error"], answer["state"], answer["iss"]) == ("access_denied", "s1", web)


@pytest.fixture
def no_dynamic_registration(runtime):
    runtime.settings.mcp_dynamic_registration = False


async def test_dynamic_registration_can_be_switched_off(no_dynamic_registration, runtime, web):
    async with httpx2.AsyncClient(timeout=10) as client:
        metadata = (await client.get(f"{web}/.well-known/oauth-authorization-server")).json()
        registered = await client.post(f"{web}/register", json=client_metadata().model_dump(mode="json"))
    assert "registration_endpoint" not in metadata and metadata["client_id_metadata_document_supported"] is True
    assert registered.status_code in (404, 405) and rows(runtime, McpClient) == []


async def test_documents_are_cached_as_their_cache_control_says(documents):
    host, trust = documents
    clock = [0.0]
    async with httpx2.AsyncClient(verify=trust, timeout=10) as http:
        fetcher = ClientDocuments(http, clock=lambda: clock[0])
        for _ in range(3):
            assert (await fetcher.client(host.url())).client_name == "Test Agent"
        assert fetcher.fetches == 1  # max-age=60
        clock[0] = 61
        await fetcher.client(host.url())
        assert fetcher.fetches == 2
        for _ in range(2):
            await fetcher.client(host.url("uncached"))
        assert fetcher.fetches == 4  # no-store: every time
