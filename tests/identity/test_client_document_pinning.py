"""A Client ID Metadata Document is fetched from the address its host resolved to when it was checked: the name is
looked up once, so a DNS answer that changes afterwards (DNS rebinding: a public address for the check, a private
one for the fetch) cannot point the fetch elsewhere, and the certificate is still checked for the name.

The DNS is ClientDocuments' resolver seam; the network is a real one whose routing table sends the public address
to a loopback https server (the client developer's), as the internet would."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpcore2
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.identity.client_documents import ClientDocumentError, ClientDocuments
from tests.support.tls import https_server

pytestmark = pytest.mark.anyio
NAME = "client.example"
DOCUMENT_URL = f"https://{NAME}/client.json"
PUBLIC = "93.184.215.14"  # a global address: passes the private-network check


class RebindingDns:
    """Answers the public address the first time and a loopback one after: an attacker's DNS with a short TTL."""

    def __init__(self, *answers: list[str]):
        self.answers = list(answers)
        self.lookups: list[str] = []

    def __call__(self, host: str) -> list[str]:
        self.lookups.append(host)
        return self.answers[min(len(self.lookups), len(self.answers)) - 1]


class Internet(httpcore2.AsyncNetworkBackend):
    """Real TCP, routed: a name is looked up in `dns`, then an address reaches the loopback port `routes` gives it.
    Every connection's destination is recorded."""

    def __init__(self, dns: RebindingDns, routes: dict[tuple[str, int], int]):
        self.dns, self.routes = dns, routes
        self.connections: list[tuple[str, int]] = []
        self.tcp = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        address = host if host[0].isdigit() else self.dns(host)[0]
        self.connections.append((address, port))
        if (address, port) not in self.routes:
            raise httpcore2.ConnectError(f"no route to {address}")
        return await self.tcp.connect_tcp("127.0.0.1", self.routes[(address, port)], timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self.tcp.sleep(seconds)


class DeveloperSite:
    """The client developer's https server: serves the metadata document and notes the Host of each request."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.app = Starlette(routes=[Route("/client.json", self.document)])

    async def document(self, request: Request) -> Response:
        self.hosts.append(request.headers["host"])
        return JSONResponse(
            {"client_id": DOCUMENT_URL, "client_name": "Pinned Agent", "redirect_uris": ["http://127.0.0.1:9/cb"]},
            headers={"Cache-Control": "no-store"},
        )


@contextmanager
def world(tmp_path: Path, dns: RebindingDns, certificate_for: str) -> Iterator[tuple[ClientDocuments, Internet, DeveloperSite]]:
    site = DeveloperSite()
    with https_server(site.app, tmp_path, dns_names=(certificate_for,)) as (base, trust):
        internet = Internet(dns, {(PUBLIC, 443): httpx2.URL(base).port or 443})
        transport = httpx2.AsyncHTTPTransport(verify=trust)
        # httpx2 takes no network backend of its own: its connection pool is swapped for one on the routed network.
        transport._pool = httpcore2.AsyncConnectionPool(ssl_context=trust, network_backend=internet)
        yield ClientDocuments(httpx2.AsyncClient(transport=transport, timeout=10), resolve=dns), internet, site


async def test_the_fetch_connects_to_the_address_that_was_checked(tmp_path):
    dns = RebindingDns([PUBLIC], ["127.0.0.1"])
    with world(tmp_path, dns, certificate_for=NAME) as (documents, internet, site):
        for _ in range(2):  # no-store: fetched each time, and each time pinned to that time's check
            client = await documents.client(DOCUMENT_URL)
            assert client.client_name == "Pinned Agent"
            dns.lookups.clear()
            dns.answers = [[PUBLIC], ["127.0.0.1"]]
    assert internet.connections == [(PUBLIC, 443), (PUBLIC, 443)]  # never the rebound loopback address
    assert site.hosts == [NAME, NAME]  # the name travels in the Host header


async def test_a_pinned_fetch_still_checks_the_certificate_for_the_name(tmp_path):
    with world(tmp_path, RebindingDns([PUBLIC]), certificate_for="someone-else.example") as (documents, internet, site):
        with pytest.raises(ClientDocumentError, match="could not be reached"):
            await documents.client(DOCUMENT_URL)
    assert internet.connections == [(PUBLIC, 443)] and site.hosts == []


async def test_a_name_resolving_to_any_private_address_is_not_fetched(tmp_path):
    dns = RebindingDns([PUBLIC, "10.0.0.7"])
    with world(tmp_path, dns, certificate_for=NAME) as (documents, internet, site):
        with pytest.raises(ClientDocumentError, match="private or reserved network"):
            await documents.client(DOCUMENT_URL)
    assert internet.connections == [] and site.hosts == [] and dns.lookups == [NAME]
