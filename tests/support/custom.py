"""A provider declared in config.toml ("acme") against the OAuth 2.0 simulator, and a runtime opened on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from server.runtime import Runtime
from server.settings import Settings

ACME_CLIENT = {"GRANTKEEPER_ACME_CLIENT_ID": "sim-oauth2-client", "GRANTKEEPER_ACME_CLIENT_SECRET": "sim-oauth2-secret"}

ACME_TOOLS = """
[[custom_providers.acme.tools]]
name = "list_projects"
title = "List Acme projects"
description = "List the projects the connected Acme user can see."
path = "/projects"
params = [
  { name = "limit", type = "integer", minimum = 1, maximum = 100, default = 20, description = "at most this many" },
  { name = "status", enum = ["active", "archived"] },
]

[[custom_providers.acme.tools]]
name = "acme.get_project"
description = "Read one Acme project."
path = "/projects/{project_id}"
params = [{ name = "project_id", description = "e.g. p-1", max_length = 200 }]

[[custom_providers.acme.tools]]
name = "create_project"
description = "Create an Acme project."
method = "POST"
path = "/projects"
params = [
  { name = "name", required = true, min_length = 1, max_length = 80 },
  { name = "summary", api_name = "description", max_length = 500 },
]

[[custom_providers.acme.tools]]
name = "create_project_once"
description = "Create an Acme project at most once per idempotency key."
method = "POST"
path = "/projects"
idempotency_header = "Idempotency-Key"
params = [{ name = "name", required = true }]

[[custom_providers.acme.tools]]
name = "delete_project"
description = "Delete an Acme project."
method = "DELETE"
path = "/projects/{project_id}"
params = [{ name = "project_id" }]
"""


def acme_declaration(url: str, *, endpoints: str | None = None, extra: str = "", tools: str = ACME_TOOLS) -> str:
    """The TOML of `[custom_providers.acme]` served by the simulator at `url`; `extra` lines go in its table."""
    if endpoints is None:
        endpoints = f'oauth_base_url = "{url}"\nauthorize_path = "/oauth/authorize"\ntoken_path = "/oauth/token"\n'
    return (
        f'[custom_providers.acme]\ndisplay_name = "Acme"\napi_base_url = "{url}/api"\n{endpoints}'
        f'health_probe = {{ path = "/me", account_id_field = "sub" }}\n{extra}\n{tools}'
    )


def write_config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(text)
    return path


@asynccontextmanager
async def opened_runtime() -> AsyncIterator[Runtime]:
    """A runtime on the settings in the environment and config.toml as they are now."""
    runtime = Runtime.open(Settings())
    try:
        yield runtime
    finally:
        await runtime.aclose()
