"""How many statements may hold a database connection at once, and for how long one waits.

A :class:`ConnectionGate` admits at most ``size`` statements (the pool's size). ``reserved`` of
those slots are kept for cheap statements: an expensive statement waits while only reserved
slots are free, so a burst of slow queries cannot make a trivial one queue behind them. A
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
        self._waiters: deque[tuple[asyncio.Future[None], bool]] = deque()

    @property
    def free(self) -> int:
        """Slots free right now."""
        return self._free

    def _admits(self, cheap: bool) -> bool:
        return self._free > (0 if cheap else self.reserved)

    async def enter(self, cheap: bool) -> bool:
        """Take a slot, waiting up to ``wait_s``; False when none came free in that time."""
        if not self._waiters and self._admits(cheap):
            self._free -= 1
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (fut, cheap)
        self._waiters.append(waiter)
        self._wake()
        try:
            await asyncio.wait_for(fut, self.wait_s)
        except BaseException as exc:
            if fut.done() and not fut.cancelled():
                self.leave()  # granted as the wait ended: hand the slot on
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                return False
            raise
        return True

    def leave(self) -> None:
        """Give a slot back (once per successful :meth:`enter`)."""
        self._free += 1
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
                self._free -= 1
                fut.set_result(None)
            else:
                kept.append((fut, cheap))
        self._waiters = kept
