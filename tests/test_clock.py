"""The injected clocks keep their promises: virtual time costs no wall time."""

import asyncio
import time

import pytest

from impfactory.clock import ScaledClock, VirtualClock


def test_virtual_clock_runs_timers_in_order() -> None:
    clock = VirtualClock()
    fired: list[tuple[str, float]] = []
    clock.call_later(3.0, lambda: fired.append(("b", clock.now())))
    clock.call_later(1.0, lambda: fired.append(("a", clock.now())))
    cancelled = clock.call_later(2.0, lambda: fired.append(("x", clock.now())))
    cancelled.cancel()
    clock.advance_sync(2.5)
    assert fired == [("a", 1.0)]
    clock.advance_sync(10)
    assert fired == [("a", 1.0), ("b", 3.0)]
    assert clock.now() == 12.5


def test_virtual_sleep_costs_no_wall_time() -> None:
    async def scenario() -> list[float]:
        clock = VirtualClock()
        seen: list[float] = []

        async def device() -> None:
            for _ in range(3):
                await clock.sleep(60)
                seen.append(clock.now())

        task = asyncio.create_task(device())
        await clock.advance(200)
        await task
        return seen

    start = time.monotonic()
    assert asyncio.run(scenario()) == [60.0, 120.0, 180.0]
    assert time.monotonic() - start < 1.0


def test_scaled_clock_is_faster_than_the_wall() -> None:
    async def scenario() -> float:
        clock = ScaledClock(1000)
        t0 = clock.now()
        await clock.sleep(2.0)
        return clock.now() - t0

    start = time.monotonic()
    elapsed = asyncio.run(scenario())
    assert elapsed >= 2.0
    assert time.monotonic() - start < 0.5


def test_scaled_clock_rejects_nonsense_scale() -> None:
    with pytest.raises(ValueError):
        ScaledClock(0)


def test_a_nonsense_scale_is_a_typed_error() -> None:
    from impfactory.errors import ImpFactoryError

    for scale in (0, -1.0, float("nan")):
        with pytest.raises(ImpFactoryError):
            ScaledClock(scale)
