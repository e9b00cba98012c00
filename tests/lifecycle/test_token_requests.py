"""What actually goes over the wire to token endpoints: JSON for Zendesk (refresh and code exchange), RFC 6749
form encoding for Google, credentials where each provider reads them; and what comes back is bounded in size."""

from __future__ import annotations

import gzip
import io
import json
import resource
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from server.connectors import load_connectors
from server.lifecycle.oauth import MAX_TOKEN_RESPONSE_BYTES, TokenEndpointError, exchange_code, refresh_grant

pytestmark = pytest.mark.anyio
REDIRECT_URI = "http://127.0.0.1:9/callback"


class Recorder:
    """Keeps the body and headers of every request a simulator receives (an ASGI middleware)."""

    def __init__(self, app):
        self.app = app
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append((headers, body))
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def consent_code(server_url: str, authorize_path: str, client_id: str, **extra: str) -> str:
    with httpx2.Client(base_url=server_url) as client:
        form = {"client_id": client_id, "redirect_uri": REDIRECT_URI, "state": "s", "decision": "allow", **extra}
        location = client.post(authorize_path, data=form).headers["location"]
    return parse_qs(urlsplit(location).query)["code"][0]


async def test_zendesk_refresh_body_is_a_json_object_with_the_client_credentials(settings, zendesk_server, zendesk_sim):
    recorder = zendesk_server.app = Recorder(zendesk_sim)
    tokens = zendesk_sim.issue_grant()

    grant = await refresh_grant(load_connectors(settings)["zendesk"], tokens.refresh_token, deadline=5)

    [(headers, body)] = recorder.requests
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers
    assert json.loads(body) == {
        "grant_type": "refresh_token",
        "refresh_token": tokens.refresh_token,
        "client_id": "sim-zendesk-client",
        "client_secret": "sim-zendesk-secret",
    }
    assert grant.refresh_token != tokens.refresh_token and grant.expires_in == 1800


async def test_zendesk_code_exchange_is_json_too(settings, zendesk_server, zendesk_sim):
    code = consent_code(zendesk_server.url, "/oauth/authorizations/new", "sim-zendesk-client")
    recorder = zendesk_server.app = Recorder(zendesk_sim)

    grant = await exchange_code(
        load_connectors(settings)["zendesk"], code=code, redirect_uri=REDIRECT_URI, code_verifier="v" * 50, timeout=5
    )

    [(headers, body)] = recorder.requests
    assert headers["content-type"] == "application/json"
    sent = json.loads(body)
    assert sent["grant_type"] == "authorization_code" and sent["code"] == code
    assert sent["redirect_uri"] == REDIRECT_URI and sent["client_secret"] == "sim-zendesk-secret"
    assert grant.refresh_token and grant.refresh_expires_in == 2592000


async def test_google_refresh_is_form_encoded_and_keeps_the_refresh_token(settings, google_server, google_sim):
    recorder = google_server.app = Recorder(google_sim)
    tokens = google_sim.issue_grant()

    grant = await refresh_grant(load_connectors(settings)["google"], tokens.refresh_token, deadline=5)

    [(headers, body)] = recorder.requests
    assert headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert parse_qs(body.decode())["grant_type"] == ["refresh_token"]
    assert grant.refresh_token == tokens.refresh_token and grant.expires_in == 3599


async def test_google_offline_code_exchange_yields_a_refresh_token(settings, google_server, google_sim):
    code = consent_code(google_server.url, "/o/oauth2/v2/auth", "sim-google-client", access_type="offline", prompt="consent")
    grant = await exchange_code(
        load_connectors(settings)["google"], code=code, redirect_uri=REDIRECT_URI, code_verifier="v" * 50, timeout=5
    )
    assert grant.refresh_token and grant.refresh_token.startswith("1//0")


class HostileTokenEndpoint:
    """Answers every request with `chunks` (an iterator of bytes) and the given headers."""

    def __init__(self, chunks, headers: list[tuple[bytes, bytes]]):
        self.chunks = chunks
        self.headers = headers

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"), *self.headers]}
        )
        for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def gzip_bomb(decompressed_mib: int) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as archive:
        block = b"0" * (1 << 20)
        for _ in range(decompressed_mib):
            archive.write(block)
    return buffer.getvalue()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


@pytest.mark.parametrize("answer", ["gzip_bomb", "endless_plain"])
async def test_an_oversized_token_answer_is_refused_after_64_kib_without_being_buffered(settings, slack_server, answer):
    if answer == "gzip_bomb":
        bomb = gzip_bomb(512)  # about 0.5 MB on the wire, 512 MiB inflated
        endpoint = HostileTokenEndpoint(
            (bomb[i : i + 16384] for i in range(0, len(bomb), 16384)), [(b"content-encoding", b"gzip")]
        )
    else:
        endpoint = HostileTokenEndpoint((b'{"access_token": "' + b"a" * 65536 for _ in range(200 * 16)), [])  # 200 MiB
    slack_server.app = endpoint
    before = peak_rss_mib()

    with pytest.raises(TokenEndpointError) as refused:
        await refresh_grant(load_connectors(settings)["slack"], "xoxe-1-refresh", deadline=10)

    growth = peak_rss_mib() - before
    # (What the server managed to hand its socket is no measure: after the client hangs up it discards the rest.)
    print(f"\n{answer}: refused; peak memory grew {growth:.1f} MiB")
    assert (refused.value.error, refused.value.maybe_applied) == ("response_too_large", True)
    assert growth < 8
    assert MAX_TOKEN_RESPONSE_BYTES == 64 * 1024
