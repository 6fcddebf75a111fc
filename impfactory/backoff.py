"""One retry schedule for everything that tries again: WiFi stages, broker
reconnects, enrolment slots, webhook deliveries.

The schedule only answers "how long before try ``n + 1``"; who waits decides on
which clock. A device's WiFi stages wait on its injected clock (a scaled or virtual
clock moves them with the rest of the emulated world); network exchanges wait on the
event loop's time, since the network is real (impfactory/clock.py says why).

Jitter spreads a crowd: when a broker restarts, every device on a line loses its
link in the same millisecond, and without jitter they would all knock again in the
same millisecond too, every round. ``jitter = j`` draws each delay uniformly from
``[(1 - j) * d, d]`` where ``d`` is the plain exponential delay, so the ceiling
stays where the schedule says and the crowd spreads over the lower ``j`` of it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from impfactory.errors import ImpFactoryError


class BackoffError(ImpFactoryError, ValueError):
    """A schedule that cannot be: a negative delay, a factor under 1, jitter outside 0..1."""


@dataclass(frozen=True)
class Backoff:
    """``first * factor ** (failures - 1)`` seconds, at most ``cap``, less jitter.

    ``max_attempts`` (None: forever) is for callers that give up; ``gives_up``
    answers it so that every caller counts the same way.
    """

    first: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if not (self.first >= 0 and self.cap >= 0):
            raise BackoffError(f"delays must be >= 0 (first={self.first}, cap={self.cap})")
        if not self.factor >= 1:
            raise BackoffError(f"factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise BackoffError(f"jitter must be within 0..1, got {self.jitter}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise BackoffError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def ceiling(self, failures: int) -> float:
        """The delay after ``failures`` failures (1 = the first), before jitter."""
        exponent = min(max(failures - 1, 0), 64)  # (past 2**64 the cap has long won)
        return float(min(self.cap, self.first * self.factor ** exponent))

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` failures; ``rng`` draws the jitter
        (the module's generator when None; pass a seeded one to replay a run)."""
        top = self.ceiling(failures)
        if self.jitter == 0 or top == 0:
            return top
        return (rng or _RNG).uniform((1 - self.jitter) * top, top)

    def gives_up(self, attempts: int) -> bool:
        """True once ``attempts`` tries have been made and no more are allowed."""
        return self.max_attempts is not None and attempts >= self.max_attempts


_RNG = random.Random()
