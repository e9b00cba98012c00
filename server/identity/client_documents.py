"""Client ID Metadata Documents (CIMD): an MCP client whose `client_id` is an https URL is described by the JSON
document at that URL. Fetched with a deadline and a size cap, https only (http only on loopback), never from a
private-network address unless loopback, cached per the response's Cache-Control; the document's `client_id`
must equal its URL and its `redirect_uris` are matched exactly.

The host is resolved once: every address it resolves to is checked, and the fetch connects to the first of them
(the name kept for Host, SNI and the certificate), so a DNS answer that changes between the check and the
connection (DNS rebinding) cannot point the fetch at a private address."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import ValidationError

from server.identity.fetch import FetchError, fetch_json
from server.settings import is_loopback

MAX_DOCUMENT_BYTES = 5 * 1024
FETCH_DEADLINE_SECONDS = 5.0
DEFAULT_CACHE_SECONDS = 300
MAX_CACHE_SECONDS = 24 * 3600
MAX_URL_LENGTH = 2048
_MAX_AGE = re.compile(r"max-age=(\d+)")


class ClientDocumentError(Exception):
    """Why a client metadata document was refused, in words for the client's developer (no secrets involved)."""


def looks_like_document_url(client_id: str) -> bool:
    return client_id.startswith(("https://", "http://"))


@dataclass
class _Cached:
    client: OAuthClientInformationFull
    until: float


class ClientDocuments:
    def __init__(
        self,
        http: httpx2.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        resolve: Callable[[str], list[str]] | None = None,
    ):
        self.http = http
        self.clock = clock
        self.resolve = resolve or _resolve
        self._cache: dict[str, _Cached] = {}
        self.fetches = 0

    async def client(self, url: str) -> OAuthClientInformationFull:
        cached = self._cache.get(url)
        if cached is not None and cached.until > self.clock():
            return cached.client
        address = await self._checked_address(url)
        try:
            fetched = await fetch_json(
                self.http, url, deadline=FETCH_DEADLINE_SECONDS, max_bytes=MAX_DOCUMENT_BYTES, connect_to=address
            )
        except FetchError as exc:
            raise ClientDocumentError(f"the client metadata document {exc}") from None
        self.fetches += 1
        document = fetched.document
        if document.get("client_id") != url:
            raise ClientDocumentError("the client metadata document's client_id is not its own URL")
        if document.get("token_endpoint_auth_method", "none") != "none" or "client_secret" in document:
            raise ClientDocumentError("a client metadata document client authenticates with 'none' (PKCE), no secret")
        uris = document.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(uri, str) for uri in uris):
            raise ClientDocumentError("the client metadata document lists no redirect_uris")
        try:
            client = OAuthClientInformationFull.model_validate(
                {
                    **document,
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"],
                }
            )
        except ValidationError:
            raise ClientDocumentError("the client metadata document is not valid client metadata") from None
        lifetime = _cache_seconds(fetched.headers.get("cache-control", ""))
        if lifetime > 0:
            self._cache[url] = _Cached(client, self.clock() + lifetime)
        return client

    async def _checked_address(self, url: str) -> str | None:
        """The address to fetch `url` from, once its URL and every address its host resolves to are acceptable;
        None for a loopback host (a developer's own machine), fetched as named."""
        if len(url) > MAX_URL_LENGTH:
            raise ClientDocumentError("the client_id URL is too long")
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.username or parts.password or parts.fragment or not host:
            raise ClientDocumentError("the client_id URL must be a plain https URL")
        if parts.path in ("", "/"):
            raise ClientDocumentError("the client_id URL must have a path")
        if parts.scheme == "http" and not is_loopback(host):
            raise ClientDocumentError("the client_id URL must use https (http only on loopback)")
        if parts.scheme not in ("http", "https"):
            raise ClientDocumentError("the client_id URL must use https")
        if is_loopback(host):
            return None
        addresses = await asyncio.to_thread(self.resolve, host)
        if not addresses:
            raise ClientDocumentError("the client_id URL's host does not resolve")
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if not ip.is_global:
                raise ClientDocumentError("the client_id URL points at a private or reserved network address")
        return addresses[0]


def _resolve(host: str) -> list[str]:
    try:
        # sockaddr[0] is typed `str | int` (some non-IP families); for IP addresses it is the address as text.
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})
    except (socket.gaierror, UnicodeError):
        return []


def _cache_seconds(cache_control: str) -> float:
    directives = cache_control.lower()
    if "no-store" in directives or "no-cache" in directives:
        return 0
    found = _MAX_AGE.search(directives)
    return min(int(found.group(1)), MAX_CACHE_SECONDS) if found else DEFAULT_CACHE_SECONDS
