"""One retry schedule for everything that tries again: exponential backoff with jitter.

::

    delay(n) = min(cap, first * factor ** (n - 1)) * (1 - jitter * u),  u uniform in [0, 1)

after the ``n``-th failure in a row. A device reconnecting after a broker restart
(firmware/wifi.py, on the device's injected clock), a device registering through an
enrolment slot, the cloud's link to its broker and the webhook outbox all wait this
way. Jitter matters when many clients lost the same thing at the same moment: a
fleet that lost its broker would otherwise come back in the same instant and knock
it over again (a thundering herd); with it, their retries spread over the last
``jitter`` share of each delay. The random draws come from ``rng`` when one is
given, so a seeded run waits the same way every time.

This only says how long; the caller waits, on whatever clock it was given.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delays between retries: ``first``, times ``factor`` per failure, at most ``cap``,
    shortened by up to ``jitter`` (0: exact; 0.5: anywhere in the upper half)."""

    first: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.0
    max_attempts: int | None = None
    """Attempts after which the caller gives up (``None``: never)."""

    def __post_init__(self) -> None:
        if not (self.first >= 0 and self.factor >= 1 and self.cap >= 0
                and 0 <= self.jitter <= 1):
            raise ValueError(f"unusable backoff {self}")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1 is the first)."""
        exact = min(self.cap, self.first * self.factor ** min(max(failures - 1, 0), 64))
        if not self.jitter:
            return float(exact)
        draw = (rng or random).random()
        return float(exact * (1.0 - self.jitter * draw))

    def gives_up(self, attempts: int) -> bool:
        """Whether ``attempts`` tries are all the caller makes."""
        return self.max_attempts is not None and attempts >= self.max_attempts
