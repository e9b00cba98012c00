"""The HTTP transport of token requests: an answer is bounded in size, compressed and decompressed, while it is
read, so a huge or endlessly long token response is refused after `limit` bytes instead of being buffered."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import httpx2

# A token response is a few hundred bytes; the largest real ones (JWT access tokens with many claims) a few KiB.
MAX_TOKEN_RESPONSE_BYTES = 64 * 1024
# zlib's window bits that accept both a gzip and a zlib (deflate) header.
_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS


class ResponseTooLarge(Exception):
    """The answer went past the limit; what was read of it is dropped."""


class UnsupportedEncoding(Exception):
    """The answer is compressed in a way that cannot be decoded with a bound (we asked for identity)."""


class _BoundedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, encoding: str, limit: int):
        self._inner = inner
        self._limit = limit
        self._decoder = (
            None
            if encoding == "identity"
            else (zlib.decompressobj(_GZIP_OR_ZLIB) if encoding in ("gzip", "x-gzip") else zlib.decompressobj())
        )
        self._raw = 0
        self._decoded = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._raw += len(chunk)
            if self._raw > self._limit:
                raise ResponseTooLarge(f"more than {self._limit} bytes on the wire")
            if self._decoder is None:
                yield chunk
                continue
            # max_length: never inflate more than the limit (plus one byte, to notice going past it) at once.
            data = self._decoder.decompress(chunk, self._limit - self._decoded + 1)
            self._decoded += len(data)
            if self._decoded > self._limit or self._decoder.unconsumed_tail:
                raise ResponseTooLarge(f"more than {self._limit} bytes once decompressed")
            yield data

    async def aclose(self) -> None:
        await self._inner.aclose()


class BoundedTransport(httpx2.AsyncBaseTransport):
    """Wraps the real transport; answers come back with their body decoded here, within `limit`."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, limit: int = MAX_TOKEN_RESPONSE_BYTES):
        self._inner = inner
        self._limit = limit

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        encoding = response.headers.get("content-encoding", "identity").strip().lower() or "identity"
        declared = response.headers.get("content-length", "")
        if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
            await response.aclose()
            raise UnsupportedEncoding(encoding[:32])
        if declared.isdigit() and int(declared) > self._limit:
            await response.aclose()
            raise ResponseTooLarge(f"declared {declared} bytes")
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in (b"content-encoding", b"content-length")]
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        return httpx2.Response(
            response.status_code,
            headers=headers,
            request=request,
            extensions=response.extensions,
            stream=_BoundedStream(response.stream, encoding, self._limit),
        )

    async def aclose(self) -> None:
        await self._inner.aclose()
