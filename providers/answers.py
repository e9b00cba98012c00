"""A provider's answer as it came — status, content type, body as JSON or text — for the tools that hand it on
unshaped (declared operations, `<connector>.request`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from providers.base import ApiCall, ApiSession, json_body


class RawAnswer(BaseModel):
    http_status: int
    content_type: str | None = None
    data: Any = None  # the JSON body, when the answer is JSON and within the size limit
    text: str | None = None  # the body as text when it is not JSON, or its start when cut
    truncated: bool = False  # the body exceeded the limit; `text` holds only its start
    size_bytes: int | None = None  # size of the whole body, when known (a cut body may not say)


async def send_raw(api: ApiSession, call: ApiCall) -> RawAnswer:
    """Send `call` and return the answer unshaped. With `call.cut_at_bound` the answer was read only up to
    `call.max_response_bytes`; the response's extensions say whether it was cut there and, when known, how large
    the whole body was."""
    response = await api.send(call)
    content = response.content
    common: dict[str, Any] = {
        "http_status": response.status_code,
        "content_type": response.headers.get("content-type"),
        "size_bytes": response.extensions.get("body_size"),
    }
    if response.extensions.get("body_cut"):
        return RawAnswer(**common, text=content.decode("utf-8", "ignore"), truncated=True)
    body = json_body(response) if content else None
    if body is not None:
        return RawAnswer(**common, data=body)
    return RawAnswer(**common, text=content.decode("utf-8", "replace") or None)
