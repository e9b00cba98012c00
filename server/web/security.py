"""Defences for grantkeeper's own browser pages against other sites: the security headers every page carries, the
same-origin check on state-changing requests, and signed form tokens bound to the browser (CSRF).

    guard = FormGuard(vault.keyring.derive(FORM_TOKEN_PURPOSE), secure=lambda: True)
    issued = guard.issue(request, scope=f"connect:{link.id}")      # GET: put issued.form_token in the form
    guard.set_cookie(response, issued)
    refused = cross_site_reason(request, allowed_origins(public_url, request))   # POST: before anything else
    ok = guard.verify(request, scope=f"connect:{link.id}", submitted=form.get(FORM_TOKEN_FIELD))

A form token is HMAC(key, scope | nonce) where the nonce lives only in an HttpOnly cookie of the browser that
received the page: another site can neither read that cookie nor compute a token for it. The scope binds a token
to one page (one link), so a token taken from one link's page cannot start another link's flow. Tokens are never
stored or logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from server.settings import is_loopback

# Link pages carry a secret in their URL: never cached, never sent on as a Referer, never framed (CSP for today's
# browsers, X-Frame-Options for the ones that predate frame-ancestors).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
}
FORM_TOKEN_PURPOSE = "form-token"
FORM_TOKEN_FIELD = "csrf_token"
NONCE_BYTES = 32
# A state-changing form here is one hidden field; anything much larger is not from our page.
MAX_FORM_BYTES = 4096
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` as a browser writes it in `Origin` (default port left out), or None."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    suffix = f":{port}" if port is not None and port != _DEFAULT_PORTS[parts.scheme] else ""
    return f"{parts.scheme}://{host.lower()}{suffix}"


def allowed_origins(public_url: str, request: Request) -> set[str]:
    """Our public origin, and the origin the browser addressed (its Host header) when that is loopback or the
    public host (a person may open `localhost` where links say `127.0.0.1`). Any other Host is not trusted: under
    DNS rebinding an attacker's name points at us, and its page would be "same-origin" with itself."""
    found = {origin_of(public_url)}
    addressed = origin_of(f"{request.url.scheme}://{request.headers.get('host', '')}/")
    if addressed is not None:
        host = urlsplit(addressed).hostname or ""
        if is_loopback(host) or host == urlsplit(public_url).hostname:
            found.add(addressed)
    return {origin for origin in found if origin}


def cross_site_reason(request: Request, allowed: Iterable[str]) -> str | None:
    """None if a state-changing request may come from one of our own pages; otherwise why it may not.

    - `Sec-Fetch-Site` (set by the browser, never by page script) must be `same-origin` when present;
    - `Origin` must be one of ours when present. `null` is accepted only beside `Sec-Fetch-Site: same-origin`
      (our pages' `Referrer-Policy: no-referrer` makes browsers send `null` on their own form posts); without it,
      `null` is an opaque origin (a sandboxed frame, a data: URL) that nothing vouches for;
    - neither header: not a browser (every current browser sends one on a POST). Such a client cannot be the
      victim of a forged request; it still needs the form token of a page it fetched itself.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return "sec_fetch_site"
    origin = request.headers.get("origin")
    if origin is None:
        return None
    if origin == "null":
        return None if site == "same-origin" else "opaque_origin"
    return None if origin_of(origin) in set(allowed) else "foreign_origin"


@dataclass(frozen=True)
class IssuedToken:
    form_token: str
    nonce: str
    new_nonce: bool


class FormGuard:
    """Issues and checks signed double-submit form tokens. `keys`: the primary first; all of them verify, so a
    page rendered before a vault key rotation still submits."""

    def __init__(self, keys: Sequence[bytes], *, secure: Callable[[], bool]):
        if not keys:
            raise ValueError("FormGuard needs at least one key")
        self._keys = list(keys)
        self._secure = secure

    @property
    def cookie_name(self) -> str:
        # `__Host-` (https only): a cookie no sibling subdomain can plant, so the nonce is this host's own.
        return "__Host-gk_form" if self._secure() else "gk_form"

    def issue(self, request: Request, scope: str) -> IssuedToken:
        """A token for a form on a page about `scope`; reuses the browser's nonce so two open pages both work."""
        nonce = request.cookies.get(self.cookie_name, "")
        new_nonce = not _well_formed(nonce)
        if new_nonce:
            nonce = secrets.token_urlsafe(NONCE_BYTES)
        return IssuedToken(self._sign(self._keys[0], scope, nonce), nonce, new_nonce)

    def set_cookie(self, response: Response, issued: IssuedToken) -> None:
        if issued.new_nonce:
            response.set_cookie(self.cookie_name, issued.nonce, path="/", secure=self._secure(), httponly=True, samesite="lax")

    def verify(self, request: Request, scope: str, submitted: str | None) -> bool:
        nonce = request.cookies.get(self.cookie_name, "")
        if not submitted or not _well_formed(nonce) or len(submitted) > 128:
            return False
        # Every key is tried (no early exit), so the time taken does not say which key matched.
        matches = [hmac.compare_digest(self._sign(key, scope, nonce), submitted) for key in self._keys]
        return any(matches)

    @staticmethod
    def _sign(key: bytes, scope: str, nonce: str) -> str:
        digest = hmac.new(key, f"{scope}\x00{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def bearer_matches(authorization: str, expected: str) -> bool:
    """Whether an `Authorization` header is `Bearer <expected>`, compared in constant time (both sides hashed
    first, so not even the length of the expected token shows in the timing)."""
    scheme, _, presented = authorization.partition(" ")
    same = hmac.compare_digest(hashlib.sha256(presented.strip().encode()).digest(), hashlib.sha256(expected.encode()).digest())
    return same and scheme.lower() == "bearer"


def _well_formed(nonce: str) -> bool:
    return 40 <= len(nonce) <= 64 and nonce.replace("-", "").replace("_", "").isalnum() and nonce.isascii()


async def read_small_form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str] | None:
    """The urlencoded form of a request, or None if it is larger than `limit` bytes or not a form. Read as a
    stream and given up past the limit, so a huge body is never buffered."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", ""):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    try:
        return dict(parse_qsl(body.decode("ascii"), max_num_fields=8))
    except (UnicodeDecodeError, ValueError):
        return None
