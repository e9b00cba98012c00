"""GitHub tools: create an issue (at most once per idempotency key), search issues."""

import uuid
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from providers import github
from server.execute import ProviderSession
from server.results import Ok
from tools import Toolset

# Checked by providers/github.split_repository (each half one safe path segment), so a refusal is `invalid_input`.
Repository = Annotated[str, Field(max_length=140, description="owner/name, e.g. octocat/hello-world")]
IdempotencyKey = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$", description="repeat a call with the same key and at most one issue is created")
]


class IssueSummary(BaseModel):
    number: int
    title: str
    state: str
    html_url: str
    author: str | None = None
    labels: list[str] = Field(default_factory=list)

    @classmethod
    def from_github(cls, item: dict[str, Any]) -> "IssueSummary":
        return cls(
            number=item["number"],
            title=item["title"],
            state=item.get("state", "open"),
            html_url=item["html_url"],
            author=(item.get("user") or {}).get("login"),
            labels=[label["name"] if isinstance(label, dict) else str(label) for label in item.get("labels") or []],
        )


class CreateIssueOk(Ok):
    issue: IssueSummary
    created: bool = Field(description="false when an issue with this idempotency key already existed")
    idempotency_key: str

    def summary(self) -> str:
        verb = "Created" if self.created else "Already existed:"
        return f"{verb} issue #{self.issue.number} {self.issue.html_url}"


class SearchIssuesOk(Ok):
    query: str = Field(description="the query as sent to GitHub")
    total_count: int
    incomplete_results: bool
    items: list[IssueSummary]

    def summary(self) -> str:
        lines = [f"{self.total_count} issue(s) match {self.query!r}"]
        lines += [f"#{i.number} [{i.state}] {i.title} {i.html_url}" for i in self.items]
        return "\n".join(lines)


def register(toolset: Toolset) -> None:
    @toolset.tool("github.create_issue", title="Create a GitHub issue", ok=CreateIssueOk, read_only=False, idempotent=True)
    async def create_issue(
        repo: Repository,
        title: Annotated[str, Field(min_length=1, max_length=256)],
        body: Annotated[str | None, Field(max_length=60000)] = None,
        labels: Annotated[list[Annotated[str, Field(min_length=1, max_length=50)]], Field(max_length=20)] = [],  # noqa: B006
        idempotency_key: IdempotencyKey | None = None,
        ctx: Context = None,
    ):
        """Create an issue in a GitHub repository as the connected GitHub user.

        Safe to retry: pass the same idempotency_key and at most one issue is created."""
        key = idempotency_key or uuid.uuid4().hex

        async def operation(api: ProviderSession) -> CreateIssueOk:
            owner, name = github.split_repository(repo)
            issue, created = await github.create_issue(
                api,
                owner=owner,
                repo=name,
                title=title,
                body=body,
                labels=list(labels),
                idempotency_key=key,
                check_existing=idempotency_key is not None,
            )
            return CreateIssueOk(issue=IssueSummary.from_github(issue), created=created, idempotency_key=key)

        return await toolset.run(ctx, "github", operation, tool="github.create_issue")

    @toolset.tool("github.search_issues", title="Search GitHub issues", ok=SearchIssuesOk, read_only=True, idempotent=True)
    async def search_issues(
        query: Annotated[str, Field(min_length=1, max_length=256, description="GitHub search syntax, e.g. 'is:open bug'")],
        repo: Repository | None = None,
        per_page: Annotated[int, Field(ge=1, le=100)] = 20,
        page: Annotated[int, Field(ge=1, le=10)] = 1,
        ctx: Context = None,
    ):
        """Search issues on GitHub (optionally in one repository) as the connected GitHub user."""

        async def operation(api: ProviderSession) -> SearchIssuesOk:
            result = await github.search_issues(api, query=query, repo=repo, per_page=per_page, page=page)
            return SearchIssuesOk(
                query=github.issue_search_query(query, repo),
                total_count=result.get("total_count", 0),
                incomplete_results=bool(result.get("incomplete_results")),
                items=[IssueSummary.from_github(item) for item in result.get("items", [])],
            )

        return await toolset.run(ctx, "github", operation, tool="github.search_issues")
