"""The magic-link pages: `/connect/{token}` shows what the link will connect and for whom, Continue (a POST from
that page, CSRF-checked) spends the link and sends the browser to the provider, and the OAuth callback finishes
the sign-in. Every refusal is a page from `refusals.py`; nothing is written before the checks pass.

    pages = LinkPages(runtime, sign_in, remote=True)
    Route("/connect/{token}", pages.show_link, methods=["GET"])
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from server.identity.link_guard import LinkDecision, LinkGuard
from server.identity.signin import SignIn, login_url
from server.monitoring.logging import get_logger
from server.reauth import ReauthFlow, ReauthRefused, Refusal
from server.reauth.flow import CALLBACK_PATH
from server.reauth.links import LinkView
from server.runtime import Runtime
from server.vault.models import ConnectedAccount, MagicLink
from server.web.refusals import UNCHANGED, refusal_page
from server.web.rendering import render
from server.web.security import (
    FORM_TOKEN_FIELD,
    FORM_TOKEN_PURPOSE,
    PAGE_HEADERS,
    FormGuard,
    allowed_origins,
    cross_site_reason,
    read_small_form,
)

log = get_logger("grantkeeper.web")


def owner_of(account: ConnectedAccount) -> str:
    return f"{account.user} (org {account.org})"


class LinkPages:
    """`show_link` (GET `/connect/{token}`), `begin` (POST: starts the provider sign-in) and `callback` (the provider
    sends the browser back). A link goes on only for the person it was made for (LinkGuard), checked against
    `sign_in` when sign-in is configured."""

    def __init__(self, runtime: Runtime, sign_in: SignIn | None, *, remote: bool = False):
        self.runtime = runtime
        self.flow = ReauthFlow(runtime)
        self.guard = LinkGuard(runtime.settings, remote)
        self.sign_in = sign_in
        self.forms = FormGuard(runtime.vault.keyring.derive(FORM_TOKEN_PURPOSE), secure=self._secure)

    async def show_link(self, request: Request) -> Response:
        try:
            view = await self.flow.open(request.path_params["token"])
        except ReauthRefused as refused:
            return refusal_page(refused)
        account, link = view.account, view.link
        if (refusal := await self._guarded(request, view)) is not None:
            return refusal
        connector = self.flow.connector_for(account)
        provider = connector.spec.display_name
        connecting = link.purpose == "connect"
        why = (
            f"An AI agent asked to connect a {provider} account for {owner_of(account)}."
            if connecting
            else f"The {provider} grant for {account.display_name} stopped working"
            f"{f' ({link.reason})' if link.reason else ''}, so the agent cannot use it until it is reconnected."
        )
        expected = (
            connector.provider.describe_identity(account.provider_account_id, account.provider_identity or {})
            if account.provider_account_id
            else None
        )
        issued = self.forms.issue(request, _form_scope(link))
        page = render(
            "connect.html",
            verb="Connect" if connecting else "Reconnect",
            provider_name=provider,
            why=why,
            account_name=account.display_name,
            owner=owner_of(account),
            expected=expected,
            expires_at=f"{link.expires_at:%Y-%m-%d %H:%M} UTC",
            form_token_field=FORM_TOKEN_FIELD,
            form_token=issued.form_token,
        )
        self.forms.set_cookie(page, issued)
        return page

    async def begin(self, request: Request) -> Response:
        """Continue: only from our own page in the browser it was given to (cross-site check, then form token),
        and only then is the link spent. Every refusal before `flow.begin` writes nothing."""
        reason = cross_site_reason(request, allowed_origins(self.runtime.settings.public_url, request))
        if reason is not None:
            log.warning(
                "cross_site_request_refused",
                reason=reason,
                origin=request.headers.get("origin", "")[:200],
                sec_fetch_site=request.headers.get("sec-fetch-site", "")[:32],
            )
            return refusal_page(ReauthRefused(Refusal.CROSS_SITE))
        token = request.path_params["token"]
        try:
            view = await self.flow.open(token)
        except ReauthRefused as refused:
            return refusal_page(refused)
        form = await read_small_form(request)
        if not self.forms.verify(request, _form_scope(view.link), (form or {}).get(FORM_TOKEN_FIELD)):
            log.warning(
                "form_token_refused",
                account=view.account.display_name,
                reason="unreadable_form" if form is None else "token_mismatch",
            )
            return refusal_page(ReauthRefused(Refusal.FORM_TOKEN_INVALID, account=view.account))
        if (refusal := await self._guarded(request, view)) is not None:
            return refusal
        try:
            started = await self.flow.begin(token)
        except ReauthRefused as refused:
            return refusal_page(refused)
        response = RedirectResponse(started.authorize_url, 303, headers=PAGE_HEADERS)
        response.set_cookie(
            started.cookie_name,
            started.cookie_value,
            max_age=started.cookie_max_age,
            path=self._cookie_path(),
            secure=self._secure(),
            httponly=True,
            samesite="lax",
        )
        return response

    async def _guarded(self, request: Request, view: LinkView) -> Response | None:
        """None when this browser may go on with the link; otherwise the page to show instead. Writes nothing."""
        signed_in = await self.sign_in.current(request) if self.sign_in else None
        decision = self.guard.decide(view.link, view.account, signed_in)
        provider = self.flow.connector_for(view.account).spec.display_name
        if decision is LinkDecision.SIGN_IN:
            return RedirectResponse(login_url(request.url.path), 303, headers=PAGE_HEADERS)
        if decision is LinkDecision.WRONG_PERSON:
            assert signed_in is not None
            log.warning(
                "link_refused_wrong_person",
                account=view.account.display_name,
                signed_in_org=signed_in.person.org,
                signed_in_user=signed_in.person.user,
            )
            return render(
                "message.html",
                403,
                outcome="wrong_person",
                provider_name=provider,
                title="This link is for someone else",
                paragraphs=[
                    f"This link connects {provider} for {owner_of(view.account)}, but you are "
                    f"signed in as {signed_in.person.display}. If someone sent you this link, "
                    "they may be trying to act as you.",
                    UNCHANGED,
                ],
                next_step="Close this page. If you need the connection yourself, ask your own agent for a link.",
            )
        if decision is LinkDecision.UNVERIFIED_REFUSED:
            log.warning("link_refused_unverified", account=view.account.display_name)
            return render(
                "message.html",
                403,
                outcome="admin_action_required",
                provider_name=provider,
                title="This server cannot check who you are",
                paragraphs=[
                    "A connect link made by an agent can only be completed by the person it is "
                    "for, and this server has no sign-in configured to check that. The link was "
                    "not used.",
                    UNCHANGED,
                ],
                next_step="Ask your grantkeeper administrator to set up sign-in (GRANTKEEPER_OIDC_ISSUER, "
                "GRANTKEEPER_OIDC_CLIENT_ID, GRANTKEEPER_OIDC_CLIENT_SECRET), or to issue the "
                "link with `grantkeeper link`.",
            )
        return None

    async def callback(self, request: Request) -> Response:
        try:
            done = await self.flow.complete(request.query_params, request.cookies)
        except ReauthRefused as refused:
            return refusal_page(refused)
        provider = done.connector.spec.display_name
        verb = "connected" if done.purpose == "connect" else "reconnected"
        paragraphs = [
            f"{done.account.display_name} is {verb} for {owner_of(done.account)}, signed in as {done.provider_account}."
        ]
        if done.needs_user_at is not None:
            paragraphs.append(
                f"{provider} did not grant lasting access (no refresh token), so this connection stops "
                f"working at {done.needs_user_at:%Y-%m-%d %H:%M} UTC. You will be offered a link to "
                "reconnect before then."
            )
        response = render(
            "message.html",
            outcome="reconnected",
            provider_name=provider,
            title=f"{provider} is {verb}",
            paragraphs=paragraphs,
            next_step="Close this tab and go back to your agent: its next call will work.",
        )
        for name in request.cookies:
            if name.startswith("gk_flow_"):
                response.delete_cookie(name, path=self._cookie_path(), secure=self._secure(), httponly=True, samesite="lax")
        return response

    def _cookie_path(self) -> str:
        return urlsplit(self.runtime.settings.public_url).path.rstrip("/") + CALLBACK_PATH

    def _secure(self) -> bool:
        return self.runtime.settings.public_url.startswith("https://")


def _form_scope(link: MagicLink) -> str:
    return f"connect:{link.id}"
