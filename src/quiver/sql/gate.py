"""How many statements may hold a database connection at once, and for how long one waits.

A :class:`ConnectionGate` admits at most ``size`` statements (the pool's size), and an expensive
one only while more than ``reserved`` slots are free: the last ``reserved`` are kept for cheap
statements, whoever holds the others, so a burst of slow queries cannot make a trivial one
queue behind them. A
statement that finds no slot within ``wait_s`` seconds is told so (:meth:`ConnectionGate.enter`
returns ``REFUSED``), to be refused instead of waiting for as long as the slow ones run; one
admitted while every unreserved slot was taken is told ``IN_RESERVE``.
:class:`SlowStatements` remembers the statements estimated cheap that ran long, which then run
as expensive.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

__all__ = ["ADMITTED", "IN_RESERVE", "REFUSED", "ConnectionGate", "SlowStatements"]

#: What :meth:`ConnectionGate.enter` answers (the first falsy, the others truthy).
REFUSED = 0
ADMITTED = 1
#: Admitted on a slot kept for cheap statements: every other slot was taken.
IN_RESERVE = 2


class ConnectionGate:
    """At most ``size`` statements at once; ``reserved`` of the slots only for cheap ones."""

    def __init__(self, size: int, reserved: int, wait_s: float) -> None:
        if not 0 <= reserved < size:
            raise ValueError(f"reserved ({reserved}) must be at least 0 and below size ({size})")
        self.size = size
        self.reserved = reserved
        self.wait_s = wait_s
        self._free = size
        # Waiters in arrival order, one queue per kind: (arrival number, future)
        self._cheap_waiters: deque[tuple[int, asyncio.Future[int]]] = deque()
        self._expensive_waiters: deque[tuple[int, asyncio.Future[int]]] = deque()
        self._arrivals = 0

    @property
    def free(self) -> int:
        """Slots free right now."""
        return self._free

    def _admits(self, cheap: bool) -> bool:
        # An expensive statement never takes one of the last ``reserved`` free slots, whoever
        # holds the others: cheap statements filling them must not open the reserve to it.
        return self._free > (0 if cheap else self.reserved)

    def _take(self, cheap: bool) -> int:
        """Take a slot: IN_RESERVE for a cheap statement taking one of the last ``reserved``."""
        in_reserve = cheap and self._free <= self.reserved
        self._free -= 1
        return IN_RESERVE if in_reserve else ADMITTED

    async def enter(self, cheap: bool) -> int:
        """Take a slot, waiting up to ``wait_s``: ADMITTED, IN_RESERVE when the slot is one of
        those kept for cheap statements (the others were all taken), REFUSED (falsy) when none
        came free in that time."""
        queue = self._cheap_waiters if cheap else self._expensive_waiters
        if not queue and self._admits(cheap):
            return self._take(cheap)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._arrivals += 1
        queue.append((self._arrivals, fut))
        expiry = loop.call_later(self.wait_s, _expire, fut)
        try:
            return await fut
        except BaseException as exc:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.leave(cheap)  # granted as the caller was cancelled: hand the slot on
            if isinstance(exc, TimeoutError):
                return REFUSED
            raise
        finally:
            expiry.cancel()

    def leave(self, cheap: bool) -> None:
        """Give a slot back (once per successful :meth:`enter`, with the same ``cheap``)."""
        self._free += 1
        self._wake()

    def _wake(self) -> None:
        """Hand free slots to the waiters they admit, oldest first."""
        cheap_q, expensive_q = self._cheap_waiters, self._expensive_waiters
        while self._free > 0:
            while cheap_q and cheap_q[0][1].done():
                cheap_q.popleft()
            while expensive_q and expensive_q[0][1].done():
                expensive_q.popleft()
            expensive_ok = bool(expensive_q) and self._admits(False)
            if expensive_ok and (not cheap_q or expensive_q[0][0] < cheap_q[0][0]):
                expensive_q.popleft()[1].set_result(self._take(False))
            elif cheap_q:
                cheap_q.popleft()[1].set_result(self._take(True))
            else:
                return


def _expire(fut: asyncio.Future[int]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class SlowStatements:
    """Statement texts that ran long although their queries were estimated cheap.

    A query's estimated cost counts the rows it returns, not the rows its filter reads: a
    ``limit: 1`` over a filter no index serves is cheap on paper and may read a whole table.
    Once a statement text run as cheap has held its connection for more than ``after_s``
    seconds (or past its time limit), it runs as expensive for the next ``remember_s`` seconds:
    it no longer takes the connections kept for cheap statements, nor is it gathered with
    others of its text. Forgetting it then lets a statement that was slow only once (a lock
    wait, a cold cache) be cheap again. At most ``size`` texts are remembered, the oldest
    forgotten first.
    """

    def __init__(self, after_s: float | None, size: int = 4096, remember_s: float = 60.0) -> None:
        self.after_s = after_s
        self.size = size
        self.remember_s = remember_s
        #: text -> when it proved slow (time.monotonic())
        self._texts: dict[str, float] = {}
        self._lock = threading.Lock()  # SQLite's worker threads report too

    def cheap(self, text: str, cheap: bool) -> bool:
        """Whether a statement of ``text`` estimated ``cheap`` runs as cheap."""
        if not cheap:
            return False
        since = self._texts.get(text)
        return since is None or time.monotonic() - since >= self.remember_s

    def ran(self, text: str, seconds: float) -> None:
        """A statement of ``text`` run as cheap held its connection for ``seconds``."""
        if self.after_s is None or seconds <= self.after_s:
            return
        with self._lock:
            texts = self._texts
            texts.pop(text, None)  # to the end: the newest
            if len(texts) >= self.size:
                del texts[next(iter(texts))]
            texts[text] = time.monotonic()
