"""The sign-in pages: `/login` starts an OIDC sign-in (state, nonce and PKCE verifier sealed in a `signin_flow`
row, bound to this browser by a cookie), `/login/callback` finishes it and opens a browser session, `/logout`
(POST, CSRF-protected) ends it. `SignIn.current(request)` says who this browser is signed in as.

Anyone may open /login, and each visit writes a row: the live (unexpired, unused) ones are capped overall and per
client address, and beyond a cap /login answers 429 with Retry-After instead of writing."""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote, urlsplit

from authlib.common.security import generate_token
from sqlalchemy import func, update
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from server.identity.models import SignInFlow
from server.identity.oidc import OidcClient, SignInFailed
from server.identity.people import SignInRefused, person_from_claims
from server.identity.sessions import SessionStore, SignedIn, cookie_name
from server.monitoring.logging import get_logger
from server.runtime import Runtime
from server.vault import VaultIntegrityError, VaultKeyError
from server.vault.crypto import Sealed, hash_token, new_secret_token
from server.vault.models import utcnow
from server.vault.threads import in_vault_thread
from server.web.security import (
    FORM_TOKEN_FIELD,
    FORM_TOKEN_PURPOSE,
    FormGuard,
    allowed_origins,
    cross_site_reason,
    read_small_form,
)

LOGIN_PATH = "/login"
CALLBACK_PATH = "/login/callback"
LOGOUT_PATH = "/logout"
FLOW_COOKIE = "gk_signin"
FLOW_TTL = timedelta(minutes=10)
MAX_NEXT_LENGTH = 2048
Render = Callable[..., Response]


def safe_next(value: str | None) -> str:
    """Only a path on this server: never `//evil`, `/\\evil` or an absolute URL (an open redirect)."""
    if (
        not value
        or len(value) > MAX_NEXT_LENGTH
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(ch) < 0x20 for ch in value)
    ):
        return "/login"
    return value


def login_url(next_path: str) -> str:
    return f"{LOGIN_PATH}?next={quote(next_path, safe='')}"


@dataclass(frozen=True)
class _Flow:
    nonce: str
    code_verifier: str
    next: str
    binding_hash: str


class SignIn:
    def __init__(self, runtime: Runtime, render: Render):
        self.runtime = runtime
        self.settings = runtime.settings
        self.render = render
        self.oidc = OidcClient(runtime.settings, runtime.http)
        self.sessions = SessionStore(runtime.vault, runtime.settings)
        # The web side's CSRF defence (server/web/security.py): same-origin check, then a form token bound to the
        # browser's cookie and to the page's scope.
        self.forms = FormGuard(runtime.vault.keyring.derive(FORM_TOKEN_PURPOSE), secure=lambda: self.secure)
        self.log = get_logger("grantkeeper.signin")

    def routes(self) -> list[BaseRoute]:
        return [
            Route(LOGIN_PATH, self.login, methods=["GET"]),
            Route(CALLBACK_PATH, self.callback, methods=["GET"]),
            Route(LOGOUT_PATH, self.logout_page, methods=["GET"]),
            Route(LOGOUT_PATH, self.logout, methods=["POST"]),
        ]

    @property
    def secure(self) -> bool:
        return self.settings.public_url.startswith("https://")

    @property
    def redirect_uri(self) -> str:
        return self.settings.public_url + CALLBACK_PATH

    def path(self, path: str) -> str:
        return urlsplit(self.settings.public_url).path.rstrip("/") + path

    async def current(self, request: Request) -> SignedIn | None:
        return await in_vault_thread(self.sessions.resolve, request.cookies.get(cookie_name(self.settings)))

    # ---- /login -------------------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        signed_in = await self.current(request)
        if signed_in is not None and next_path != LOGIN_PATH:
            return RedirectResponse(next_path, 303)
        if signed_in is not None:
            return self._signed_in_page(signed_in, request)
        address = (request.client.host if request.client else "")[:64] or None
        wait = await in_vault_thread(self._crowded, address)
        if wait is not None:
            return self._too_many(wait)
        state, nonce, verifier, binding = new_secret_token(), new_secret_token(), generate_token(64), new_secret_token()
        try:
            url = await self.oidc.start(redirect_uri=self.redirect_uri, state=state, nonce=nonce, code_verifier=verifier)
        except SignInFailed as failed:
            return self._failure(failed.reason)
        await in_vault_thread(
            self._save_flow,
            state,
            {"nonce": nonce, "code_verifier": verifier, "next": next_path, "binding_hash": hash_token(binding)},
            address,
        )
        response = RedirectResponse(url, 303, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
        response.set_cookie(
            FLOW_COOKIE,
            binding,
            max_age=int(FLOW_TTL.total_seconds()),
            path=self.path(CALLBACK_PATH),
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )
        return response

    def _crowded(self, address: str | None) -> timedelta | None:
        """How long until a sign-in may start, if the live flows are at a cap (overall, or this address's); else None.

        Counted, then written: concurrent /login requests can pass the count together, so a cap may be exceeded by
        at most the number of requests in flight at that moment, which bounds the table all the same."""
        now = utcnow()
        live = [col(SignInFlow.expires_at) > now, col(SignInFlow.used_at).is_(None)]
        caps = [("overall", live, self.settings.signin_flows_max)]
        if address is not None:
            per_address = [*live, col(SignInFlow.client_address) == address]
            caps.append(("per_address", per_address, self.settings.signin_flows_per_address_max))
        with Session(self.runtime.vault.engine) as session:
            for which, where, cap in caps:
                count, soonest = session.exec(select(func.count(), func.min(SignInFlow.expires_at)).where(*where)).one()
                if count >= cap and soonest is not None:
                    self.log.warning("sign_in_flows_at_cap", cap=which, limit=cap)
                    return soonest - now
        return None

    def _too_many(self, wait: timedelta) -> Response:
        seconds = max(1, math.ceil(wait.total_seconds()))
        page = self.render(
            "message.html",
            429,
            outcome="signin_busy",
            title="Too many sign-ins are under way",
            paragraphs=["Too many sign-ins were started and not finished. Nothing was changed."],
            next_step=f"Try again in {math.ceil(seconds / 60)} minute(s).",
        )
        page.headers["Retry-After"] = str(seconds)
        return page

    def _save_flow(self, state: str, flow: dict[str, str], address: str | None) -> None:
        row = SignInFlow(
            state_hash=hash_token(state), key_id="", ciphertext=b"", expires_at=utcnow() + FLOW_TTL, client_address=address
        )
        sealed = self.runtime.vault.seal("signin_flow", row.id, "flow", flow)
        row.key_id, row.ciphertext = sealed.key_id, sealed.blob
        with Session(self.runtime.vault.engine) as session:
            session.add(row)
            session.commit()

    def _take_flow(self, state: str) -> _Flow | None:
        """The flow for `state`, spent: a second callback with the same state finds nothing."""
        now = utcnow()
        with Session(self.runtime.vault.engine, expire_on_commit=False) as session:
            row = session.exec(select(SignInFlow).where(SignInFlow.state_hash == hash_token(state))).first()
            if row is None or row.used_at is not None or row.expires_at <= now:
                return None
            spent = session.exec(
                update(SignInFlow).where(col(SignInFlow.id) == row.id, col(SignInFlow.used_at).is_(None)).values(used_at=now)
            )
            session.commit()
            if spent.rowcount != 1:
                return None
        try:
            flow = self.runtime.vault.open("signin_flow", row.id, "flow", Sealed(row.key_id, row.ciphertext))
        except (VaultIntegrityError, VaultKeyError):
            self.log.error("sign_in_flow_unreadable", flow_id=row.id)
            return None
        return _Flow(flow["nonce"], flow["code_verifier"], flow["next"], flow["binding_hash"])

    # ---- /login/callback --------------------------------------------------------------------------
    async def callback(self, request: Request) -> Response:
        query = request.query_params
        state = query.get("state")
        if not state or len(state) > 128:
            return self._failure("state_missing")
        flow = await in_vault_thread(self._take_flow, state)
        if flow is None:
            return self._failure("state_unknown")
        binding = request.cookies.get(FLOW_COOKIE) or ""
        if not hmac.compare_digest(hash_token(binding), flow.binding_hash):
            return self._failure("other_browser")
        try:
            claims = await self.oidc.finish(
                query, redirect_uri=self.redirect_uri, nonce=flow.nonce, code_verifier=flow.code_verifier
            )
            person = person_from_claims(claims, self.settings)
        except SignInFailed as failed:
            self.log.warning("sign_in_failed", reason=failed.reason)
            return self._failure(failed.reason)
        except SignInRefused as refused:
            self.log.warning("sign_in_refused", reason=refused.reason)
            return self.render(
                "message.html",
                403,
                outcome="signin_refused",
                title="You cannot sign in here",
                paragraphs=[f"The identity provider confirmed who you are, but {refused.reason}."],
                next_step="Ask your grantkeeper administrator for access.",
            )
        value = await in_vault_thread(self.sessions.create, person)
        self.log.info("signed_in", org=person.org, user=person.user, admin=person.is_admin)
        response = RedirectResponse(
            flow.next if flow.next != LOGIN_PATH else LOGIN_PATH, 303, headers={"Cache-Control": "no-store"}
        )
        response.set_cookie(
            cookie_name(self.settings),
            value,
            max_age=self.settings.session_absolute_seconds,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )
        response.delete_cookie(FLOW_COOKIE, path=self.path(CALLBACK_PATH), secure=self.secure, httponly=True, samesite="lax")
        return response

    # ---- /logout --------------------------------------------------------------------------------------
    async def logout_page(self, request: Request) -> Response:
        signed_in = await self.current(request)
        if signed_in is None:
            return self.render("message.html", outcome="signed_out", title="You are not signed in", paragraphs=[], next_step=None)
        return self._signed_in_page(signed_in, request)

    def form_refused(self, what: str) -> Response:
        return self.render(
            "message.html",
            403,
            outcome="csrf_refused",
            title=f"{what} was not confirmed",
            paragraphs=["This request did not come from grantkeeper's own page. Nothing was changed."],
            next_step="Go back to the page and press its button there.",
        )

    async def checked_form(self, request: Request, scope: str) -> dict[str, str] | None:
        """The form of a state-changing POST if it came from our own page in this browser, else None."""
        if cross_site_reason(request, allowed_origins(self.settings.public_url, request)) is not None:
            return None
        form = await read_small_form(request)
        if form is None or not self.forms.verify(request, scope, form.get(FORM_TOKEN_FIELD)):
            return None
        return form

    async def logout(self, request: Request) -> Response:
        value = request.cookies.get(cookie_name(self.settings))
        signed_in = await self.current(request)
        if signed_in is None or value is None or await self.checked_form(request, f"logout:{signed_in.session_id}") is None:
            return self.form_refused("Sign-out")
        await in_vault_thread(self.sessions.end, value)
        response = self.render(
            "message.html",
            outcome="signed_out",
            title="You are signed out",
            paragraphs=["Your grantkeeper session has ended."],
            next_step=None,
        )
        response.delete_cookie(cookie_name(self.settings), path="/", secure=self.secure, httponly=True, samesite="lax")
        return response

    # ---- pages ----------------------------------------------------------------------------------------
    def _signed_in_page(self, signed_in: SignedIn, request: Request) -> Response:
        issued = self.forms.issue(request, f"logout:{signed_in.session_id}")
        page = self.render(
            "signed_in.html",
            outcome="signed_in",
            person=signed_in.person.display,
            form_token_field=FORM_TOKEN_FIELD,
            form_token=issued.form_token,
            logout=self.path(LOGOUT_PATH),
        )
        self.forms.set_cookie(page, issued)
        return page

    def _failure(self, reason: str) -> Response:
        return self.render(
            "message.html",
            400 if reason.startswith(("state", "other", "iss", "code")) else 502,
            outcome="signin_failed",
            title="Sign-in did not complete",
            paragraphs=[f"The sign-in could not be confirmed ({reason}). Nothing was changed."],
            next_step="Start again from the link or page you were opening.",
        )
