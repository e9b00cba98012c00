"""How a declared tool call becomes one API request: arguments placed in the path (one percent-encoded segment
each), the query or the body, and the finished URL checked to stay under the provider's API.

    call = build_call(declaration.tools[0], {"project_id": "p-1"}, api_base_url="https://api.acme.example/v1")
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx2
from pydantic import BaseModel

from providers.base import ApiCall, UnsafeArgument
from providers.custom.declaration import PLACEHOLDER, ToolDeclaration


def build_call(
    tool: ToolDeclaration, arguments: dict[str, Any], *, api_base_url: str, idempotency_key: str | None = None
) -> ApiCall:
    """The request a declared tool makes with validated `arguments`.

    Path arguments are percent-encoded as one segment each ('/', '?', '#', '%' and ':' included), and the
    dot segments '.' and '..' are refused, so no argument can reach another path or host; the finished URL is
    checked to lie under `api_base_url` all the same.
    """
    by_location: dict[str, dict[str, Any]] = {"query": {}, "body": {}}
    path_values: dict[str, str] = {}
    for param in tool.params:
        value = arguments.get(param.name)
        if value is None:
            continue
        if param.location == "path":
            path_values[param.name] = _path_segment(param.name, value)
        else:
            by_location[param.location or "query"][param.wire_name] = _plain(value)
    path = PLACEHOLDER.sub(lambda match: path_values[match.group(1)], tool.path)
    _check_under_base(api_base_url, path)
    headers = {}
    if tool.idempotency_header and idempotency_key:
        headers[tool.idempotency_header] = idempotency_key
    query = {
        k: [_query_value(i) for i in v] if isinstance(v, list) else _query_value(v) for k, v in by_location["query"].items()
    } or None
    body = by_location["body"]
    has_body = any(p.location == "body" for p in tool.params)
    return ApiCall(
        tool.method,
        path,
        params=query,
        json=body if has_body and tool.body_encoding == "json" else None,
        data={k: _query_value(v) for k, v in body.items()} if has_body and tool.body_encoding == "form" else None,
        headers=headers,
        idempotent=tool.is_idempotent,
    )


def _plain(value: Any) -> Any:
    """Validated object arguments arrive as models: back to JSON values, members under their API names."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _path_segment(name: str, value: Any) -> str:
    text = _query_value(value)
    if text in ("", ".", ".."):
        raise UnsafeArgument(f"{name} may not be empty, '.' or '..' (it is one segment of the request path)")
    return quote(text, safe="")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_under_base(api_base_url: str, path: str) -> None:
    base = httpx2.URL(api_base_url.rstrip("/") + "/")
    try:
        url = httpx2.URL(api_base_url.rstrip("/") + path)
    except httpx2.InvalidURL:  # a megabyte of id makes a URL no server takes
        raise UnsafeArgument("the arguments make a request URL too long to send", "request_too_large") from None
    same_origin = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
    if not same_origin or not url.raw_path.startswith(base.raw_path) or url.query or url.fragment:
        raise UnsafeArgument("the arguments would take the request outside the provider's API")
