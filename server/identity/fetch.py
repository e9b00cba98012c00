"""Bounded JSON fetches from other servers (an IdP's discovery document and JWKS, a client's metadata document):
a total deadline, a size cap, no redirects. A hostile or broken server gets a `FetchError`, never a hang.
Optionally pinned to an address already resolved and checked, so the name is not looked up a second time."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2

MAX_DOCUMENT_BYTES = 64 * 1024


class FetchError(Exception):
    """The document could not be had; the message says why in words safe to show (no secrets in URLs here)."""


class DocumentTooLarge(FetchError):
    """The server answered with more than the size cap."""


class NotAJsonObject(FetchError):
    """The server answered, but not with a JSON object."""


@dataclass(frozen=True)
class Fetched:
    document: dict[str, Any]
    headers: httpx2.Headers


async def fetch_json(
    http: httpx2.AsyncClient,
    url: str,
    *,
    deadline: float = 5.0,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    connect_to: str | None = None,
) -> Fetched:
    """GET `url` and parse a JSON object, within `deadline` seconds in total and `max_bytes` of body. With
    `connect_to` (an IP address), connect there instead of resolving the URL's host again."""
    target, pin_headers, extensions = pinned(url, connect_to) if connect_to else (httpx2.URL(url), {}, {})
    try:
        with anyio.fail_after(deadline):
            async with http.stream(
                "GET",
                target,
                headers={"Accept": "application/json", **pin_headers},
                extensions=extensions,
                follow_redirects=False,
            ) as reply:
                if reply.status_code != 200:
                    raise FetchError(f"answered HTTP {reply.status_code}")
                declared = reply.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise DocumentTooLarge(f"is larger than {max_bytes} bytes")
                body = bytearray()
                async for chunk in reply.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise DocumentTooLarge(f"is larger than {max_bytes} bytes")
                headers = reply.headers
    except TimeoutError:
        raise FetchError(f"did not answer within {deadline:g} s") from None
    except httpx2.HTTPError as exc:
        raise FetchError(f"could not be reached ({type(exc).__name__})") from None
    try:
        document = json.loads(bytes(body))
    except ValueError:
        raise NotAJsonObject("is not JSON") from None
    if not isinstance(document, dict):
        raise NotAJsonObject("is not a JSON object")
    return Fetched(document, headers)


def pinned(url: str, address: str) -> tuple[httpx2.URL, dict[str, str], dict[str, str]]:
    """The request for `url` sent to `address`: the address in the URL (so the connection goes there and nowhere
    else), the name in the Host header and, for https, in the TLS SNI and the certificate check. `Connection: close`
    keeps the connection from the pool: a pooled connection is matched by address alone, and must not carry a request
    for another name whose certificate it never checked."""
    original = httpx2.URL(url)
    headers = {"Host": original.netloc.decode("ascii"), "Connection": "close"}
    extensions = {"sni_hostname": original.host} if original.scheme == "https" else {}
    return original.copy_with(host=address), headers, extensions
