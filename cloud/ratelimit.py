"""Token buckets: how the cloud bounds what one sender may cost it.

One bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second;
each counted event takes one, and an event finding the bucket empty is refused.
``Buckets`` keeps one bucket per key (an enrolment slot, a device ID, a login
name, an address), created full on first use, and forgets buckets that have
refilled completely once it holds more than ``prune_at``, so a sender inventing
new keys costs memory only while its buckets are not yet full again. Every
operation is O(1) (pruning is amortised over the ``prune_at`` keys added since).
Time comes from the caller (``now``), so a test drives it with an injected clock.

Used by the registrar (registrations per slot), the device link (messages per
device) and ``POST /auth`` (failed logins per account and per address).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

PRUNE_AT = 10_000
"""Buckets held before the full ones are forgotten."""


class TokenBucket:
    """Up to ``burst`` events at once, ``rate`` a second after that."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError(f"a bucket needs rate > 0 and burst >= 1, not {rate}, {burst}")
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), now

    def _refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def take(self, now: float) -> bool:
        """Count one event; False (and nothing taken) when the bucket is empty."""
        self._refill(now)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def refund(self) -> None:
        """Give back one event taken (it turned out not to count)."""
        self.tokens = min(self.burst, self.tokens + 1.0)

    def wait(self, now: float) -> float:
        """Seconds until an event would be allowed (0: now)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


class Buckets:
    """One ``TokenBucket`` per key, on the clock ``clock``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float], *,
                 prune_at: int = PRUNE_AT) -> None:
        TokenBucket(rate, burst, 0.0)  # checks the figures once, here
        self.rate, self.burst, self.clock = rate, burst, clock
        self.prune_at = prune_at
        self._buckets: dict[Hashable, TokenBucket] = {}

    def take(self, key: Hashable) -> bool:
        """Count one event of ``key``; False when ``key`` is over its rate."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.prune_at:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def refund(self, key: Hashable) -> None:
        """Give back an event of ``key`` (one that turned out not to count)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.refund()

    def wait(self, key: Hashable) -> float:
        """Seconds until ``key`` may have an event again (0: now); counts nothing."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.wait(self.clock())

    def retry_after(self, *keys: Hashable) -> int:
        """Whole seconds until every one of ``keys`` may have an event (an HTTP
        ``Retry-After``; 0: now)."""
        return math.ceil(max((self.wait(key) for key in keys), default=0.0))

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]
        if len(self._buckets) >= self.prune_at:  # all busy: make room for twice as many
            self.prune_at *= 2
