"""What the agent gets back. Every tool's output is a union discriminated on `status`, so structured content
validates against the tool's output schema whether the call succeeded or not."""

from __future__ import annotations

import functools
import operator
from datetime import datetime
from typing import Annotated, Any, Literal

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, RootModel

from server import failures


class Ok(BaseModel):
    """Base of every tool's success shape; subclasses add the data."""

    status: Literal["ok"] = "ok"

    def summary(self) -> str:
        return "ok"


class ReauthRequired(BaseModel):
    status: Literal["reauth_required"] = "reauth_required"
    connector: str
    account: str = Field(description="org/user/connector of the account that needs the user")
    reason: str = Field(description="why the grant cannot be used, e.g. refresh_token_revoked, not_connected")
    magic_link: str = Field(description="single-use URL the account owner opens to reconnect")
    link_expires_at: datetime
    next_step: str
    _link_id: str | None = PrivateAttr(default=None)  # names the URL elicitation; not part of the result


class AdminActionRequired(BaseModel):
    status: Literal["admin_action_required"] = "admin_action_required"
    connector: str
    account: str
    reason: str
    next_step: str


class RateLimited(BaseModel):
    status: Literal["rate_limited"] = "rate_limited"
    connector: str
    retry_after_seconds: float | None = Field(description="how long to wait before calling again, when known")
    next_step: str


class UpstreamError(BaseModel):
    status: Literal["upstream_error"] = "upstream_error"
    connector: str
    reason: str
    retryable: bool = Field(description="whether calling again later may succeed")
    outcome_unknown: bool = Field(default=False, description="a write may or may not have happened; check before repeating it")
    retry_after_seconds: float | None = Field(default=None, description="when calling again may help, when known")
    next_step: str


class InvalidInput(BaseModel):
    status: Literal["invalid_input"] = "invalid_input"
    connector: str | None = None
    reason: str
    next_step: str


FAILURE_MODELS = (ReauthRequired, AdminActionRequired, RateLimited, UpstreamError, InvalidInput)
# Everything a tool call can answer besides its own Ok model.
FailureResult = ReauthRequired | AdminActionRequired | RateLimited | UpstreamError | InvalidInput


def _as_object_schema(schema: dict[str, Any]) -> None:
    # MCP wants outputSchema to be an object schema; the oneOf keeps the union. The OpenAPI-style
    # `discriminator` keyword is dropped: strict JSON Schema validators (Ajv in the Inspector) reject it,
    # and each branch's `status` const already discriminates.
    schema.pop("discriminator", None)
    schema["type"] = "object"


def result_model(ok_model: type[Ok]) -> type[RootModel[Any]]:
    """The output schema of a tool whose success shape is `ok_model`."""
    # A union built at run time, one per tool: a value to pydantic, not a type the checker can follow.
    members: Any = functools.reduce(operator.or_, (ok_model, *FAILURE_MODELS))
    root: type[RootModel[Any]] = RootModel[Annotated[members, Field(discriminator="status")]]
    name = f"{ok_model.__name__.removesuffix('Ok')}Result"
    namespace = {"model_config": ConfigDict(json_schema_extra=_as_object_schema), "__module__": ok_model.__module__}
    return type(name, (root,), namespace)


def reason_of(result: Ok | FailureResult) -> str | None:
    """The short reason code of a failure result (None for success, and for rate limits, which need none)."""
    match result:
        case Ok() | RateLimited():
            return None
        case _:
            return result.reason


def to_call_result(result: Ok | FailureResult) -> CallToolResult:
    """Structured content for programs, a sentence for the model; non-ok results are flagged isError."""
    structured = result.model_dump(mode="json")
    if isinstance(result, Ok):
        return CallToolResult(content=[TextContent(type="text", text=result.summary())], structured_content=structured)
    return CallToolResult(
        content=[TextContent(type="text", text=_describe_failure(result))], structured_content=structured, is_error=True
    )


def _describe_failure(result: FailureResult) -> str:
    match result:
        case ReauthRequired():
            return (
                f"The {result.connector} account {result.account} needs to be reconnected ({result.reason}). "
                f"{result.next_step} Link: {result.magic_link} (expires {result.link_expires_at:%Y-%m-%d %H:%M} UTC)"
            )
        case RateLimited():
            wait = f" Retry after {result.retry_after_seconds:.0f} s." if result.retry_after_seconds is not None else ""
            return f"{result.connector} is rate limiting these calls.{wait}"
        case _:
            return f"{result.status}: {result.reason}. {result.next_step}".strip()


def failure_result(
    failure: failures.ToolCallError, *, connector: str, account: str
) -> AdminActionRequired | RateLimited | UpstreamError | InvalidInput:
    """Every failure except GrantGoneError (which needs a magic link minted by the server) as its result."""
    match failure:
        case failures.AdminActionRequiredError():
            return AdminActionRequired(
                connector=connector,
                account=account,
                reason=failure.reason,
                next_step=f"{failure.message} Ask an administrator to fix it; retrying will not help until then.",
            )
        case failures.RateLimitedError():
            return RateLimited(
                connector=connector,
                retry_after_seconds=failure.retry_after,
                next_step="Wait, then call again."
                if failure.retry_after is None
                else f"Wait {failure.retry_after:.0f} seconds, then call again.",
            )
        case failures.UpstreamCallError():
            if failure.outcome_unknown:
                step = (
                    f"{failure.message} The change may or may not have been made: check before repeating it "
                    "(or repeat with the same idempotency key where the tool takes one)."
                )
            elif failure.retryable and failure.retry_after is not None:
                step = f"{failure.message} Try again in {max(1, round(failure.retry_after))} seconds."
            elif failure.retryable:
                step = f"{failure.message} Try again in a little while."
            else:
                step = failure.message
            return UpstreamError(
                connector=connector,
                reason=failure.reason,
                retryable=failure.retryable,
                outcome_unknown=failure.outcome_unknown,
                retry_after_seconds=failure.retry_after,
                next_step=step,
            )
        case failures.InvalidInputError():
            return InvalidInput(
                connector=connector,
                reason=failure.reason,
                next_step=f"{failure.message} Change the arguments; the same call will fail again.",
            )
    raise TypeError(f"no result for {type(failure).__name__}")
