"""The consent page between /authorize and the MCP client's redirect URI: the person signs in (OIDC), sees which
client asks to act as them, and allows or declines with a CSRF-protected POST. The answer goes back to the client
with `state` and RFC 9207 `iss`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from server.identity.authorization_server import CONSENT_PATH, GrantkeeperAuthorizationServer
from server.identity.signin import Render, SignIn, login_url
from server.monitoring.logging import get_logger
from server.vault.crypto import hash_token
from server.web.security import FORM_TOKEN_FIELD


def _scope(request_token: str, session_id: str) -> str:
    # One consent page, for one signed-in session: a token from another request or browser does not answer this one.
    return f"consent:{hash_token(request_token)}:{session_id}"


def _with_query(url: str, params: dict[str, str | None]) -> str:
    parts = urlsplit(url)
    extra = urlencode({key: value for key, value in params.items() if value is not None})
    return parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra).geturl()


class ConsentPages:
    def __init__(self, server: GrantkeeperAuthorizationServer, sign_in: SignIn, render: Render):
        self.server = server
        self.sign_in = sign_in
        self.render = render
        self.log = get_logger("grantkeeper.consent")

    def routes(self) -> list[BaseRoute]:
        return [Route(CONSENT_PATH, self.show, methods=["GET"]), Route(CONSENT_PATH, self.answer, methods=["POST"])]

    def _gone(self) -> Response:
        return self.render(
            "message.html",
            400,
            outcome="consent_unknown",
            title="This sign-in request is not valid",
            paragraphs=["It expired, was already answered, or was altered. Nothing was granted."],
            next_step="Start again from your MCP client.",
        )

    async def show(self, request: Request) -> Response:
        request_token = request.query_params.get("request", "")
        pending = await anyio.to_thread.run_sync(self.server.pending_request, request_token)
        if pending is None:
            return self._gone()
        signed_in = await self.sign_in.current(request)
        if signed_in is None:
            return RedirectResponse(
                login_url(f"{CONSENT_PATH}?request={request_token}"), 303, headers={"Cache-Control": "no-store"}
            )
        params: dict[str, Any] = pending.params
        issued = self.sign_in.forms.issue(request, _scope(request_token, signed_in.session_id))
        page = self.render(
            "consent.html",
            outcome="consent",
            client_name=params.get("client_name") or "An MCP client",
            client_id=pending.client_id,
            redirect_host=urlsplit(params["redirect_uri"]).netloc,
            person=signed_in.person.display,
            request_token=request_token,
            form_token_field=FORM_TOKEN_FIELD,
            form_token=issued.form_token,
            action=f"{self.sign_in.path(CONSENT_PATH)}?request={request_token}",
        )
        self.sign_in.forms.set_cookie(page, issued)
        return page

    async def answer(self, request: Request) -> Response:
        signed_in = await self.sign_in.current(request)
        if signed_in is None:
            return self._gone()
        # The request token travels in the query string so the form-token scope is known before the body is read.
        request_token = request.query_params.get("request", "")
        form = await self.sign_in.checked_form(request, _scope(request_token, signed_in.session_id))
        if form is None:
            return self.sign_in.form_refused("This answer")
        decision = form.get("decision")
        person = signed_in.person
        decided = await anyio.to_thread.run_sync(
            lambda: self.server.decide(request_token, org=person.org, user=person.user, allow=decision == "allow")
        )
        if decided is None:
            return self._gone()
        row, code = decided
        answer: dict[str, str | None] = {"state": row.params.get("state"), "iss": self.sign_in.settings.public_url}
        if code is None:
            answer |= {"error": "access_denied", "error_description": "The person declined."}
        else:
            answer["code"] = code
        self.log.info("mcp_consent", client_id=row.client_id, org=person.org, user=person.user, allowed=code is not None)
        return RedirectResponse(_with_query(row.params["redirect_uri"], answer), 302, headers={"Cache-Control": "no-store"})
