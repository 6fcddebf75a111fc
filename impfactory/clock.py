"""Injected time: every part of impfactory that waits takes a ``Clock``.

Three clocks serve three kinds of run:

* ``RealClock``: wall time, for a bench with real boards.
* ``ScaledClock(scale)``: time runs ``scale`` times faster than the wall, so a 3 s
  LED pattern costs 3/scale s of wall time while the network stays real. Emulated
  lines run on it.
* ``VirtualClock``: time moves only when a test calls ``advance()``; nothing waits
  at all. Unit tests of state machines and timers run on it.

A clock answers ``now()`` in its own seconds and ``sleep()``/``call_later()`` in
its own seconds. Timeouts for real network exchanges belong to the network, not
to the emulated device, so code waiting on a broker uses the event loop's own
time, not a scaled clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from impfactory.errors import ImpFactoryError


class ClockError(ImpFactoryError, ValueError):
    """A clock asked for something impossible (a zero, negative or NaN scale)."""


class TimerHandle(Protocol):
    """What ``call_later`` returns: something that can be cancelled."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """The one interface everything that waits depends on."""

    def now(self) -> float:
        """Seconds on this clock (monotonic; the epoch is the clock's own)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` of this clock's time."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], Any]) -> TimerHandle:
        """Run ``callback`` after ``seconds`` of this clock's time."""
        ...


class RealClock:
    """Wall time through the running asyncio loop (``time.monotonic`` outside one)."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def call_later(self, seconds: float, callback: Callable[[], Any]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, seconds), callback)


class ScaledClock:
    """Time that runs ``scale`` times faster than the wall.

    ``now()`` starts at 0 when the clock is made. ``scale=1`` behaves like
    ``RealClock`` with a different epoch.
    """

    def __init__(self, scale: float = 100.0) -> None:
        if not 0 < scale < math.inf:
            raise ClockError(f"clock scale must be finite and positive, got {scale}")
        self.scale = float(scale)
        self._t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)

    def call_later(self, seconds: float, callback: Callable[[], Any]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, seconds) / self.scale, callback)


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    callback: Callable[[], Any] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """Time that moves only when ``advance()`` is called.

    ``sleep()`` parks the task on a future that ``advance()`` resolves, so an
    asyncio test can run a device's whole minute-long life in microseconds:
    ``await clock.advance(60)`` runs every timer due within that minute in order,
    letting the loop run the woken tasks between timers.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._timers: list[_Timer] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, seconds: float, callback: Callable[[], Any]) -> TimerHandle:
        timer = _Timer(self._now + max(0.0, seconds), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        handle = self.call_later(seconds, wake)
        try:
            await future
        finally:
            handle.cancel()

    def next_due(self) -> float | None:
        """When the earliest pending timer fires, or ``None`` when none is pending."""
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0].due if self._timers else None

    def step(self) -> bool:
        """Jump to the next timer and run it (synchronously); False when none is pending."""
        due = self.next_due()
        if due is None:
            return False
        timer = heapq.heappop(self._timers)
        self._now = max(self._now, due)
        timer.callback()
        return True

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every timer due on the way."""
        target = self._now + max(0.0, seconds)
        await _settle()
        while True:
            due = self.next_due()
            if due is None or due > target:
                break
            self.step()
            await _settle()
        self._now = max(self._now, target)
        await _settle()

    def advance_sync(self, seconds: float) -> None:
        """``advance`` for code without an event loop (callbacks only, no tasks)."""
        target = self._now + max(0.0, seconds)
        while True:
            due = self.next_due()
            if due is None or due > target:
                break
            self.step()
        self._now = max(self._now, target)


async def _settle(rounds: int = 8) -> None:
    """Let tasks woken by a timer run until they block again."""
    for _ in range(rounds):
        await asyncio.sleep(0)
