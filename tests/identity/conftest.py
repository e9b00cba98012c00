"""Fixtures: the OIDC provider simulator, grantkeeper configured to sign people in through it, its web app, and
a person's browser (an httpx2 client with cookies) that signs in by picking who they are."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from server.runtime import Runtime
from server.web.app import build_web_app
from server.web.listener import adopt_public_url, bind, listener_url, listening
from simulators import OIDCSimulator, SimulatorServer, sign_in_over_http


@pytest.fixture(scope="session")
def idp_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(OIDCSimulator()) as server:
        yield server


@pytest.fixture
def idp(idp_server: SimulatorServer) -> OIDCSimulator:
    simulator = OIDCSimulator(issuer=idp_server.url)
    idp_server.app = simulator
    return simulator


@pytest.fixture
def sign_in_env(idp: OIDCSimulator) -> dict[str, str]:
    """Sign-in settings: org from the `org` claim, user from `preferred_username` (alice, bob, …)."""
    return {
        "GRANTKEEPER_OIDC_ISSUER": idp.issuer or "",
        "GRANTKEEPER_OIDC_CLIENT_ID": idp.client_id,
        "GRANTKEEPER_OIDC_CLIENT_SECRET": idp.client_secret,
        "GRANTKEEPER_OIDC_ORG_CLAIM": "org",
        "GRANTKEEPER_OIDC_USER_CLAIM": "preferred_username",
    }


@pytest.fixture
def env(
    env: dict[str, str], sign_in_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> dict[str, str]:
    if request.node.get_closest_marker("no_sign_in"):
        return env
    for key, value in sign_in_env.items():
        monkeypatch.setenv(key, value)
    return {**env, **sign_in_env}


@pytest.fixture
async def web(runtime: Runtime) -> AsyncIterator[str]:
    """grantkeeper's web app with both HTTP transports, bound before it is built so its resource URL is known."""
    sock = bind("127.0.0.1", 0)
    adopt_public_url(runtime.settings, listener_url(sock))
    app = build_web_app(runtime, transports=("http", "sse"))
    async with listening(app, "127.0.0.1", 0, sock=sock) as listener:
        yield listener.url


class Browser:
    """A person's browser without rendering: keeps cookies, follows grantkeeper's and the IdP's redirects by hand."""

    def __init__(self, client: httpx2.AsyncClient):
        self.client = client

    async def sign_in(self, web: str, person: str, next_path: str = "/login") -> httpx2.Response:
        """Sign in at grantkeeper as `person`; returns the page grantkeeper lands on afterwards."""
        started = await self.client.get(f"{web}/login", params={"next": next_path})
        assert started.status_code == 303, started.text[:300]
        return await self.finish_at_idp(started.headers["location"], person)

    async def finish_at_idp(self, authorize_url: str, person: str) -> httpx2.Response:
        back = await sign_in_over_http(self.client, authorize_url, person)
        landed = await self.client.get(back)
        while landed.status_code in (302, 303) and urlsplit(landed.headers["location"]).netloc in ("", urlsplit(back).netloc):
            landed = await self.client.get(httpx2.URL(back).join(landed.headers["location"]))
        return landed


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """Real headless Chromium (Debian's); tests that use it skip, saying why, where it is missing."""
    from tests.reauth.test_browser_reauth import CHROMIUM, CHROMIUM_ARGS, async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser_factory() -> AsyncIterator:
    clients: list[httpx2.AsyncClient] = []

    def make() -> Browser:
        clients.append(httpx2.AsyncClient(timeout=15))
        return Browser(clients[-1])

    yield make
    for client in clients:
        await client.aclose()
