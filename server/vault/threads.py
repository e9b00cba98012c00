"""The one way async code reaches the (synchronous) vault: run a vault call in a worker thread, keeping its types."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio.to_thread

P = ParamSpec("P")
T = TypeVar("T")


async def in_vault_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`await in_vault_thread(vault.accounts.get, account_id)`: the call runs off the event loop (SQLAlchemy
    sessions block), and the result keeps `fn`'s return type, so the vault's types reach async callers."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
