"""Reading provider declarations from the settings: config.toml's `[custom_providers]` and GRANTKEEPER_PROVIDERS_FILE,
each checked against the declaration schema (`providers/custom/`) and for safe URLs, all problems reported together
and no value echoed that could be a secret.

    declarations = read_declarations(settings)     # {"acme": ("config.toml [custom_providers]", ProviderDeclaration)}
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

import providers
from providers import catalog
from providers.custom import PROVIDER_NAME, ProviderDeclaration
from server.settings import ConfigError, Settings, check_base_url

# Tool namespaces that are not providers but must not be taken by one.
RESERVED_NAMES = {"accounts", "grantkeeper"}
_SECRET_FIELDS = {"client_id", "client_secret"}


def read_declarations(settings: Settings) -> dict[str, tuple[str, ProviderDeclaration]]:
    """(source, declaration) per provider name, statically checked; all problems are reported together."""
    raw: dict[str, tuple[str, Any]] = {}
    problems: list[str] = []
    sources = [("config.toml [custom_providers]", settings.custom_providers)]
    if settings.providers_file is not None:
        path = providers_file_path(settings)
        sources.append((str(path), _read_providers_file(path)))
    for source, table in sources:
        if not isinstance(table, dict):
            problems.append(f"{source}: custom_providers must be a table of providers by name")
            continue
        for name, body in table.items():
            if name in raw:
                problems.append(f"{source}: custom provider {name!r} is also declared in {raw[name][0]}; keep one")
                continue
            raw[name] = (source, body)

    declarations = {}
    for name, (source, body) in raw.items():
        where = f"{source}: custom provider {name!r}"
        if not isinstance(name, str) or not PROVIDER_NAME.match(name):
            problems.append(
                f"{where}: the name must be lowercase letters, digits and _, starting with a letter "
                "(it becomes the tool prefix and GRANTKEEPER_<NAME>_CLIENT_ID)"
            )
            continue
        if name in providers.BUILTIN or name in RESERVED_NAMES:
            kind = "the built-in provider" if name in providers.BUILTIN else "the reserved tool namespace"
            problems.append(f"{where}: the name shadows {kind} {name!r}; choose another name")
            continue
        if not isinstance(body, dict):
            problems.append(f"{where}: must be a table of settings")
            continue
        if "from_catalog" in body:
            try:
                body = catalog.resolve(body)
            except catalog.CatalogError as exc:
                problems.append(f"{where}: {exc}")
                continue
        secrets_here = sorted(_SECRET_FIELDS & set(body))
        if secrets_here:
            upper = name.upper()
            problems.append(
                f"{where}: {', '.join(secrets_here)} do not belong in a provider declaration; set "
                f"GRANTKEEPER_{upper}_CLIENT_ID and GRANTKEEPER_{upper}_CLIENT_SECRET in the environment "
                f"(or [providers.{name}] in config.toml)"
            )
            continue
        try:
            declaration = ProviderDeclaration.model_validate(body, context={"provider": name})
        except ValidationError as exc:
            problems.extend(f"{where}: {problem}" for problem in _describe_errors(exc, body))
            continue
        url_problems = _url_problems(name, declaration)
        if url_problems:
            problems.extend(f"{where}: {problem}" for problem in url_problems)
            continue
        declarations[name] = (source, declaration)
    if problems:
        raise ConfigError("\n  ".join(["invalid custom provider configuration:", *problems]))
    return declarations


def providers_file_path(settings: Settings) -> Path:
    """GRANTKEEPER_PROVIDERS_FILE; a relative path is taken from the data directory, whatever the working
    directory of the process that launched the server (Claude Desktop's, say)."""
    assert settings.providers_file is not None
    path = settings.providers_file.expanduser()
    return path if path.is_absolute() else settings.home / path


def _read_providers_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"GRANTKEEPER_PROVIDERS_FILE: cannot read {path} ({exc.strerror or type(exc).__name__})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ConfigError(f"{path}: not valid {kind} ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object with a custom_providers table")
    unknown = sorted(set(data) - {"custom_providers"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {unknown[0]!r}; declare providers under custom_providers")
    return data.get("custom_providers", {})


_FRIENDLY = {
    "extra_forbidden": "unknown field (check the spelling against docs/custom-providers.md)",
    "missing": "required field is missing",
}


def _describe_errors(exc: ValidationError, body: Any) -> list[str]:
    """pydantic's errors as `tools[0] (list_projects).params[1] (limit).minimum: <problem>`, without input values."""
    described = []
    for error in exc.errors(include_input=False, include_url=False):
        location: list[str] = []
        node = body
        for part in error["loc"]:
            if isinstance(part, int):
                location[-1:] = [f"{location[-1] if location else ''}[{part}]"]
                node = node[part] if isinstance(node, list) and part < len(node) else None
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    location[-1] += f" ({node['name'][:64]})"
            else:
                location.append(str(part))
                node = node.get(part) if isinstance(node, dict) else None
        message = _FRIENDLY.get(error["type"], error["msg"].removeprefix("Value error, "))
        described.append(f"{'.'.join(location) or 'declaration'}: {message}")
    return described


def _url_problems(name: str, declaration: ProviderDeclaration) -> list[str]:
    """Every URL the server will contact must be https, or http on loopback, and carry no credentials."""
    problems = []
    for field in (
        "api_base_url",
        "oauth_base_url",
        "authorize_url",
        "token_url",
        "revoke_url",
        "issuer",
        "discovery_url",
        "jwks_url",
        "refresh_url",
    ):
        value = getattr(declaration, field)
        if value is None:
            continue
        try:
            check_base_url(value, field)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        parts = urlsplit(value)
        if field in ("api_base_url", "oauth_base_url", "issuer") and (parts.query or parts.fragment):
            problems.append(f"{field} may not have a query or fragment")
    return problems
