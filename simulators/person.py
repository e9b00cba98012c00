"""The account owner in a browser, minus the rendering: opens a grantkeeper magic link, presses Continue, answers
a simulator's consent page and follows the redirect back. The demo and the tests use it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx2


class LinkUser:
    """The account owner with a browser (cookies kept), minus the rendering: opens the link, presses Continue,
    answers the provider's consent page, and follows the redirect back to grantkeeper."""

    def __init__(self, client: httpx2.AsyncClient):
        self.client = client

    async def open(self, link: str) -> httpx2.Response:
        return await self.client.get(link)

    async def start(self, link: str) -> httpx2.Response:
        """Press Continue on the link's page: a 303 to the provider's authorize URL when the link is good, a refusal
        page if not. Like a browser, it posts the page's hidden fields with its own origin."""
        page = await self.open(link)
        form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
        parts = urlsplit(link)
        headers = {"Origin": f"{parts.scheme}://{parts.netloc}", "Sec-Fetch-Site": "same-origin"}
        return await self.client.post(link, data=form, headers=headers)

    async def consent(self, authorize_url: str, decision: str = "allow", **identity: str) -> str:
        """Answer the simulator's consent page (signing in as `identity` if given); returns the callback URL."""
        page = await self.client.get(authorize_url)
        assert page.status_code == 200 and 'id="allow"' in page.text, page.text[:500]
        parts = urlsplit(authorize_url)
        form = {**dict(parse_qsl(parts.query)), **identity, "decision": decision}
        answer = await self.client.post(urlunsplit(parts._replace(query="")), data=form)
        assert answer.status_code == 302, answer.text[:500]
        return answer.headers["location"]

    async def reconnect(self, link: str, decision: str = "allow", **identity: str) -> httpx2.Response:
        """The whole loop; returns grantkeeper's final page."""
        started = await self.start(link)
        assert started.status_code == 303, started.text[:800]
        return await self.client.get(await self.consent(started.headers["location"], decision, **identity))


@asynccontextmanager
async def link_user() -> AsyncIterator[LinkUser]:
    async with httpx2.AsyncClient(timeout=30) as client:
        yield LinkUser(client)
