"""A provider request's URL is built with its query in one parse, and is exactly the URL httpx2 makes from `params`
— for hostile values too; a path that already carries a query or fragment is left to httpx2's own merging."""

from __future__ import annotations

import httpx2
import pytest

from providers.base import ApiCall
from server import failures
from server.execute import _build_request

BASE = "http://127.0.0.1:9/api/conversations.history"
PARAMS = [
    {"channel": "C0GENERAL", "limit": 1},
    {"q": "a b&c=d/é?#", "n": [1, 2], "flag": True, "off": False, "none": None, "f": 1.5},
    {"key": "x" * 2000},
    {"%2e%2e": "../..", "": "empty name"},
]


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("url", [BASE, BASE + "?existing=1", BASE + "#frag"])
def test_the_url_is_the_one_httpx_makes_from_params(params, url):
    client = httpx2.AsyncClient()
    built = _build_request(client, ApiCall("GET", "/unused", params=params), url, {})
    assert str(built.url) == str(client.build_request("GET", url, params=params).url)


def test_a_url_too_long_to_send_is_invalid_input_and_nothing_is_built():
    client = httpx2.AsyncClient()
    with pytest.raises(failures.InvalidInputError) as refused:
        _build_request(client, ApiCall("GET", "/unused", params={"q": "x" * 100_000}), BASE, {})
    assert refused.value.reason == "request_too_large"
