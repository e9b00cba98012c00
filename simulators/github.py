"""Simulated GitHub for GitHub App user tokens: rotating ghu_/ghr_ tokens, issues, issue search, rate limits.

OAuth failures are HTTP 200 bodies as on github.com; dead tokens get 401 "Bad credentials".
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import shlex
import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .base import FaultError, ProviderSimulator, basic_credentials, bearer_token, read_params
from .faults import RateLimitFault
from .grants import Grant, GrantFailure, TokenCheck, TokenPolicy, TokenStatus

DEFAULT_GITHUB_IDENTITY = {"login": "octocat", "id": 1}
REST_DOCS = "https://docs.github.com/rest"
_OAUTH_DOCS = "https://docs.github.com/apps/managing-oauth-apps/"
_TOKEN_ERRORS_DOCS = _OAUTH_DOCS + "troubleshooting-oauth-app-access-token-request-errors/"
_AUTHORIZE_ERRORS_DOCS = _OAUTH_DOCS + "troubleshooting-authorization-request-errors/"
_OAUTH_ERRORS = {
    "incorrect_client_credentials": (
        "The client_id and/or client_secret passed are incorrect.",
        _TOKEN_ERRORS_DOCS + "#incorrect-client-credentials",
    ),
    # GitHub really does point bad_refresh_token at the bad-verification-code anchor.
    "bad_refresh_token": (
        "The refresh token passed is incorrect or expired.",
        _TOKEN_ERRORS_DOCS + "#bad-verification-code",
    ),
    "bad_verification_code": (
        "The code passed is incorrect or expired.",
        _TOKEN_ERRORS_DOCS + "#bad-verification-code",
    ),
    "redirect_uri_mismatch": (
        "The redirect_uri MUST match the registered callback URL for this application.",
        _AUTHORIZE_ERRORS_DOCS + "#redirect-uri-mismatch2",
    ),
    "unsupported_grant_type": ("The grant type is not supported.", _TOKEN_ERRORS_DOCS),
}
_SEARCH_DOCS = "https://docs.github.com/rest/search/search#search-issues-and-pull-requests"
_RATE_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
MAX_PER_PAGE = 100


def github_error(message: str, http_status: int, documentation_url: str = REST_DOCS, **extra: Any) -> JSONResponse:
    return JSONResponse({"message": message, "documentation_url": documentation_url, **extra}, http_status)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    used: int
    reset: int
    resource: str

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-resource": self.resource,
        }


class RateBudget:
    """GitHub's primary limits: a fixed window per user (or anonymous caller) and resource."""

    WINDOWS = {"core": 3600, "search": 60}

    def __init__(self, limits: dict[tuple[str, bool], int]) -> None:
        self._limits = limits  # (resource, authenticated) -> requests per window
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def limit_for(self, resource: str, authenticated: bool) -> int:
        return self._limits[(resource, authenticated)]

    def consume(self, subject: str, resource: str, authenticated: bool, now: float) -> tuple[RateState, bool]:
        """Count one request; returns the state after it and whether it was within budget."""
        limit, window = self._limits[(resource, authenticated)], self.WINDOWS[resource]
        with self._lock:
            started, used = self._windows.get((subject, resource), (now, 0))
            if now >= started + window:
                started, used = now, 0
            allowed = used < limit
            used += allowed
            self._windows[(subject, resource)] = (started, used)
        return RateState(limit, limit - used, used, int(started + window), resource), allowed

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()


@dataclass
class Repo:
    owner: str
    name: str
    repo_id: int
    missing: bool = False
    issues_enabled: bool = True
    issues: list[dict[str, Any]] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class GitHubSimulator(ProviderSimulator):
    provider_title = "GitHub"
    token_path = "/login/oauth/access_token"
    authorize_path = "/login/oauth/authorize"
    identity_fields = (("login", "Login"), ("id", "User ID"))

    def __init__(
        self,
        *,
        client_id: str = "sim-github-client",
        client_secret: str = "sim-github-secret",
        app_name: str = "Grantkeeper Sim",
        default_identity: dict[str, Any] | None = None,
        access_ttl: int = 28800,
        refresh_ttl: int = 15811200,
        reuse_detection: bool = True,
        rate_limit_status: int = 403,
        core_limit: int = 5000,
        search_limit: int = 30,
        known_repos: list[str] | None = None,
        accept_basic_auth: bool = True,
        html_base: str = "https://github.com",
    ) -> None:
        self.rate_limit_status = rate_limit_status
        self.accept_basic_auth = accept_basic_auth  # undocumented on github.com, so it can be switched off
        self.html_base = html_base.rstrip("/")
        self.search_lag = 0.0
        self.budget = RateBudget(
            {("core", True): core_limit, ("core", False): 60, ("search", True): search_limit, ("search", False): 10}
        )
        self._repos: dict[str, Repo] = {}
        self._strict_repos = known_repos is not None
        self._next_issue_id = 1
        super().__init__(
            client_id=client_id,
            client_secret=client_secret,
            app_name=app_name,
            default_identity=default_identity or DEFAULT_GITHUB_IDENTITY,
            default_scopes=[],  # GitHub App permissions live on the app, so tokens carry scope ""
            policy=TokenPolicy(
                access_prefix="ghu_",
                refresh_prefix="ghr_",
                access_length=36,
                refresh_length=76,
                access_ttl=access_ttl,
                refresh_ttl=refresh_ttl,
                rotation_kills_access_token=True,
                code_factory=lambda: secrets.token_hex(10),
            ),
            reuse_detection=reuse_detection,
        )
        for full_name in known_repos or []:
            self.add_repo(full_name)

    # -- data -------------------------------------------------------------

    def add_repo(self, full_name: str) -> Repo:
        owner, _, name = full_name.partition("/")
        with self._data_lock:
            key = full_name.lower()
            if key not in self._repos:
                self._repos[key] = Repo(owner, name, repo_id=1000 + len(self._repos))
            return self._repos[key]

    def _repo(self, owner: str, name: str) -> Repo | None:
        with self._data_lock:
            repo = self._repos.get(f"{owner}/{name}".lower())
            if repo is None and not self._strict_repos:
                repo = self.add_repo(f"{owner}/{name}")
            return None if repo is None or repo.missing else repo

    def mark_repo_missing(self, full_name: str, missing: bool = True) -> None:
        self.add_repo(full_name).missing = missing

    def disable_issues(self, full_name: str, disabled: bool = True) -> None:
        self.add_repo(full_name).issues_enabled = not disabled

    def set_search_lag(self, seconds: float) -> None:
        """Hide issues younger than this from search, as GitHub's index lags behind writes."""
        self.search_lag = max(0.0, seconds)

    def create_issue(
        self,
        full_name: str,
        title: str,
        body: str | None = "",
        *,
        user: dict[str, Any] | None = None,
        labels: list[str] | tuple[str, ...] = (),
        assignees: list[str] | tuple[str, ...] = (),
        state: str = "open",
        api_base: str = "https://api.github.com",
    ) -> dict[str, Any]:
        """Add an issue directly, bypassing the API (seeding); also used by the API handler."""
        author = user or self.default_identity
        with self._data_lock:
            repo = self.add_repo(full_name)
            issue_id, self._next_issue_id = self._next_issue_id, self._next_issue_id + 1
            number = len(repo.issues) + 1
            now = _iso(self.grants.now())
            api_repo = f"{api_base.rstrip('/')}/repos/{repo.full_name}"
            issue = {
                "id": issue_id,
                "node_id": f"I_kwDO{secrets.token_urlsafe(9)}",
                "url": f"{api_repo}/issues/{number}",
                "repository_url": api_repo,
                "html_url": f"{self.html_base}/{repo.full_name}/issues/{number}",
                "number": number,
                "state": state,
                "state_reason": "completed" if state == "closed" else None,
                "title": title,
                "body": body,
                "user": self._user_json(author),
                "labels": [self._label_json(label) for label in labels],
                "assignee": self._user_json({"login": assignees[0], "id": 0}) if assignees else None,
                "assignees": [self._user_json({"login": login, "id": 0}) for login in assignees],
                "milestone": None,
                "locked": False,
                "comments": 0,
                "created_at": now,
                "updated_at": now,
                "closed_at": now if state == "closed" else None,
                "author_association": "OWNER" if author.get("login") == repo.owner else "NONE",
            }
            repo.issues.append(issue)
            return copy.deepcopy(issue)

    def issues(self, full_name: str | None = None) -> list[dict[str, Any]]:
        with self._data_lock:
            if full_name:
                repos = [self._repos[full_name.lower()]] if full_name.lower() in self._repos else []
            else:
                repos = list(self._repos.values())
            return [copy.deepcopy(issue) for repo in repos for issue in repo.issues]

    def _user_json(self, identity: dict[str, Any]) -> dict[str, Any]:
        login = identity.get("login")
        return {
            "login": login,
            "id": identity.get("id"),
            "node_id": f"U_sim{identity.get('id')}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{identity.get('id')}?v=4",
            "html_url": f"{self.html_base}/{login}",
            "type": "User",
            "site_admin": False,
        }

    @staticmethod
    def _label_json(label: Any) -> dict[str, Any]:
        name = str(label.get("name")) if isinstance(label, dict) else str(label)
        return {"id": zlib.crc32(name.encode()), "name": name, "color": "ededed", "default": False, "description": None}

    # -- OAuth ------------------------------------------------------------

    def identity_from_form(self, form: dict[str, str]) -> dict[str, Any]:
        identity = super().identity_from_form(form)
        try:
            identity["id"] = int(identity["id"])
        except (TypeError, ValueError):
            identity["id"] = self.default_identity["id"]
        return identity

    def identity_summary(self, identity: dict[str, Any]) -> str:
        return f"@{identity.get('login')} (user {identity.get('id')})"

    def denied_params(self) -> dict[str, str]:
        return {
            "error": "access_denied",
            "error_description": "The user has denied your application access.",
            "error_uri": _AUTHORIZE_ERRORS_DOCS + "#access-denied",
        }

    def parse_scopes(self, raw: str) -> list[str]:
        return []  # GitHub Apps ignore the scope parameter

    async def token_endpoint(self, request: Request) -> Response:
        params = await read_params(request)
        wants_json = "application/json" in request.headers.get("accept", "")
        basic = basic_credentials(request) if self.accept_basic_auth else None
        client_id, client_secret = basic or (params.get("client_id"), params.get("client_secret"))
        if not self.client_authenticated(client_id, client_secret):
            return self._oauth_reply({**self._oauth_error("incorrect_client_credentials")}, wants_json)
        grant_type = params.get("grant_type") or "authorization_code"
        if grant_type == "refresh_token":
            presented = params.get("refresh_token")
            result = self.grants.refresh(presented)
            self.log_grant_event("refresh", result, presented)
            if not result.ok:
                return self._oauth_reply(self._oauth_error("bad_refresh_token"), wants_json)
        elif grant_type == "authorization_code":
            result = self.grants.redeem_authorization_code(
                params.get("code"),
                client_id=client_id or "",
                redirect_uri=params.get("redirect_uri"),
                code_verifier=params.get("code_verifier"),
            )
            self.log_grant_event("code exchange", result)
            if not result.ok:
                mismatch = result.failure is GrantFailure.REDIRECT_MISMATCH
                error = "redirect_uri_mismatch" if mismatch else "bad_verification_code"
                return self._oauth_reply(self._oauth_error(error), wants_json)
        else:
            return self._oauth_reply(self._oauth_error("unsupported_grant_type"), wants_json)
        tokens = result.tokens
        assert tokens is not None
        payload: dict[str, Any] = {
            "access_token": tokens.access_token,
            "expires_in": tokens.expires_in,
            "refresh_token": tokens.refresh_token,
            "refresh_token_expires_in": tokens.refresh_token_expires_in,
            "scope": "",
            "token_type": "bearer",
        }
        return self._oauth_reply({k: v for k, v in payload.items() if v is not None}, wants_json)

    @staticmethod
    def _oauth_error(error: str) -> dict[str, str]:
        description, uri = _OAUTH_ERRORS[error]
        return {"error": error, "error_description": description, "error_uri": uri}

    @staticmethod
    def _oauth_reply(payload: dict[str, Any], wants_json: bool) -> Response:
        # Without Accept: application/json github.com answers form-encoded, errors included, always 200.
        if wants_json:
            return JSONResponse(payload)
        return Response(urlencode(payload), media_type="application/x-www-form-urlencoded; charset=utf-8")

    # -- API pipeline hooks ------------------------------------------------

    async def api_token(self, request: Request) -> str | None:
        return bearer_token(request, schemes=("bearer", "token"))

    def auth_error_response(self, check: TokenCheck) -> Response:
        if check.status is TokenStatus.MISSING:
            return github_error("Requires authentication", 401)
        return github_error("Bad credentials", 401)

    @staticmethod
    def _resource(endpoint: str) -> str:
        return "search" if endpoint.startswith("GET /search/") else "core"

    @staticmethod
    def _subject(request: Request, check: TokenCheck) -> tuple[str, bool]:
        if check.ok and check.grant is not None:
            return f"user:{check.grant.identity.get('id')}", True
        return f"ip:{request.client.host if request.client else 'unknown'}", False

    def _exceeded_message(self, request: Request, check: TokenCheck) -> str:
        if check.ok and check.grant is not None:
            return f"API rate limit exceeded for user ID {check.grant.identity.get('id')}."
        return f"API rate limit exceeded for {request.client.host if request.client else 'your IP'}."

    def admit(self, request: Request, endpoint: str, check: TokenCheck) -> Response | None:
        subject, authenticated = self._subject(request, check)
        state, allowed = self.budget.consume(subject, self._resource(endpoint), authenticated, self.grants.now())
        request.state.rate = state
        if allowed:
            return None
        self.counters.incr("rate_limited")
        return github_error(self._exceeded_message(request, check), self.rate_limit_status, _RATE_DOCS)

    def rate_limited_response(self, request: Request, fault: RateLimitFault, check: TokenCheck) -> Response:
        resource = self._resource(f"{request.method} {request.url.path}")
        limit = self.budget.limit_for(resource, check.ok)
        # A near reset keeps clients that wait for x-ratelimit-reset from stalling a test run.
        reset = int(self.grants.now()) + max(1, fault.retry_after or 1)
        request.state.rate = RateState(limit, 0, limit, reset, resource)
        status = fault.status or self.rate_limit_status
        if fault.retry_after is None:
            return github_error(self._exceeded_message(request, check), status, _RATE_DOCS)
        response = github_error(
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            status,
            _RATE_DOCS + "#about-secondary-rate-limits",
        )
        response.headers["retry-after"] = str(fault.retry_after)
        return response

    def server_error_response(self, status: int) -> Response:
        return github_error("Service Unavailable" if status == 503 else "Server Error", status)

    def finish_api_response(self, request: Request, endpoint: str, check: TokenCheck, response: Response) -> Response:
        state: RateState | None = getattr(request.state, "rate", None)
        if state is None:  # a 5xx fault came before the budget was charged
            subject, authenticated = self._subject(request, check)
            state, _ = self.budget.consume(subject, self._resource(endpoint), authenticated, self.grants.now())
        response.headers.update(state.headers())
        response.headers["x-github-api-version-selected"] = "2022-11-28"
        response.headers["x-github-request-id"] = secrets.token_hex(8).upper()
        return response

    # -- API --------------------------------------------------------------

    def api_routes(self) -> list[BaseRoute]:
        def route(path: str, method: str, handler: Any) -> Route:
            endpoint_name = f"{method} {path}"

            async def endpoint(request: Request) -> Response:
                return await self.api_call(request, endpoint_name, handler)

            return Route(path, endpoint, methods=[method])

        return [
            route("/user", "GET", self._get_user),
            route("/repos/{owner}/{repo}/issues", "POST", self._create_issue_api),
            route("/repos/{owner}/{repo}/issues", "GET", self._list_issues),
            route("/repos/{owner}/{repo}/issues/{number:int}", "GET", self._get_issue),
            route("/search/issues", "GET", self._search_issues),
        ]

    async def _get_user(self, request: Request, grant: Grant) -> Response:
        identity = grant.identity
        return JSONResponse(
            {
                **self._user_json(identity),
                "name": identity.get("name"),
                "email": identity.get("email"),
                "company": None,
                "created_at": "2011-01-25T18:44:36Z",
            }
        )

    def _repo_or_error(self, request: Request, docs: str) -> Repo | Response:
        repo = self._repo(request.path_params["owner"], request.path_params["repo"])
        if repo is None:
            return github_error("Not Found", 404, docs, status="404")
        if not repo.issues_enabled:
            return github_error("Issues are disabled for this repo", 410, docs, status="410")
        return repo

    async def _create_issue_api(self, request: Request, grant: Grant) -> Response:
        docs = "https://docs.github.com/rest/issues/issues#create-an-issue"
        repo = self._repo_or_error(request, docs)
        if isinstance(repo, Response):
            return repo
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return github_error("Problems parsing JSON", 400, docs, status="400")
        if not isinstance(body, dict):
            return github_error("Problems parsing JSON", 400, docs, status="400")
        title = body.get("title")
        if title is None or str(title).strip() == "":
            return github_error(
                "Validation Failed",
                422,
                docs,
                errors=[{"resource": "Issue", "code": "missing_field", "field": "title"}],
                status="422",
            )
        assignees = list(body.get("assignees") or ([body["assignee"]] if body.get("assignee") else []))
        issue = self.create_issue(
            repo.full_name,
            str(title),
            body.get("body"),
            user=grant.identity,
            labels=list(body.get("labels") or []),
            assignees=assignees,
            api_base=str(request.base_url),
        )
        return JSONResponse(issue, 201, headers={"location": issue["url"]})

    async def _get_issue(self, request: Request, grant: Grant) -> Response:
        docs = "https://docs.github.com/rest/issues/issues#get-an-issue"
        repo = self._repo_or_error(request, docs)
        if isinstance(repo, Response):
            return repo
        number = request.path_params["number"]
        with self._data_lock:
            issue = next((copy.deepcopy(i) for i in repo.issues if i["number"] == number), None)
        return JSONResponse(issue) if issue else github_error("Not Found", 404, docs, status="404")

    async def _list_issues(self, request: Request, grant: Grant) -> Response:
        docs = "https://docs.github.com/rest/issues/issues#list-repository-issues"
        repo = self._repo_or_error(request, docs)
        if isinstance(repo, Response):
            return repo
        query = request.query_params
        state = query.get("state", "open")
        creator = query.get("creator")
        labels = {label.strip() for label in query.get("labels", "").split(",") if label.strip()}
        try:
            since = _parse_iso(query["since"]) if query.get("since") else None
        except ValueError:
            return github_error("Validation Failed", 422, docs, errors=[{"field": "since", "code": "invalid"}])
        with self._data_lock:
            issues = [
                copy.deepcopy(issue)
                for issue in repo.issues
                if (state == "all" or issue["state"] == state)
                and (creator is None or issue["user"]["login"] == creator)
                and (since is None or _parse_iso(issue["updated_at"]) >= since)
                and labels <= {label["name"] for label in issue["labels"]}
            ]
        sort_key = "updated_at" if query.get("sort") == "updated" else "created_at"
        issues.sort(key=lambda i: (i[sort_key], i["number"]), reverse=query.get("direction", "desc") != "asc")
        return self._paginated(request, issues, lambda page: page)

    async def _search_issues(self, request: Request, grant: Grant) -> Response:
        q = request.query_params.get("q", "").strip()
        if not q:
            return github_error(
                "Validation Failed", 422, _SEARCH_DOCS, errors=[{"resource": "Search", "field": "q", "code": "missing"}]
            )
        search = IssueSearch.parse(q)
        if not search.has_type:
            return github_error(
                "Validation Failed",
                422,
                _SEARCH_DOCS,
                errors=[
                    {
                        "message": "Query must include 'is:issue' or 'is:pull-request'",
                        "resource": "Search",
                        "field": "q",
                        "code": "invalid",
                    }
                ],
            )
        visible_before = _iso(self.grants.now() - self.search_lag) if self.search_lag else None
        with self._data_lock:
            matches = [
                {**copy.deepcopy(issue), "score": 1.0}
                for repo in self._repos.values()
                if not repo.missing
                for issue in repo.issues
                if search.matches(repo.full_name, issue) and (visible_before is None or issue["created_at"] < visible_before)
            ]
        sort = request.query_params.get("sort")
        sort_key = {"updated": "updated_at", "comments": "comments"}.get(sort or "", "created_at")
        matches.sort(key=lambda i: (i[sort_key], i["id"]), reverse=request.query_params.get("order", "desc") != "asc")
        return self._paginated(
            request,
            matches,
            lambda page: {"total_count": len(matches), "incomplete_results": False, "items": page},
        )

    def _paginated(self, request: Request, items: list[dict[str, Any]], shape: Any) -> Response:
        try:
            per_page = min(max(int(request.query_params.get("per_page", 30)), 1), MAX_PER_PAGE)
            page = max(int(request.query_params.get("page", 1)), 1)
        except ValueError:
            return github_error("Validation Failed", 422, errors=[{"field": "per_page", "code": "invalid"}])
        last = max(1, -(-len(items) // per_page))
        response = JSONResponse(shape(items[(page - 1) * per_page : page * per_page]))
        links = []
        for rel, target in (("prev", page - 1), ("next", page + 1), ("last", last), ("first", 1)):
            if (rel in ("prev", "first") and page > 1) or (rel in ("next", "last") and page < last):
                links.append(f'<{request.url.include_query_params(page=target, per_page=per_page)}>; rel="{rel}"')
        if links:
            response.headers["link"] = ", ".join(links)
        return response

    # -- control API extras ------------------------------------------------

    def extra_faults(self) -> dict[str, Any]:
        return {
            "search_lag": lambda seconds: self.set_search_lag(float(seconds)),
            "repo_missing": lambda repo, missing=True: self.mark_repo_missing(str(repo), bool(missing)),
            "issues_disabled": lambda repo, disabled=True: self.disable_issues(str(repo), bool(disabled)),
        }

    def reset_counters(self) -> None:
        super().reset_counters()
        self.budget.reset()

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "search_lag": self.search_lag}

    def revocation_routes(self) -> list[BaseRoute]:
        return [
            Route("/applications/{client_id}/grant", self._delete_authorization, methods=["DELETE"]),
            Route("/applications/{client_id}/token", self._delete_authorization, methods=["DELETE"]),
        ]

    async def _delete_authorization(self, request: Request) -> Response:
        """DELETE /applications/{client_id}/grant (the user's authorization of the app) or …/token (one token),
        authenticated as the app with Basic auth, the token in a JSON body. 204; 404 for a token it does not know.
        Here a grant is one authorization, so both end the token's grant."""
        endpoint = "DELETE /applications/{client_id}/" + request.url.path.rsplit("/", 1)[-1]
        self.counters.hit(endpoint)
        if (fault := self.revocation_fault(endpoint)) is not None:
            return fault
        credentials = basic_credentials(request)
        if (
            credentials is None
            or request.path_params["client_id"] != self.client_id
            or not self.client_authenticated(*credentials)
        ):
            return JSONResponse({"message": "Requires authentication"}, status_code=401)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"message": "Problems parsing JSON"}, status_code=400)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            return JSONResponse({"message": "Validation Failed"}, status_code=422)
        if self.grants.grant_for_token(token) is None:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        self.grants.end_by_client(token)
        return Response(status_code=204)

    def extra_control_routes(self) -> list[BaseRoute]:
        return [Route("/_sim/issues", self._control_issues, methods=["GET", "POST"])]

    async def _control_issues(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"issues": self.issues(request.query_params.get("repo"))})
        try:
            body = await self.control_body(request)
        except FaultError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        if not body.get("repo") or not body.get("title"):
            return JSONResponse({"error": "repo and title are required"}, 400)
        issue = self.create_issue(
            body["repo"],
            body["title"],
            body.get("body", ""),
            user={**self.default_identity, **(body.get("user") or {})},
            labels=body.get("labels") or [],
            state=body.get("state", "open"),
            api_base=str(request.base_url),
        )
        return JSONResponse(issue, 201)


@dataclass
class IssueSearch:
    """The subset of GitHub's issue-search syntax the simulator understands."""

    kinds: set[str] = field(default_factory=set)
    states: set[str] = field(default_factory=set)
    repos: set[str] = field(default_factory=set)
    authors: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    terms: list[str] = field(default_factory=list)

    _QUALIFIER = re.compile(r"^(is|type|state|repo|author|label|in):(.+)$", re.IGNORECASE)

    @property
    def has_type(self) -> bool:
        return bool(self.kinds)

    @classmethod
    def parse(cls, q: str) -> IssueSearch:
        try:
            tokens = shlex.split(q)
        except ValueError:  # unbalanced quotes: GitHub still searches, so do we
            tokens = q.replace('"', " ").split()
        search = cls()
        for token in tokens:
            match = cls._QUALIFIER.match(token)
            if match is None:
                search.terms.append(token.lower())
                continue
            key, value = match.group(1).lower(), match.group(2)
            lowered = value.lower()
            if key == "is" and lowered in ("issue", "pull-request"):
                search.kinds.add(lowered)
            elif (key == "is" and lowered in ("open", "closed")) or key == "state":
                search.states.add(lowered)
            elif key == "repo":
                search.repos.add(lowered)
            elif key == "author":
                search.authors.add(lowered)
            elif key == "label":
                search.labels.add(lowered)
            elif key == "in":
                search.fields.update(f.strip() for f in lowered.split(","))
            else:
                search.terms.append(token.lower())
        return search

    def matches(self, repo_full_name: str, issue: dict[str, Any]) -> bool:
        if "issue" not in self.kinds:
            return False  # the simulator holds no pull requests
        if self.repos and repo_full_name.lower() not in self.repos:
            return False
        if self.states and issue["state"] not in self.states:
            return False
        if self.authors and (issue["user"]["login"] or "").lower() not in self.authors:
            return False
        if not self.labels <= {label["name"].lower() for label in issue["labels"]}:
            return False
        fields = self.fields or {"title", "body"}
        haystack = " ".join((issue.get(f) or "") for f in ("title", "body") if f in fields).lower()
        return all(term in haystack for term in self.terms)
