"""Tools of providers declared in configuration: one typed tool per declared operation.

Each declared operation becomes a function whose signature is built from the declared parameters, so the MCP
server derives the input schema and pydantic validates the arguments exactly as for the hand-written tools; the
call then takes the same path (fresh token, reactive refresh, classification, retries) and returns the provider's
HTTP status and JSON body, bounded in size.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, Self

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field, create_model

from providers.answers import RawAnswer, send_raw
from providers.base import UnsafeArgument
from providers.custom import DeclaredProvider, ToolDeclaration, build_call
from server.execute import ProviderSession
from server.results import Ok, result_model
from server.settings import ConfigError
from tools.toolset import AccountLabel, Tool, Toolset, with_signature

IdempotencyKey = Annotated[
    str | None,
    Field(
        pattern=r"^[A-Za-z0-9_.:-]{8,128}$",
        description="repeat a call with the same key and the provider applies it at most once",
    ),
]


class DeclaredCallOk(Ok):
    """What a declared tool returns: the provider's answer, as it came, within a size limit."""

    http_status: int = Field(description="the provider's HTTP status code")
    content_type: str | None = None
    data: Any = Field(default=None, description="the JSON body, when the answer is JSON and within the size limit")
    text: str | None = Field(default=None, description="the body as text when it is not JSON, or its start when cut")
    truncated: bool = Field(default=False, description="the body exceeded the limit; `text` holds only its start")
    size_bytes: int | None = Field(description="size of the whole body, when known (a cut body may not say)")

    @classmethod
    def from_answer(cls, answer: RawAnswer) -> Self:
        return cls.model_validate(answer, from_attributes=True)

    def summary(self) -> str:
        head = f"HTTP {self.http_status}"
        if self.truncated:
            whole = f" of {self.size_bytes}" if self.size_bytes is not None else ""
            head += f" (body cut at {len((self.text or '').encode())}{whole} bytes)"
        if self.data is not None:
            return head + "\n" + json.dumps(self.data, ensure_ascii=False)
        return head + ("\n" + self.text if self.text else "")


def tools(toolset: Toolset) -> Iterator[Tool]:
    """One tool per operation of every declared provider, each made once the ones before it are registered (its
    exposed name is checked against theirs)."""
    for connector in list(toolset.runtime.connectors.values()):
        if isinstance(connector.provider, DeclaredProvider):
            for operation in connector.provider.declaration.tools:
                yield declared_tool(toolset, connector.name, connector.provider, operation)


def declared_tool(toolset: Toolset, provider_name: str, provider: DeclaredProvider, tool: ToolDeclaration) -> Tool:
    canonical = f"{provider_name}.{tool.name}"
    exposed = toolset.exposed(canonical)
    if exposed in toolset.registered:
        raise ConfigError(
            f"custom provider {provider_name!r}: tool {canonical!r} would be exposed as {exposed!r}, "
            f"which {toolset.registered[exposed]!r} already uses; rename one of them"
        )
    ok_model = create_model(f"{_camel(provider_name)}{_camel(tool.name)}Ok", __base__=DeclaredCallOk, __module__=__name__)
    limit = tool.max_response_bytes or provider.declaration.max_response_bytes

    async def call_declared_tool(ctx: Context, account: str | None = None, **arguments: Any) -> CallToolResult:
        toolset = Toolset.of(ctx)
        key = arguments.pop("idempotency_key", None) or (uuid.uuid4().hex if tool.idempotency_header else None)
        connector = toolset.runtime.connectors[provider_name]
        try:
            call = build_call(tool, arguments, api_base_url=connector.spec.api_base_url, idempotency_key=key)
        except UnsafeArgument as refused:
            return toolset.refuse(provider_name, refused.reason, str(refused))
        # Read at most `limit` bytes of the answer and cut it there: the same bounded read as every provider call.
        call = dataclasses.replace(call, max_response_bytes=limit, cut_at_bound=True)

        async def operation(api: ProviderSession) -> DeclaredCallOk:
            return ok_model.from_answer(await send_raw(api, call))

        return await toolset.run(ctx, provider_name, operation, account=account)

    parameters = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)]
    annotations: dict[str, Any] = {"ctx": Context}
    for param in tool.params:
        annotation, default = param.argument()
        parameters.append(
            inspect.Parameter(
                param.name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=annotation,
                default=inspect.Parameter.empty if default is ... else default,
            )
        )
        annotations[param.name] = annotation
    if tool.idempotency_header:
        parameters.append(
            inspect.Parameter("idempotency_key", inspect.Parameter.KEYWORD_ONLY, annotation=IdempotencyKey, default=None)
        )
        annotations["idempotency_key"] = IdempotencyKey
    parameters.append(inspect.Parameter("account", inspect.Parameter.KEYWORD_ONLY, annotation=AccountLabel, default=None))
    annotations["account"] = AccountLabel
    result = Annotated[CallToolResult, result_model(ok_model)]
    # The MCP server reads the signature (input schema) and the annotations (which argument is the context).
    function = with_signature(call_declared_tool, inspect.Signature(parameters, return_annotation=result), annotations)
    function.__name__ = function.__qualname__ = exposed.replace(".", "_")
    return Tool(
        canonical,
        function,
        title=tool.display_title,
        read_only=tool.is_read_only,
        destructive=tool.is_destructive,
        idempotent=tool.is_idempotent,
        description=tool.description + ("\n\nSafe to retry with the same idempotency_key." if tool.idempotency_header else ""),
    )


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"_+", name) if part)
