"""Which request paths the guarded proxy tool (`<connector>.request`) may send: a relative path that stays under the
connector's API base URL once joined to it, whatever encoding tricks it carries.

Refused before anything is sent: absolute URLs and `//host`, backslashes, control characters and whitespace,
query or fragment markers (the query goes in its own argument), dot segments (`..`, `.`) raw or percent-encoded
(`%2e%2e`, `%252e`), encoded separators (`%2f`, `%5c`) and encoded NULs, over-long paths.

    path = checked_proxy_path("/repos/acme/app/issues", api_base_url="https://api.github.com")
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import httpx2

MAX_PATH_LENGTH = 2048
# Unreserved characters, sub-delimiters, ':', '@', '/', and '%' for escapes that are checked below.
_PATH_CHARACTERS = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$")
_ENCODED_FORBIDDEN = re.compile(r"%(2[fF]|5[cC]|00|25)")


class UnsafePath(ValueError):
    """A path the proxy refuses; the message is safe to show and never echoes the path."""


def checked_proxy_path(path: str, *, api_base_url: str) -> str:
    if not isinstance(path, str) or not path:
        raise UnsafePath("the path is empty; give one under the API, such as /users/me")
    if len(path) > MAX_PATH_LENGTH:
        raise UnsafePath(f"the path is longer than {MAX_PATH_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        raise UnsafePath("the path contains whitespace or control characters")
    if "\\" in path:
        raise UnsafePath("the path contains a backslash")
    if "://" in path or not path.startswith("/") or path.startswith("//"):
        raise UnsafePath("the path must be relative to the API (start with a single '/'), not a URL or another host")
    if "?" in path or "#" in path:
        raise UnsafePath("the path may not carry a query or fragment; pass query parameters in `query`")
    if not _PATH_CHARACTERS.match(path):
        raise UnsafePath("the path contains characters that are not allowed in a URL path")
    if _ENCODED_FORBIDDEN.search(path):
        raise UnsafePath("the path contains an encoded '/', '\\', '%' or NUL")
    if re.search(r"%(?![0-9A-Fa-f]{2})", path):
        raise UnsafePath("the path contains a malformed percent escape")
    decoded = unquote(path)
    for segment in (*path.split("/"), *decoded.split("/")):
        if segment in (".", ".."):
            raise UnsafePath("the path contains '.' or '..' segments")
    if "//" in path[1:] or "//" in decoded[1:]:
        raise UnsafePath("the path contains an empty segment ('//')")
    _check_under_base(api_base_url, path)
    return path


def _check_under_base(api_base_url: str, path: str) -> None:
    """The finished URL keeps the base's scheme, host, port and path prefix (belt and braces after the checks)."""
    base = httpx2.URL(api_base_url.rstrip("/") + "/")
    url = httpx2.URL(api_base_url.rstrip("/") + path)
    same_origin = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
    if not same_origin or not (url.raw_path + b"/").startswith(base.raw_path) or url.query or url.fragment:
        raise UnsafePath("the path would leave the connector's API")
