"""How many statements may hold a database connection at once, and for how long one waits.

A :class:`ConnectionGate` admits at most ``size`` statements (the pool's size), of which at most
``size - reserved`` expensive ones: the other ``reserved`` slots are kept for cheap statements,
so a burst of slow queries cannot make a trivial one queue behind them. A
statement that finds no slot within ``wait_s`` seconds is told so (:meth:`ConnectionGate.enter`
returns False), to be refused instead of waiting for as long as the slow ones run.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["ConnectionGate"]


class ConnectionGate:
    """At most ``size`` statements at once; ``reserved`` of the slots only for cheap ones."""

    def __init__(self, size: int, reserved: int, wait_s: float) -> None:
        if not 0 <= reserved < size:
            raise ValueError(f"reserved ({reserved}) must be at least 0 and below size ({size})")
        self.size = size
        self.reserved = reserved
        self.wait_s = wait_s
        self._free = size
        self._expensive = 0  # expensive statements holding a slot
        self._waiters: deque[tuple[asyncio.Future[None], bool]] = deque()

    @property
    def free(self) -> int:
        """Slots free right now."""
        return self._free

    def _admits(self, cheap: bool) -> bool:
        return self._free > 0 and (cheap or self._expensive < self.size - self.reserved)

    def _take(self, cheap: bool) -> None:
        self._free -= 1
        if not cheap:
            self._expensive += 1

    async def enter(self, cheap: bool) -> bool:
        """Take a slot, waiting up to ``wait_s``; False when none came free in that time."""
        if not self._waiters and self._admits(cheap):
            self._take(cheap)
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (fut, cheap)
        self._waiters.append(waiter)
        self._wake()
        try:
            await asyncio.wait_for(fut, self.wait_s)
        except BaseException as exc:
            if fut.done() and not fut.cancelled():
                self.leave(cheap)  # granted as the wait ended: hand the slot on
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                return False
            raise
        return True

    def leave(self, cheap: bool) -> None:
        """Give a slot back (once per successful :meth:`enter`, with the same ``cheap``)."""
        self._free += 1
        if not cheap:
            self._expensive -= 1
        self._wake()

    def _wake(self) -> None:
        if not self._waiters:
            return
        kept: deque[tuple[asyncio.Future[None], bool]] = deque()
        while self._waiters:
            fut, cheap = self._waiters.popleft()
            if fut.done():
                continue
            if self._admits(cheap):
                self._take(cheap)
                fut.set_result(None)
            else:
                kept.append((fut, cheap))
        self._waiters = kept
