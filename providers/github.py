"""GitHub App user-to-server tokens: 8 h access / 6 month refresh, rotation that kills the old pair,
HTTP 200 `bad_refresh_token`, 401 Bad credentials, primary and secondary rate limits.

Reference: docs.github.com …/refreshing-user-access-tokens and rate-limits-for-the-rest-api.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
from pydantic import BaseModel, Field

from providers.base import (
    OK,
    UNSUPPORTED,
    ApiCall,
    ApiSession,
    Classification,
    GrantToEnd,
    HealthProbe,
    OutcomeUnknownError,
    Provider,
    ProviderSpec,
    RevocationRequest,
    TokenVerdict,
    UnsafeArgument,
    Verdict,
    json_body,
    response_json,
    retry_after_seconds,
    safe_segment,
)

SPEC = ProviderSpec(
    name="github",
    display_name="GitHub",
    api_base_url="https://api.github.com",
    oauth_base_url="https://github.com",
    authorize_path="/login/oauth/authorize",
    token_path="/login/oauth/access_token",
    client_auth_method="client_secret_post",
    # Without it GitHub answers the token endpoint form-encoded.
    token_request_headers={"Accept": "application/json"},
    api_headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
    scopes=[],  # GitHub App permissions are set on the app, not requested per grant
    default_access_ttl_seconds=28800,
    default_refresh_ttl_seconds=15811200,
    rotates_refresh_token=True,
    health_probe=HealthProbe(method="GET", path="/user"),
    secret_patterns=[r"\bgh[pousr]_[A-Za-z0-9_]{10,}"],
    docs_url="https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens",
)

# GitHub's own rules: a login is alphanumerics and single hyphens (at most 39); a repository name is letters,
# digits, '.', '_' and '-' (at most 100).
OWNER_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
REPO_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
SECONDARY_LIMIT = re.compile(r"\bsecondary rate\b", re.IGNORECASE)
SECONDARY_LIMIT_FALLBACK_SECONDS = 60.0


class GitHub(Provider):
    spec = SPEC

    def revocation(self, spec: ProviderSpec, grant: GrantToEnd) -> RevocationRequest | str:
        """Removal deletes the app's grant (every token the user gave this app); a replaced grant only its token,
        since deleting the grant would end the reconnect that replaced it. Both authenticate as the OAuth app."""
        if not grant.client_id or not grant.client_secret:
            return UNSUPPORTED
        what = "token" if grant.replaced else "grant"
        return RevocationRequest(
            "DELETE",
            f"{spec.api_base_url}/applications/{grant.client_id}/{what}",
            json={"access_token": grant.access_token},
            headers=dict(spec.api_headers),
            basic_auth=(grant.client_id, grant.client_secret),
        )

    def revocation_accepted(self, response: httpx2.Response) -> bool:
        return response.status_code in (204, 404)  # 404: GitHub no longer knows the token; nothing is left

    def classify_api_response(self, response: httpx2.Response) -> Classification:
        status = response.status_code
        if status < 400:
            return OK
        body = json_body(response)
        message = str(body.get("message", ""))[:300] if isinstance(body, dict) else ""
        if status == 401:
            return Classification(Verdict.AUTH_FAILED, "bad_credentials", "GitHub did not accept the token.")
        if status in (403, 429):
            limited = _rate_limit_wait(response, message)
            if limited is not None:
                return Classification(Verdict.RATE_LIMITED, "rate_limited", "GitHub is rate limiting these calls.", limited)
            return Classification(Verdict.FORBIDDEN, "forbidden", message or "GitHub refused: missing permission.")
        if status == 404:
            return Classification(Verdict.NOT_FOUND, "not_found", "GitHub says not found (or the app has no access to it).")
        if status == 410:
            return Classification(Verdict.INVALID_INPUT, "gone", message or "Issues are disabled for this repository.")
        if status == 422:
            return Classification(Verdict.INVALID_INPUT, "validation_failed", _validation_message(body, message))
        return super().classify_api_response(response)

    def classify_token_error(self, error: str, http_status: int | None) -> TokenVerdict:
        if error in ("bad_refresh_token", "invalid_grant", "bad_verification_code"):
            return TokenVerdict.REJECTED
        if error in ("incorrect_client_credentials", "redirect_uri_mismatch", "invalid_client"):
            return TokenVerdict.CLIENT_MISCONFIGURED
        return super().classify_token_error(error, http_status)

    def identity_from_probe(self, body: Any) -> tuple[str | None, dict[str, Any]]:
        if not isinstance(body, dict) or "id" not in body:
            return None, {}
        return str(body["id"]), {"user_id": body["id"], "login": body.get("login")}

    def describe_identity(self, provider_account_id: str, identity: dict[str, Any]) -> str:
        login = identity.get("login")
        return f"@{login} (user id {provider_account_id})" if login else f"user id {provider_account_id}"


def _rate_limit_wait(response: httpx2.Response, message: str) -> float | None:
    """Seconds to wait when a 403/429 is a rate limit (octokit's rules), None when it is a real refusal."""
    retry_after = retry_after_seconds(response)
    if retry_after is not None:
        return retry_after
    if response.headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(0.0, float(response.headers["x-ratelimit-reset"]) - time.time()) + 1
        except (KeyError, ValueError):
            return SECONDARY_LIMIT_FALLBACK_SECONDS
    if SECONDARY_LIMIT.search(message):
        return SECONDARY_LIMIT_FALLBACK_SECONDS
    if response.status_code == 429:
        return SECONDARY_LIMIT_FALLBACK_SECONDS
    return None


def _validation_message(body: Any, message: str) -> str:
    details = []
    if isinstance(body, dict):
        for error in body.get("errors") or []:
            if isinstance(error, dict):
                details.append(str(error.get("message") or f"{error.get('field')}: {error.get('code')}"))
            else:
                details.append(str(error))
    text = message or "Validation failed"
    return (text + (": " + "; ".join(details) if details else ""))[:500]


PROVIDER = GitHub()


def split_repository(repo: str) -> tuple[str, str]:
    """`owner/name` as its two halves, each a single safe path segment by GitHub's rules, else `UnsafeArgument`."""
    owner, slash, name = repo.partition("/")
    if not slash:
        raise UnsafeArgument("repo must be owner/name, e.g. octocat/hello-world")
    safe_segment("the repository owner", owner, max_length=39)
    safe_segment("the repository name", name, max_length=100)
    if not OWNER_NAME.match(owner):
        raise UnsafeArgument("the repository owner may contain only letters, digits and '-'")
    if not REPO_NAME.match(name):
        raise UnsafeArgument("the repository name may contain only letters, digits, '.', '_' and '-'")
    return owner, name


def idempotency_marker(key: str) -> str:
    return f"<!-- grantkeeper:idempotency-key={key} -->"


class Issue(BaseModel):
    """An issue as the REST API and search return it, as much of it as the tools use."""

    number: int
    title: str
    state: str = "open"
    html_url: str
    author: str | None = None
    labels: list[str] = Field(default_factory=list)

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> Issue:
        return cls(
            number=item["number"],
            title=item["title"],
            state=item.get("state", "open"),
            html_url=item["html_url"],
            author=(item.get("user") or {}).get("login"),
            # Labels come as objects from the REST API; some answers (and older search results) give plain names.
            labels=[label["name"] if isinstance(label, dict) else str(label) for label in item.get("labels") or []],
        )


class CreatedIssue(BaseModel):
    issue: Issue
    created: bool  # false when an issue with the idempotency key already existed


class IssueSearch(BaseModel):
    query: str  # as sent to GitHub
    total_count: int
    incomplete_results: bool
    items: list[Issue]


async def create_issue(
    api: ApiSession,
    *,
    owner: str,
    repo: str,
    title: str,
    body: str | None = None,
    labels: list[str] | None = None,
    assignees: list[str] | None = None,
    idempotency_key: str,
    check_existing: bool,
) -> CreatedIssue:
    """Create an issue at most once per idempotency key.

    GitHub has no Idempotency-Key header, so a hidden marker in the body names the attempt. With
    `check_existing` (the caller chose the key, so it may be a repeat) the key is looked up first (search);
    after an unclear failure the repository's recent issues are scanned for it (the issue list is consistent,
    search lags) before anything is sent again.
    """
    key = idempotency_key
    owner, repo = split_repository(f"{owner}/{repo}")
    if check_existing:
        found = await _search_marker(api, owner, repo, key)
        if found is not None:
            return CreatedIssue(issue=Issue.from_api(found), created=False)
    payload: dict[str, Any] = {"title": title, "body": ((body or "") + "\n\n" + idempotency_marker(key)).lstrip()}
    if labels:
        payload["labels"] = labels
    if assignees:
        payload["assignees"] = assignees
    started = datetime.now(UTC) - timedelta(minutes=2)
    call = ApiCall("POST", f"/repos/{owner}/{repo}/issues", json=payload, idempotent=False)
    try:
        created = response_json(await api.send(call))
    except OutcomeUnknownError:
        found = await _scan_recent(api, owner, repo, key, since=started)
        # Proven absent, so one more attempt cannot duplicate it.
        created = found if found is not None else response_json(await api.send(call))
    return CreatedIssue(issue=Issue.from_api(created), created=True)


async def _search_marker(api: ApiSession, owner: str, repo: str, key: str) -> dict[str, Any] | None:
    query = f'repo:{owner}/{repo} is:issue in:body "grantkeeper:idempotency-key={key}"'
    response = await api.send(ApiCall("GET", "/search/issues", params={"q": query, "per_page": 5}))
    for item in response_json(response).get("items", []):
        if idempotency_marker(key) in (item.get("body") or ""):
            return item
    return None


async def _scan_recent(api: ApiSession, owner: str, repo: str, key: str, since: datetime) -> dict[str, Any] | None:
    params = {
        "state": "all",
        "since": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "per_page": 100,
        "sort": "created",
        "direction": "desc",
    }
    response = await api.send(ApiCall("GET", f"/repos/{owner}/{repo}/issues", params=params))
    for item in response_json(response):
        if isinstance(item, dict) and idempotency_marker(key) in (item.get("body") or ""):
            return item
    return None


def issue_search_query(query: str, repo: str | None) -> str:
    """User-to-server tokens get 422 unless the query says is:issue or is:pull-request."""
    parts = [query.strip()]
    if repo and f"repo:{repo}" not in query:
        parts.insert(0, f"repo:{repo}")
    if not re.search(r"\bis:(issue|pull-request|pr)\b", query):
        parts.append("is:issue")
    return " ".join(p for p in parts if p)


async def search_issues(api: ApiSession, *, query: str, repo: str | None, per_page: int, page: int) -> IssueSearch:
    if repo is not None:
        split_repository(repo)
    sent = issue_search_query(query, repo)
    params = {"q": sent, "per_page": per_page, "page": page}
    result = response_json(await api.send(ApiCall("GET", "/search/issues", params=params)))
    return IssueSearch(
        query=sent,
        total_count=result.get("total_count", 0),
        incomplete_results=bool(result.get("incomplete_results")),
        items=[Issue.from_api(item) for item in result.get("items", [])],
    )
