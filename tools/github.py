"""GitHub tools: create an issue (at most once per idempotency key), search issues."""

from __future__ import annotations

import uuid
from typing import Annotated

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from providers import github
from server.execute import ProviderSession
from server.results import Ok, result_model
from tools.toolset import AccountLabel, Tool, Toolset

# Checked by providers/github.split_repository (each half one safe path segment), so a refusal is `invalid_input`.
Repository = Annotated[str, Field(max_length=140, description="owner/name, e.g. octocat/hello-world")]
IdempotencyKey = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$", description="repeat a call with the same key and at most one issue is created")
]


class CreateIssueOk(Ok):
    issue: github.Issue
    created: bool = Field(description="false when an issue with this idempotency key already existed")
    idempotency_key: str

    def summary(self) -> str:
        verb = "Created" if self.created else "Already existed:"
        return f"{verb} issue #{self.issue.number} {self.issue.html_url}"


class SearchIssuesOk(Ok):
    query: str = Field(description="the query as sent to GitHub")
    total_count: int
    incomplete_results: bool
    items: list[github.Issue]

    def summary(self) -> str:
        lines = [f"{self.total_count} issue(s) match {self.query!r}"]
        lines += [f"#{i.number} [{i.state}] {i.title} {i.html_url}" for i in self.items]
        return "\n".join(lines)


CreateIssueResult = result_model(CreateIssueOk)
SearchIssuesResult = result_model(SearchIssuesOk)


async def create_issue(
    ctx: Context,
    repo: Repository,
    title: Annotated[str, Field(min_length=1, max_length=256)],
    body: Annotated[str | None, Field(max_length=60000)] = None,
    labels: Annotated[list[Annotated[str, Field(min_length=1, max_length=50)]], Field(max_length=20)] = [],  # noqa: B006
    idempotency_key: IdempotencyKey | None = None,
    account: AccountLabel = None,
) -> Annotated[CallToolResult, CreateIssueResult]:
    """Create an issue in a GitHub repository as the connected GitHub user.

    Safe to retry: pass the same idempotency_key and at most one issue is created."""
    key = idempotency_key or uuid.uuid4().hex

    async def operation(api: ProviderSession) -> CreateIssueOk:
        owner, name = github.split_repository(repo)
        created = await github.create_issue(
            api,
            owner=owner,
            repo=name,
            title=title,
            body=body,
            labels=list(labels),
            idempotency_key=key,
            check_existing=idempotency_key is not None,
        )
        return CreateIssueOk(issue=created.issue, created=created.created, idempotency_key=key)

    return await Toolset.of(ctx).run(ctx, "github", operation, account=account)


async def search_issues(
    ctx: Context,
    query: Annotated[str, Field(min_length=1, max_length=256, description="GitHub search syntax, e.g. 'is:open bug'")],
    repo: Repository | None = None,
    per_page: Annotated[int, Field(ge=1, le=100)] = 20,
    page: Annotated[int, Field(ge=1, le=10)] = 1,
    account: AccountLabel = None,
) -> Annotated[CallToolResult, SearchIssuesResult]:
    """Search issues on GitHub (optionally in one repository) as the connected GitHub user."""

    async def operation(api: ProviderSession) -> SearchIssuesOk:
        found = await github.search_issues(api, query=query, repo=repo, per_page=per_page, page=page)
        return SearchIssuesOk(
            query=found.query,
            total_count=found.total_count,
            incomplete_results=found.incomplete_results,
            items=found.items,
        )

    return await Toolset.of(ctx).run(ctx, "github", operation, account=account)


TOOLS = [
    Tool("github.create_issue", create_issue, title="Create a GitHub issue", read_only=False, idempotent=True),
    Tool("github.search_issues", search_issues, title="Search GitHub issues", read_only=True, idempotent=True),
]
