"""pytest fixtures: a bench controller's port, real or emulated, chosen from outside.

``bench_port`` is the path of a bench controller. With ``IMPFACTORY_BENCH_PORT``
set (``/dev/ttyACM0``, ``socket://bench:4000`` ...) it is that real bench;
otherwise an emulated bench with an emulated imp as its DUT is served on a pty
for the test. A test written against ``bench_port`` runs unchanged on both, the
way OpenHTF swaps plugs from outside a test, never with ``if simulate:`` inside.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

BENCH_PORT_ENV = "IMPFACTORY_BENCH_PORT"
#: How much faster than the wall an emulated bench runs in tests.
EMULATED_BENCH_SCALE = 10.0


@pytest.fixture
def bench_port() -> Iterator[str]:
    """A bench controller to open with ``BenchDriver.open(bench_port)``."""
    real = os.environ.get(BENCH_PORT_ENV)
    if real:
        yield real
        return
    # imported here so that loading the plugin costs other test runs nothing
    from impfactory.hw.bench_emulated import ControllerThread, EmulatedBenchController
    from impfactory.tools.cmd_bench import EmulatedImpBench

    from impfactory.clock import ScaledClock

    clock = ScaledClock(EMULATED_BENCH_SCALE)
    target = EmulatedImpBench.build(clock)
    device = target.device
    runner = ControllerThread(EmulatedBenchController(target, clock))
    path = runner.start()
    runner.call(device.power_on)
    try:
        yield path
    finally:
        asyncio.run_coroutine_threadsafe(device.power_off(), runner.loop).result(10)
        runner.stop()
