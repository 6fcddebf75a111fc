"""The one retry schedule: exponential, capped, jittered below its ceiling, typed errors."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impfactory.backoff import Backoff, BackoffError


def test_plain_schedule_doubles_to_the_cap() -> None:
    b = Backoff(first=1, factor=2, cap=8)
    assert [b.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    assert b.delay(0) == 1  # "no failure yet" waits as long as the first


def test_gives_up_only_with_a_limit() -> None:
    assert not Backoff().gives_up(10**6)
    limited = Backoff(max_attempts=3)
    assert [limited.gives_up(n) for n in (1, 2, 3, 4)] == [False, False, True, True]


@given(st.floats(0.001, 10), st.floats(1, 4), st.floats(0.01, 100), st.floats(0, 1),
       st.integers(1, 10_000), st.integers(0, 2**32))
def test_jitter_stays_within_its_share_of_the_ceiling(first: float, factor: float, cap: float,
                                                      jitter: float, failures: int,
                                                      seed: int) -> None:
    b = Backoff(first=first, factor=factor, cap=cap, jitter=jitter)
    top = b.ceiling(failures)
    d = b.delay(failures, random.Random(seed))
    assert (1 - jitter) * top - 1e-12 <= d <= top + 1e-12
    assert top <= cap


def test_jitter_spreads_a_crowd() -> None:
    """A thousand devices losing the broker at once do not knock again at once."""
    b = Backoff(first=0.1, cap=5, jitter=0.5)
    rng = random.Random(7)
    delays = [b.delay(3, rng) for _ in range(1000)]
    assert min(delays) >= 0.2 and max(delays) <= 0.4
    assert len({round(d, 3) for d in delays}) > 150  # spread over the lower half, not piled


@pytest.mark.parametrize("kwargs", [{"first": -1}, {"cap": -0.5}, {"factor": 0.5},
                                    {"jitter": 1.5}, {"jitter": -0.1}, {"max_attempts": 0},
                                    {"first": float("nan")}])
def test_impossible_schedules_are_typed_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(BackoffError):
        Backoff(**kwargs)  # type: ignore[arg-type]
