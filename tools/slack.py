"""Slack tools: read a channel's recent messages, post a message (at most once per idempotency key)."""

from __future__ import annotations

import uuid
from typing import Annotated

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from providers import slack
from server.execute import ProviderSession
from server.results import Ok, result_model
from tools.toolset import AccountLabel, Tool, Toolset

ChannelId = Annotated[
    str, Field(pattern=r"^[CDG][A-Z0-9]{2,30}$", description="Slack channel id, e.g. C0123456789 (not the #name)")
]
Timestamp = Annotated[
    str, Field(pattern=r"^\d{9,11}(\.\d{1,6})?$", description="Slack message timestamp, e.g. 1512085950.000216")
]
IdempotencyKey = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$", description="repeat a call with the same key and at most one message is posted")
]


class ReadChannelOk(Ok):
    channel: str
    messages: list[slack.Message]
    has_more: bool
    next_cursor: str | None = Field(default=None, description="pass as `cursor` to read older messages")

    def summary(self) -> str:
        lines = [f"{len(self.messages)} message(s) from {self.channel}" + (" (more available)" if self.has_more else "")]
        lines += [f"[{m.ts}] {m.user or '?'}: {m.text}" for m in self.messages]
        return "\n".join(lines)


class PostMessageOk(Ok):
    channel: str
    ts: str
    thread_ts: str | None = None
    posted: bool = Field(default=True, description="false when a message with this idempotency key already existed")
    idempotency_key: str

    def summary(self) -> str:
        return f"{'Posted' if self.posted else 'Already posted'} to {self.channel} at {self.ts}."


ReadChannelResult = result_model(ReadChannelOk)
PostMessageResult = result_model(PostMessageOk)


async def read_channel(
    ctx: Context,
    channel: ChannelId,
    limit: Annotated[int, Field(ge=1, le=200, description="how many messages, newest first")] = 20,
    cursor: Annotated[str | None, Field(max_length=500, description="from a previous call's next_cursor")] = None,
    oldest: Timestamp | None = None,
    latest: Timestamp | None = None,
    account: AccountLabel = None,
) -> Annotated[CallToolResult, ReadChannelResult]:
    """Read recent messages from a Slack channel the connected Slack account can see."""

    async def operation(api: ProviderSession) -> ReadChannelOk:
        page = await slack.conversations_history(api, channel=channel, limit=limit, cursor=cursor, oldest=oldest, latest=latest)
        return ReadChannelOk(
            channel=channel,
            messages=page.messages,
            has_more=page.has_more,
            next_cursor=page.next_cursor,
        )

    return await Toolset.of(ctx).run(ctx, "slack", operation, account=account)


async def post_message(
    ctx: Context,
    channel: ChannelId,
    text: Annotated[str, Field(min_length=1, max_length=40000)],
    thread_ts: Timestamp | None = None,
    idempotency_key: IdempotencyKey | None = None,
    account: AccountLabel = None,
) -> Annotated[CallToolResult, PostMessageResult]:
    """Post a message to a Slack channel (or reply in a thread) as the connected Slack account.

    Safe to retry with the same idempotency_key: the thread (or the last ten minutes of the channel) is checked
    for it first, so at most one message is posted."""
    key = idempotency_key or uuid.uuid4().hex

    async def operation(api: ProviderSession) -> PostMessageOk:
        message = await slack.post_message(
            api, channel=channel, text=text, thread_ts=thread_ts, idempotency_key=key, check_existing=idempotency_key is not None
        )
        return PostMessageOk(
            channel=message.channel, ts=message.ts, thread_ts=thread_ts, posted=message.posted, idempotency_key=key
        )

    return await Toolset.of(ctx).run(ctx, "slack", operation, account=account)


TOOLS = [
    Tool("slack.read_channel", read_channel, title="Read a Slack channel", read_only=True, idempotent=True),
    Tool("slack.post_message", post_message, title="Post a Slack message", read_only=False),
]
