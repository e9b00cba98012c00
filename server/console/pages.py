"""The console's pages, server-rendered and usable without JavaScript: `/dashboard` for administrators (every
account, open incidents, recent events, per-account actions) and `/accounts` where a person manages their own.

Who is asking (`Viewer`) is verified, never asserted: an API key in `Authorization: Bearer` (an admin key for the
dashboard, for headless use), or a signed-in browser session. Every POST is checked for a cross-site origin and a
form token bound to the viewer and the browser (server/web/security.py) before anything changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from server.console.actions import AccountActions
from server.console.history import SEVERITIES, event_line, lifecycle_events
from server.console.overview import account_rows, open_incidents
from server.identity.signin import SignIn
from server.monitoring.logging import get_logger
from server.runtime import Runtime
from server.vault import AccountStatus, ConnectedAccount
from server.web.security import (
    FORM_TOKEN_FIELD,
    FORM_TOKEN_PURPOSE,
    PAGE_HEADERS,
    FormGuard,
    allowed_origins,
    cross_site_reason,
    read_small_form,
)

ADMIN_ACTIONS = ("link", "check", "refresh", "disable", "enable", "remove")
OWNER_ACTIONS = ("reconnect", "remove")
REFRESH_SECONDS = 60  # the dashboard reloads itself this often (a meta refresh: no script)
log = get_logger("grantkeeper.console")


@dataclass(frozen=True)
class Viewer:
    org: str
    user: str
    admin: bool
    actor: str  # how the audit trail names them: key:<prefix>… or session:<org>/<user>
    binding: str  # what form tokens are bound to: the key's or the session's id

    def owns(self, account: ConnectedAccount) -> bool:
        return account.org == self.org and account.user == self.user


class ConsolePages:
    def __init__(
        self,
        runtime: Runtime,
        render: Callable[..., Response],
        session_viewer: Callable[[Request], Awaitable[Viewer | None]] | None = None,
        sign_in_url: Callable[[str], str] | None = None,
    ):
        """`render(template, status, **values)`: the web app's page renderer. `session_viewer`: the signed-in
        person of a request, where browser sign-in is set up; `sign_in_url(next)`: where to send someone who is not."""
        self.runtime = runtime
        self.render = render
        self.session_viewer = session_viewer
        self.sign_in_url = sign_in_url
        self.actions = AccountActions(runtime)
        self.forms = FormGuard(
            runtime.vault.keyring.derive(FORM_TOKEN_PURPOSE), secure=lambda: runtime.settings.public_url.startswith("https://")
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/dashboard", self.dashboard, methods=["GET"]),
            Route("/dashboard/accounts/{account_id}/{action}", self.admin_action, methods=["POST"]),
            Route("/accounts", self.own_accounts, methods=["GET"]),
            Route("/accounts/connect/{connector}", self.connect, methods=["POST"]),
            Route("/accounts/{account_id}/{action}", self.owner_action, methods=["POST"]),
        ]

    # ---- who is asking --------------------------------------------------------------------------------
    async def viewer(self, request: Request) -> Viewer | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and key.strip():
            record = await anyio.to_thread.run_sync(self.runtime.vault.api_keys.find, key.strip())
            if record is None:
                return None
            return Viewer(record.org, record.user, bool(record.admin), f"key:{record.prefix}…", f"key:{record.id}")
        if self.session_viewer is not None:
            return await self.session_viewer(request)
        return None

    def _unauthenticated(self, request: Request) -> Response:
        if self.sign_in_url is not None:
            return RedirectResponse(self.sign_in_url(request.url.path), 303, headers=PAGE_HEADERS)
        return self.render(
            "message.html",
            401,
            outcome="unauthenticated",
            title="Sign in first",
            paragraphs=["This page is for people this server knows."],
            next_step="Send an API key as 'Authorization: Bearer <key>' (grantkeeper keys create).",
        )

    def _forbidden(self) -> Response:
        return self.render(
            "message.html",
            403,
            outcome="forbidden",
            title="Administrators only",
            paragraphs=["The console shows every account; only administrators may see it."],
            next_step="Your own accounts are at /accounts.",
        )

    async def _checked(self, request: Request, viewer: Viewer) -> Response | None:
        """None when the POST came from our own page in this browser; the refusal page otherwise. Nothing is
        read or changed before this passes."""
        reason = cross_site_reason(request, allowed_origins(self.runtime.settings.public_url, request))
        form = None if reason else await read_small_form(request)
        if reason is None and self.forms.verify(request, _scope(viewer), (form or {}).get(FORM_TOKEN_FIELD)):
            return None
        log.warning("console_post_refused", actor=viewer.actor, reason=reason or "form_token")
        return self.render(
            "message.html",
            403,
            outcome="form_refused",
            title="This form cannot be used",
            paragraphs=["The request did not come from this server's own page in your browser, so nothing was changed."],
            next_step="Open the page again and use its buttons.",
        )

    def _page(self, request: Request, viewer: Viewer, template: str, status: int = 200, **values: Any) -> Response:
        issued = self.forms.issue(request, _scope(viewer))
        page = self.render(
            template, status, viewer=viewer, form_token_field=FORM_TOKEN_FIELD, form_token=issued.form_token, **values
        )
        self.forms.set_cookie(page, issued)
        return page

    # ---- the dashboard --------------------------------------------------------------------------------
    async def dashboard(
        self, request: Request, *, notice: str | None = None, fresh_link: str | None = None, status: int = 200
    ) -> Response:
        viewer = await self.viewer(request)
        if viewer is None:
            return self._unauthenticated(request)
        if not viewer.admin:
            return self._forbidden()
        filters = {name: (request.query_params.get(name) or "")[:200] for name in ("account", "connector", "severity")}
        if filters["severity"] not in SEVERITIES:
            filters["severity"] = ""

        def read() -> tuple[list, list, list]:
            rows = account_rows(self.runtime.vault, self.runtime.connectors)
            ids = [row.id for row in rows if filters["account"] in (row.id, row.name)] if filters["account"] else None
            events = lifecycle_events(
                self.runtime.vault,
                account_ids=ids,
                connector=filters["connector"] or None,
                min_severity=filters["severity"] or None,
                limit=50,
            )
            return rows, open_incidents(self.runtime.vault), events

        rows, incidents, events = await anyio.to_thread.run_sync(read)
        return self._page(
            request,
            viewer,
            "dashboard.html",
            status,
            rows=rows,
            incidents=incidents,
            events=[(event, event_line(event)) for event in events],
            filters=filters,
            severities=SEVERITIES,
            connectors=sorted(self.runtime.connectors),
            notice=notice,
            fresh_link=fresh_link,
            refresh_seconds=None if fresh_link else REFRESH_SECONDS,
        )

    async def admin_action(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if viewer is None:
            return self._unauthenticated(request)
        if not viewer.admin:
            return self._forbidden()
        if (refused := await self._checked(request, viewer)) is not None:
            return refused
        action = request.path_params["action"]
        account = await self._account(request.path_params["account_id"])
        if action not in ADMIN_ACTIONS or account is None:
            return await self.dashboard(request, notice="No such account or action; nothing was changed.", status=404)
        if action == "link":
            link = await self.actions.reconnect_link(account, actor=viewer.actor)
            # Shown once, to the administrator who asked; the page is not cached and does not reload itself.
            return await self.dashboard(
                request,
                notice=f"Reconnect link for {account.display_name} (works once, expires {link.expires_at:%Y-%m-%d %H:%M} UTC):",
                fresh_link=link.url,
            )
        if action == "remove":
            removed = await self.actions.remove(account, actor=viewer.actor)
            notice = f"{account.display_name} removed; upstream revocation: {removed.revocation}."
        else:
            method = {
                "check": self.actions.check_now,
                "refresh": self.actions.refresh_now,
                "disable": self.actions.disable,
                "enable": self.actions.enable,
            }[action]
            notice = (await method(account, actor=viewer.actor)).message
        return await self.dashboard(request, notice=notice)

    async def _account(self, account_id: str) -> ConnectedAccount | None:
        if len(account_id) > 64:
            return None
        try:
            return await anyio.to_thread.run_sync(self.runtime.vault.accounts.get, account_id)
        except LookupError:
            return None

    # ---- a person's own accounts ----------------------------------------------------------------------
    async def own_accounts(self, request: Request, *, notice: str | None = None, status: int = 200) -> Response:
        viewer = await self.viewer(request)
        if viewer is None:
            return self._unauthenticated(request)
        rows = await anyio.to_thread.run_sync(
            lambda: account_rows(self.runtime.vault, self.runtime.connectors, org=viewer.org, user=viewer.user)
        )
        connectors = [(name, connector.spec.display_name) for name, connector in sorted(self.runtime.connectors.items())]
        return self._page(request, viewer, "accounts.html", status, rows=rows, connectors=connectors, notice=notice)

    async def connect(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if viewer is None:
            return self._unauthenticated(request)
        if (refused := await self._checked(request, viewer)) is not None:
            return refused
        connector = request.path_params["connector"]
        if connector not in self.runtime.connectors:
            return await self.own_accounts(request, notice="No such service; nothing was changed.", status=404)
        from server.execute import Caller

        account, link = await self.runtime.executor.connect_link(Caller(viewer.org, viewer.user), connector)
        await self.runtime.audit.record(
            viewer.actor,
            "link_created",
            account_id=account.id,
            target=account.display_name,
            link_id=link.link_id,
            purpose="connect",
        )
        return RedirectResponse(link.url, 303, headers=PAGE_HEADERS)  # their own link, straight to its page

    async def owner_action(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if viewer is None:
            return self._unauthenticated(request)
        if (refused := await self._checked(request, viewer)) is not None:
            return refused
        account = await self._account(request.path_params["account_id"])
        action = request.path_params["action"]
        # Someone else's account reads exactly like one that does not exist.
        if account is None or not viewer.owns(account) or action not in OWNER_ACTIONS:
            return await self.own_accounts(request, notice="No such account or action; nothing was changed.", status=404)
        if action == "reconnect":
            if account.status == AccountStatus.DISABLED:
                return await self.own_accounts(request, notice="An administrator disabled this account.", status=409)
            link = await self.actions.reconnect_link(account, actor=viewer.actor, issued_by="agent")
            return RedirectResponse(link.url, 303, headers=PAGE_HEADERS)
        removed = await self.actions.remove(account, actor=viewer.actor)
        return await self.own_accounts(
            request, notice=f"{account.display_name} removed; upstream revocation: {removed.revocation}."
        )


def signed_in_viewer(sign_in: SignIn) -> Callable[[Request], Awaitable[Viewer | None]]:
    """The viewer of a signed-in browser session (server/identity/signin.py): administrators are the people the
    identity provider's claims make administrators."""

    async def viewer(request: Request) -> Viewer | None:
        signed_in = await sign_in.current(request)
        if signed_in is None:
            return None
        person = signed_in.person
        return Viewer(
            person.org,
            person.user,
            bool(person.is_admin),
            f"session:{person.org}/{person.user}",
            f"session:{signed_in.session_id}",
        )

    return viewer


def _scope(viewer: Viewer) -> str:
    return f"console:{viewer.binding}"
