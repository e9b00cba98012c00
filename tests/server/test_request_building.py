"""A provider request is the one the connector pool's httpx2 client would build — the URL (its query made in one
parse, for hostile values too; a path that already carries a query or fragment left to httpx2's own merging), the
client's default headers under the call's own, its timeouts — except that it never carries a cookie."""

from __future__ import annotations

import httpx2
import pytest

from providers.base import ApiCall
from server import failures
from server.execute import _build_request
from server.pools import ConnectorPool
from server.settings import Settings

BASE = "http://127.0.0.1:9/api/conversations.history"
PARAMS = [
    {"channel": "C0GENERAL", "limit": 1},
    {"q": "a b&c=d/é?#", "n": [1, 2], "flag": True, "off": False, "none": None, "f": 1.5},
    {"key": "x" * 2000},
    {"%2e%2e": "../..", "": "empty name"},
]


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("url", [BASE, BASE + "?existing=1", BASE + "#frag"])
def test_the_url_is_the_one_httpx_makes_from_params(params, url, settings: Settings):
    pool = ConnectorPool(settings)
    built = _build_request(pool, ApiCall("GET", "/unused", params=params), url, {})
    assert str(built.url) == str(pool.client.build_request("GET", url, params=params).url)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_headers_and_timeouts_are_the_clients_and_the_calls_but_a_cookie_never_is(method, settings: Settings):
    pool = ConnectorPool(settings)
    # The pool's jar keeps none (tests/server/test_cookie_isolation.py); were one there, it is still never sent.
    pool.client.cookies = httpx2.Cookies({"session": "someone-elses"})
    call_headers = {"ACCEPT": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28", "user-agent": "mine"}
    call = ApiCall(method, "/unused", json={"a": 1} if method == "POST" else None)

    built = _build_request(pool, call, BASE, call_headers)
    reference = pool.client.build_request(method, BASE, json=call.json, headers=call_headers)

    assert "cookie" in reference.headers  # what the client's own build would have sent
    assert dict(built.headers) == {key: value for key, value in reference.headers.items() if key != "cookie"}
    assert built.headers.get_list("accept") == ["application/vnd.github+json"]  # replaced, not doubled
    assert built.extensions["timeout"] == reference.extensions["timeout"] == pool.client.timeout.as_dict()
    assert built.content == reference.content


def test_a_url_too_long_to_send_is_invalid_input_and_nothing_is_built(settings: Settings):
    with pytest.raises(failures.InvalidInputError) as refused:
        _build_request(ConnectorPool(settings), ApiCall("GET", "/unused", params={"q": "x" * 100_000}), BASE, {})
    assert refused.value.reason == "request_too_large"
