"""Reading an HTTP answer within a size bound: compressed bytes on the wire and decompressed bytes are both counted
while streaming, and reading stops at the bound, so a gzip bomb or an endless body never gets buffered.

Two doors, one reader: `read_response_bounded` for a streamed response the caller holds (API calls), and
`BoundedTransport` for a client whose caller reads the answer itself (authlib's token requests)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import httpx2

# Headers that described the body as it came over the wire, not the decoded body we keep.
_WIRE_HEADERS = {"content-encoding", "content-length", "transfer-encoding"}
# What BoundedTransport decodes within the bound (what httpx2 decodes without optional packages).
_DECODABLE = {"identity", "gzip", "x-gzip", "deflate"}


class ResponseTooLarge(Exception):
    """The answer went past the limit; what was read of it is dropped."""

    def __init__(self, limit: int):
        super().__init__(f"the answer is larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class BoundedBody:
    content: bytes  # decoded
    cut: bool = False  # reading stopped at the bound (only when the caller asked for a cut instead of a refusal)
    whole_size: int | None = None  # the whole decoded body's size, when known


def _declared_length(response: httpx2.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


async def read_bounded(response: httpx2.Response, limit: int, *, cut: bool = False) -> BoundedBody:
    """The body of a streamed `response`, at most `limit` bytes compressed and decompressed.

    Past the bound: `ResponseTooLarge`, or with `cut` the first `limit` decoded bytes. Either way the connection
    is closed without reading the rest. httpx2 inflates in pieces of at most 1 MiB, so memory stays near `limit`."""
    declared = _declared_length(response)
    encoded = response.headers.get("content-encoding", "identity").lower() not in ("", "identity")
    if declared is not None and declared > limit and not cut:
        await response.aclose()
        raise ResponseTooLarge(limit)
    buffer = bytearray()
    async with contextlib.aclosing(response.aiter_bytes()) as chunks:
        async for chunk in chunks:
            room = limit - len(buffer)
            if len(chunk) > room or response.num_bytes_downloaded > limit:
                await response.aclose()
                if not cut:
                    raise ResponseTooLarge(limit)
                buffer += chunk[: max(room, 0)]
                return BoundedBody(bytes(buffer), cut=True, whole_size=None if encoded else declared)
            buffer += chunk
    return BoundedBody(bytes(buffer), whole_size=len(buffer))


async def read_response_bounded(response: httpx2.Response, limit: int, *, cut: bool = False) -> httpx2.Response:
    """`response` (streamed) with its body read within `limit`, decoded, for classifiers and operations to read
    freely; `ResponseTooLarge` past the bound (unless `cut`). The extensions `body_cut` and `body_size` say whether
    reading stopped at the bound and, when known, how large the whole decoded body was.

    An uncompressed answer that declares a length within the bound is read as it is: h11 reads no byte past a
    declared length, so the bound holds without counting, and the response need not be rebuilt around its body."""
    declared = _declared_length(response)
    plain = response.headers.get("content-encoding", "identity").lower() in ("", "identity")
    if plain and declared is not None and declared <= limit:
        content = await response.aread()
        response.extensions.update(body_cut=False, body_size=len(content))
        return response
    return with_body(response, await read_bounded(response, limit, cut=cut))


def with_body(response: httpx2.Response, body: BoundedBody) -> httpx2.Response:
    """A response carrying the already-read, decoded `body`, for classifiers and operations to read freely."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
    extensions = {"body_cut": body.cut, "body_size": body.whole_size}
    return httpx2.Response(
        response.status_code, headers=headers, content=body.content, request=response.request, extensions=extensions
    )


class UnsupportedEncoding(Exception):
    """The answer is compressed in a way that cannot be decoded with a bound."""


class BoundedTransport(httpx2.AsyncBaseTransport):
    """Wraps the real transport: every answer comes back already read through `read_bounded`, decoded, within
    `limit` bytes — or as `ResponseTooLarge` / `UnsupportedEncoding`, raised out of the client's request."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, limit: int):
        self._inner = inner
        self._limit = limit

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        response.request = request
        for encoding in response.headers.get("content-encoding", "identity").lower().split(","):
            if encoding.strip() not in _DECODABLE and encoding.strip():
                await response.aclose()
                raise UnsupportedEncoding(encoding.strip()[:32])
        try:
            body = await read_bounded(response, self._limit)
        finally:
            await response.aclose()
        return with_body(response, body)

    async def aclose(self) -> None:
        await self._inner.aclose()
