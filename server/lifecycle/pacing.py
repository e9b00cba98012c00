"""`ProviderPacer`: at most `rate` starts per second per provider in one worker, so a burst of due grants
(a fleet imported at once, a worker back from an outage) reaches each provider as an even trickle.

    pacer = ProviderPacer(rate=5)
    await pacer.wait("slack")   # returns at once, then 0.2 s apart for each further "slack" caller

`sleep` and `clock` are injectable so tests can count the spacing instead of waiting for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio


class ProviderPacer:
    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = anyio.current_time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ):
        self.interval = 1.0 / rate if rate > 0 else 0.0  # rate 0: no pacing
        self._clock = clock
        self._sleep = sleep
        self._next_slot: dict[str, float] = {}

    async def wait(self, provider: str) -> None:
        """Wait for this provider's next free slot. Slots are handed out in call order, one interval apart."""
        if not self.interval:
            return
        now = self._clock()
        slot = max(now, self._next_slot.get(provider, now))
        self._next_slot[provider] = slot + self.interval
        if slot > now:
            await self._sleep(slot - now)
