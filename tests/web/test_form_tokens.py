"""The form-token pieces on their own: keys derived per purpose from the vault keyring, tokens that verify only
for their scope and their browser's nonce, and across a vault key rotation (a page rendered before still works)."""

from __future__ import annotations

import base64

from starlette.requests import Request

from server.vault.crypto import Keyring
from server.web.security import FormGuard, origin_of

OLD = "old:" + base64.urlsafe_b64encode(b"o" * 32).decode().rstrip("=")
NEW = "new:" + base64.urlsafe_b64encode(b"n" * 32).decode().rstrip("=")


def request(cookie: str | None = None) -> Request:
    headers = [(b"cookie", f"gk_form={cookie}".encode())] if cookie else []
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""})


def test_derived_keys_are_per_purpose_per_key_and_never_the_vault_key():
    ring = Keyring.parse(f"{NEW},{OLD}")
    keys = ring.derive("form-token")
    assert len(keys) == 2 and len(set(keys)) == 2 and all(len(key) == 32 for key in keys)
    assert keys == Keyring.parse(f"{NEW},{OLD}").derive("form-token")  # every worker agrees
    assert set(keys).isdisjoint(ring.derive("another-purpose"))
    assert b"n" * 32 not in keys and b"o" * 32 not in keys


def test_a_token_verifies_only_for_its_scope_and_its_browser_and_survives_key_rotation():
    before = FormGuard(Keyring.parse(OLD).derive("form-token"), secure=lambda: False)
    issued = before.issue(request(), "connect:link-a")
    assert issued.new_nonce and issued.nonce not in issued.form_token
    browser = request(issued.nonce)
    assert before.verify(browser, "connect:link-a", issued.form_token)
    assert not before.verify(browser, "connect:link-b", issued.form_token)
    assert not before.verify(request(before.issue(request(), "x").nonce), "connect:link-a", issued.form_token)
    assert not before.verify(request(), "connect:link-a", issued.form_token)
    assert not before.verify(browser, "connect:link-a", None)
    # After rotation (new key first, old kept) the page rendered before still submits; new pages use the new key.
    after = FormGuard(Keyring.parse(f"{NEW},{OLD}").derive("form-token"), secure=lambda: False)
    assert after.verify(browser, "connect:link-a", issued.form_token)
    reissued = after.issue(browser, "connect:link-a")
    assert not reissued.new_nonce and reissued.form_token != issued.form_token
    assert not before.verify(browser, "connect:link-a", reissued.form_token)


def test_the_cookie_is_host_only_on_https():
    assert FormGuard([b"k" * 32], secure=lambda: True).cookie_name == "__Host-gk_form"
    assert FormGuard([b"k" * 32], secure=lambda: False).cookie_name == "gk_form"


def test_origins_are_compared_as_browsers_write_them():
    assert origin_of("https://GK.example.com:443/path") == "https://gk.example.com"
    assert origin_of("http://127.0.0.1:8765") == "http://127.0.0.1:8765"
    assert origin_of("http://[::1]:80/") == "http://[::1]"
    for hostile in ("null", "", "javascript:alert(1)", "http://", "http://host:99999", "file:///etc/passwd"):
        assert origin_of(hostile) is None
