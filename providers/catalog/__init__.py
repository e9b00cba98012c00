"""Ready declarations of common OAuth 2.0 providers, one TOML file each, taken from the provider's public
documentation (every file cites the pages it was built from). `[custom_providers.linear] from_catalog = "linear"`
loads one; any other key beside `from_catalog` replaces the entry's value (a table replaces the whole table).

    declaration = resolve({"from_catalog": "linear", "api_base_url": "http://127.0.0.1:8700"})
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from typing import Any

ENTRY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class CatalogError(ValueError):
    """An unknown or unreadable catalog entry; the message is safe to show."""


def names() -> list[str]:
    """Every entry shipped with grantkeeper, by name."""
    return sorted(
        item.name.removesuffix(".toml") for item in resources.files(__package__).iterdir() if item.name.endswith(".toml")
    )


def load(name: str) -> dict[str, Any]:
    """The entry's declaration as data. Names are checked before any file is touched, so a hostile name cannot
    reach another file."""
    if not isinstance(name, str) or not ENTRY_NAME.match(name) or name not in names():
        shown = name[:40] if isinstance(name, str) else type(name).__name__
        raise CatalogError(f"from_catalog = {shown!r} is not in the catalog (known: {', '.join(names())})")
    text = resources.files(__package__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # a packaging mistake, not the operator's
        raise CatalogError(f"catalog entry {name!r} is not valid TOML ({exc})") from None


def resolve(body: dict[str, Any]) -> dict[str, Any]:
    """A declaration that names a catalog entry, completed from it; other keys override the entry's."""
    overrides = {key: value for key, value in body.items() if key != "from_catalog"}
    return {**load(body["from_catalog"]), **overrides}
