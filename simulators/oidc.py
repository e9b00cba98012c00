"""An OpenID Connect provider for tests and demos: the organisation's identity provider (Google Workspace, Okta,
Entra ID, Keycloak) minus the outside world.

- Discovery at `/.well-known/openid-configuration`, JWKS at `/jwks` (keys rotate; the old key stays published
  until retired, as real providers do), RS256-signed id_tokens, `/userinfo`.
- Authorization code with PKCE (S256 only), `state` and `nonce` carried through, RFC 9207 `iss` in the
  authorization response (advertised as `authorization_response_iss_parameter_supported`).
- A login page where a test person picks who they are (a button per person, `#person-<key>`), so Chromium or a
  plain HTTP client can drive it (`sign_in_over_http`). People's claims (email, groups, org) are configurable.
- Controls for tests, in Python and under `/_sim/`: rotate keys, add people, forge tokens (wrong aud/iss,
  expired, not yet valid, `alg: none`, bad signature, unknown kid) or bend the next id_token issued. The forge
  also stands in for an external authorization server's JWT access tokens (resource-server-only mode).
"""

from __future__ import annotations

import base64
import hmac
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx2
import jinja2
from joserfc import jwt
from joserfc.jwk import RSAKey
from markupsafe import escape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .base import basic_credentials, bearer_token, read_params
from .faults import Counters
from .grants import pkce_s256

DISCOVERY_PATH = "/.well-known/openid-configuration"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_page = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} (simulated) – sign in</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto}button{display:block;margin:.5rem 0;
padding:.4rem 1.2rem}</style></head>
<body><h1>{{ title }} <small>(simulator)</small></h1>
<p id="request">Sign in to <strong id="client-name">{{ client_id }}</strong>. Who are you?</p>
<form method="post" action="{{ action }}">
{% for name, value in hidden.items() %}<input type="hidden" name="{{ name }}" value="{{ value }}">
{% endfor %}{% for key, person in people.items() %}<button type="submit" id="person-{{ key }}" name="person"
 value="{{ key }}">{{ person.get("name", key) }} &lt;{{ person.get("email", "") }}&gt;</button>
{% endfor %}<button type="submit" id="deny" name="decision" value="deny">Cancel</button>
</form></body></html>""")


def _person(key: str, name: str, domain: str, org: str, groups: list[str]) -> dict[str, Any]:
    return {
        "sub": f"u-{key}",
        "preferred_username": key,
        "email": f"{key}@{domain}",
        "email_verified": True,
        "name": name,
        "groups": groups,
        "org": org,
    }


DEFAULT_PEOPLE: dict[str, dict[str, Any]] = {
    "alice": _person("alice", "Alice Archer", "acme.test", "acme", ["engineering", "grantkeeper-admins"]),
    "bob": _person("bob", "Bob Baker", "acme.test", "acme", ["engineering"]),
    "mallory": _person("mallory", "Mallory Moss", "acme.test", "acme", ["sales"]),
    "carol": _person("carol", "Carol Cruz", "globex.test", "globex", ["engineering"]),
    "eve": _person("eve", "Eve Evans", "elsewhere.test", "elsewhere", []),
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig", "alg": "RS256"}, private=True)


def kid_of(key: RSAKey) -> str:
    """The kid of a signing key a simulator generated (each is generated with one; joserfc types it optional)."""
    if key.kid is None:
        raise ValueError("a simulator's signing key has no kid")
    return key.kid


@dataclass
class OIDCClient:
    client_id: str
    client_secret: str
    redirect_uris: list[str] = field(default_factory=list)  # empty: any redirect URI (a test convenience)


@dataclass
class _PendingCode:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    person: str
    scope: str
    expires_at: float


class OIDCSimulator:
    """An OpenID Provider. Serve it with `SimulatorServer(OIDCSimulator())`; its issuer is the server's URL unless
    `issuer` is given (the first request fixes it otherwise)."""

    provider_title = "Sim IdP"

    def __init__(
        self,
        *,
        issuer: str | None = None,
        client_id: str = "sim-oidc-client",
        client_secret: str = "sim-oidc-secret",
        people: dict[str, dict[str, Any]] | None = None,
        id_token_ttl: int = 300,
        clock: Callable[[], float] = time.time,
        send_iss_in_response: bool = True,
    ) -> None:
        self.issuer = issuer.rstrip("/") if issuer else None
        self.clients = {client_id: OIDCClient(client_id, client_secret)}
        self.client_id, self.client_secret = client_id, client_secret
        self.people = {key: dict(claims) for key, claims in (people or DEFAULT_PEOPLE).items()}
        self.id_token_ttl = id_token_ttl
        self.clock = clock
        self.send_iss_in_response = send_iss_in_response
        self.counters = Counters()
        self._lock = threading.RLock()
        self._keys: list[RSAKey] = [new_signing_key()]  # the first one signs; the rest stay published
        self._codes: dict[str, _PendingCode] = {}
        self._access: dict[str, str] = {}  # access token -> person
        # Bends applied to the id_token of the next code exchange (see `forge`), so a relying party's checks can
        # be attacked through the real flow.
        self.bend_next_id_token: dict[str, Any] = {}
        self.issued_id_tokens: list[str] = []
        self.app = Starlette(
            routes=[
                Route(DISCOVERY_PATH, self.discovery, methods=["GET"]),
                Route("/jwks", self.jwks, methods=["GET"]),
                Route("/authorize", self.authorize_page, methods=["GET"]),
                Route("/authorize", self.authorize_decision, methods=["POST"]),
                Route("/token", self.token, methods=["POST"]),
                Route("/userinfo", self.userinfo, methods=["GET", "POST"]),
                Route("/_sim/stats", self.stats_endpoint, methods=["GET"]),
                Route("/_sim/rotate-keys", self.rotate_endpoint, methods=["POST"]),
                Route("/_sim/people", self.people_endpoint, methods=["POST"]),
                Route("/_sim/forge", self.forge_endpoint, methods=["POST"]),
                Route("/_sim/bend-next-id-token", self.bend_endpoint, methods=["POST"]),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    # ---- controls (Python) --------------------------------------------------------------------------------
    def issuer_for(self, request: Request | None = None) -> str:
        with self._lock:
            if self.issuer is None:
                if request is None:
                    raise RuntimeError("the issuer is not known until the simulator has been served once")
                self.issuer = str(request.base_url).rstrip("/")
            return self.issuer

    def rotate_keys(self, *, retire_old: bool = False) -> str:
        """A new signing key; the previous ones stay in the JWKS unless retired. Returns the new kid."""
        key = new_signing_key()
        with self._lock:
            self._keys = [key] + ([] if retire_old else self._keys)
        return kid_of(key)

    @property
    def signing_kid(self) -> str:
        return kid_of(self._keys[0])

    def add_client(self, client_id: str, client_secret: str, redirect_uris: list[str] | None = None) -> None:
        with self._lock:
            self.clients[client_id] = OIDCClient(client_id, client_secret, list(redirect_uris or []))

    def add_person(self, key: str, **claims: Any) -> None:
        with self._lock:
            self.people[key] = {"sub": f"u-{key}", **claims}

    def forge(
        self,
        person: str = "alice",
        *,
        aud: str | list[str] | None = None,
        iss: str | None = None,
        nonce: str | None = None,
        expires_in: int | None = None,
        not_before_in: int | None = None,
        alg: str = "RS256",
        bad_signature: bool = False,
        unknown_kid: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A signed JWT for `person`, bent as asked. `expires_in` negative: already expired; `not_before_in`
        positive: not yet valid; `alg="none"`: unsigned; `bad_signature`: one signature byte flipped;
        `unknown_kid`: signed by a key the JWKS never published."""
        now = int(self.clock())
        claims: dict[str, Any] = {
            **self.people[person],
            "iss": iss or self.issuer_for(),
            "aud": aud or self.client_id,
            "iat": now,
            "exp": now + (self.id_token_ttl if expires_in is None else expires_in),
        }
        if not_before_in is not None:
            claims["nbf"] = now + not_before_in
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(extra or {})
        if alg == "none":
            header = {"alg": "none", "typ": "JWT"}
            return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
        key = new_signing_key() if unknown_kid else self._keys[0]
        token = jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key)
        if bad_signature:
            head, body, signature = token.split(".")
            raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
            raw[0] ^= 0x01
            token = f"{head}.{body}.{_b64(bytes(raw))}"
        return token

    # ---- protocol --------------------------------------------------------------------------------------
    async def discovery(self, request: Request) -> Response:
        issuer = self.issuer_for(request)
        return JSONResponse(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "userinfo_endpoint": f"{issuer}/userinfo",
                "jwks_uri": f"{issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile", "groups"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code"],
                "claims_supported": ["sub", "email", "email_verified", "name", "groups", "org"],
                "authorization_response_iss_parameter_supported": self.send_iss_in_response,
            }
        )

    async def jwks(self, request: Request) -> Response:
        self.counters.hit("jwks")
        with self._lock:
            keys = [key.as_dict(private=False) for key in self._keys]
        return JSONResponse({"keys": keys}, headers={"Cache-Control": "max-age=300"})

    def _authorize_error(self, params: dict[str, str]) -> str | None:
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            return "unknown client_id"
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or (client.redirect_uris and redirect_uri not in client.redirect_uris):
            return "redirect_uri is not registered for this client"
        if params.get("response_type") != "code":
            return "response_type must be code"
        if "openid" not in params.get("scope", "").split():
            return "scope must include openid"
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return "PKCE with S256 is required"
        return None

    async def authorize_page(self, request: Request) -> Response:
        self.counters.hit("authorize")
        params = dict(request.query_params)
        if error := self._authorize_error(params):
            return HTMLResponse(f"<h1>Bad request</h1><p id='error'>{escape(error)}</p>", 400)
        hidden = {
            key: params[key]
            for key in (
                "client_id",
                "redirect_uri",
                "response_type",
                "state",
                "nonce",
                "scope",
                "code_challenge",
                "code_challenge_method",
            )
            if key in params
        }
        with self._lock:
            people = {key: dict(claims) for key, claims in self.people.items()}
        return HTMLResponse(
            _page.render(
                title=self.provider_title, client_id=params["client_id"], hidden=hidden, people=people, action="/authorize"
            ),
            headers=_NO_STORE,
        )

    async def authorize_decision(self, request: Request) -> Response:
        params = await read_params(request)
        if error := self._authorize_error(params):
            return HTMLResponse(f"<h1>Bad request</h1><p id='error'>{escape(error)}</p>", 400)
        answer: dict[str, str | None] = {"state": params.get("state")}
        if self.send_iss_in_response:
            answer["iss"] = self.issuer_for(request)
        person = params.get("person")
        if params.get("decision") == "deny" or person not in self.people:
            answer["error"] = "access_denied"
        else:
            code = secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = _PendingCode(
                    params["client_id"],
                    params["redirect_uri"],
                    params["code_challenge"],
                    params.get("nonce"),
                    person,
                    params.get("scope", "openid"),
                    self.clock() + 60,
                )
            answer["code"] = code
        return RedirectResponse(_add_query(params["redirect_uri"], answer), 302, headers=_NO_STORE)

    def _client_from(self, request: Request, params: dict[str, str]) -> OIDCClient | None:
        presented = basic_credentials(request) or (params.get("client_id", ""), params.get("client_secret", ""))
        client = self.clients.get(presented[0])
        if client is None or not hmac.compare_digest(client.client_secret, presented[1]):
            return None
        return client

    async def token(self, request: Request) -> Response:
        self.counters.hit("token")
        params = await read_params(request)
        client = self._client_from(request, params)
        if client is None:
            return JSONResponse({"error": "invalid_client"}, 401, headers={**_NO_STORE, "WWW-Authenticate": "Basic"})
        if params.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, 400, headers=_NO_STORE)
        with self._lock:
            pending = self._codes.pop(params.get("code", ""), None)  # single use, even when the checks fail
        if (
            pending is None
            or pending.client_id != client.client_id
            or pending.expires_at < self.clock()
            or pending.redirect_uri != params.get("redirect_uri")
            or not hmac.compare_digest(pending.code_challenge, pkce_s256(params.get("code_verifier", "")))
        ):
            return JSONResponse({"error": "invalid_grant"}, 400, headers=_NO_STORE)
        access_token = secrets.token_urlsafe(32)
        with self._lock:
            self._access[access_token] = pending.person
        with self._lock:
            bend, self.bend_next_id_token = self.bend_next_id_token, {}
        options: dict[str, Any] = {"aud": client.client_id, "nonce": pending.nonce, **bend}
        options["extra"] = {"azp": client.client_id, **options.get("extra", {})}
        id_token = self.forge(pending.person, **options)
        self.issued_id_tokens.append(id_token)  # so tests can search logs and pages for it
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "id_token": id_token,
                "scope": pending.scope,
            },
            headers=_NO_STORE,
        )

    async def userinfo(self, request: Request) -> Response:
        person = self._access.get(bearer_token(request) or "")
        if person is None:
            return JSONResponse({"error": "invalid_token"}, 401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return JSONResponse(self.people[person])

    # ---- controls (HTTP) ---------------------------------------------------------------------------
    async def stats_endpoint(self, request: Request) -> Response:
        return JSONResponse({"counters": self.counters.snapshot(), "signing_kid": self.signing_kid})

    async def rotate_endpoint(self, request: Request) -> Response:
        params = await read_params(request)
        return JSONResponse({"kid": self.rotate_keys(retire_old=params.get("retire_old") in ("true", "1"))})

    async def people_endpoint(self, request: Request) -> Response:
        body = json.loads(await request.body() or b"{}")
        if not isinstance(body, dict) or not isinstance(body.get("key"), str) or not isinstance(body.get("claims"), dict):
            return JSONResponse({"error": "send {key, claims}"}, 400)
        self.add_person(body["key"], **body["claims"])
        return JSONResponse({"ok": True})

    async def bend_endpoint(self, request: Request) -> Response:
        body = json.loads(await request.body() or b"{}")
        if not isinstance(body, dict):
            return JSONResponse({"error": "send the forge options as an object"}, 400)
        with self._lock:
            self.bend_next_id_token = body
        return JSONResponse({"ok": True})

    async def forge_endpoint(self, request: Request) -> Response:
        self.issuer_for(request)
        body = json.loads(await request.body() or b"{}")
        try:
            return JSONResponse({"token": self.forge(**body)})
        except (TypeError, KeyError) as exc:
            return JSONResponse({"error": f"cannot forge that: {exc}"}, 400)


def _add_query(url: str, params: dict[str, str | None]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def sign_in_over_http(client: httpx2.AsyncClient, authorize_url: str, person: str) -> str:
    """A person at the login page, without a browser: picks `person` and returns the redirect back to the
    client (with code, state and iss). The same form Chromium submits."""
    page = await client.get(authorize_url)
    if page.status_code != 200:
        raise AssertionError(f"the login page refused: {page.status_code} {page.text[:300]}")
    if f'id="person-{person}"' not in page.text:
        raise AssertionError(f"no {person!r} on the login page")
    # Exactly what the browser submits: the page's hidden fields and the button pressed.
    form = {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page.text)
    }
    form["person"] = person
    parts = urlsplit(authorize_url)
    answer = await client.post(urlunsplit(parts._replace(query="", path="/authorize")), data=form)
    if answer.status_code != 302:
        raise AssertionError(f"the login page did not redirect: {answer.status_code}")
    return answer.headers["location"]
