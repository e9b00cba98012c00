"""Bounded JSON fetches from other servers (an IdP's discovery document and JWKS, a client's metadata document):
a total deadline, a size cap, no redirects. A hostile or broken server gets a `FetchError`, never a hang."""

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
    http: httpx2.AsyncClient, url: str, *, deadline: float = 5.0, max_bytes: int = MAX_DOCUMENT_BYTES
) -> Fetched:
    """GET `url` and parse a JSON object, within `deadline` seconds in total and `max_bytes` of body."""
    try:
        with anyio.fail_after(deadline):
            async with http.stream("GET", url, headers={"Accept": "application/json"}, follow_redirects=False) as reply:
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
