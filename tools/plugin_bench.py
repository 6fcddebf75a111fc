"""pytest fixtures: a bench controller, real or emulated, chosen from outside the test.

* ``bench_port``: the path of a bench controller. ``--impfactory-bench PORT`` (or
  ``IMPFACTORY_BENCH_PORT``) names a real one (``/dev/ttyACM0``,
  ``socket://bench:4000``, the pty ``impfactory bench emulate`` prints ...);
  otherwise an emulated bench with an emulated imp as its DUT is served on a pty
  for the test.
* ``bench``: that controller opened, as a ``Bench``: power the DUT, watch its
  status LED by state name, flash a BlinkUp on the bench LED; ``bench.driver`` is
  the ``BenchDriver`` (docs/bench.md) for anything else.

A test written against them runs unchanged on both, the way OpenHTF swaps plugs
from outside a test, never with ``if simulate:`` inside::

    def test_the_dut_takes_a_blinkup(bench):
        bench.power_cycle()
        states = bench.blinkup("factory-wifi", "factory-password")
        assert_led_sequence(states, ["waiting_blinkup", "blinkup_ok"])
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from impfactory.hw.bench import BenchDriver, BenchTimeoutError, SampleBuffer
from impfactory.protocol import bench as bp
from impfactory.protocol.bench_status import StatusDecoder
from impfactory.protocol.blinkup import BlinkUpConfig, encode_frame
from impfactory.protocol.linecode import BILEVEL_FAST_RATE, BILEVEL_RATE, bilevel_symbols
from impfactory.tools.plugin_options import BENCH_PORT_ENV, bench_spec

__all__ = ["BENCH_PORT_ENV", "EMULATED_BENCH_SCALE", "Bench", "bench", "bench_port"]

#: How much faster than the wall an emulated bench runs in tests.
EMULATED_BENCH_SCALE = 10.0
#: Samples a second the bench's colour sensor reads the DUT's status LED at.
STATUS_RATE = 100.0
#: Wall seconds a stream may lag behind the bench seconds asked for.
STREAM_SLACK_S = 30.0


class Bench:
    """An opened bench controller, in the terms a factory test uses.

    Times are bench seconds (counted in the samples the controller sends), so an
    emulated bench running faster than the wall finishes sooner; states are the
    status-LED names of docs/device.md, as ``impfactory bench watch`` prints them
    (two looks that cannot be told apart read ``a/b``, e.g. ``updating/blessed``).
    """

    def __init__(self, driver: BenchDriver) -> None:
        self.driver = driver
        self.identity = driver.identify()

    @property
    def has_power(self) -> bool:
        """Whether the controller switches the DUT's power."""
        return bool(self.identity.capabilities & bp.Capability.POWER)

    def power(self, on: bool) -> None:
        self.driver.power(on)

    def power_cycle(self) -> None:
        """Switch the DUT off and on: a fresh boot, its BlinkUp window open for 60 s."""
        self.driver.power(False)
        self.driver.power(True)

    def press(self, seconds: float = 0.2) -> None:
        """Press the fixture's button (the bench's relay)."""
        self.driver.press_button(seconds)

    def watch(self, seconds: float) -> list[str]:
        """The DUT's status-LED states over the next ``seconds``, in order."""
        status = self.driver.start_status(STATUS_RATE)
        try:
            self._wait(status, seconds)
        finally:
            self.driver.stop(bp.Stream.STATUS)
        return _states(status)

    def blinkup(self, ssid: str, password: str = "", *, plan_id: str | None = None,
                token: str | None = None, fast: bool = True, settle: float = 1.0,
                watch: float = 5.0) -> list[str]:
        """Flash a bi-level BlinkUp on the bench LED into the DUT's light sensor and
        return the status-LED states it showed from ``settle`` seconds before the light
        until ``watch`` seconds after (``blinkup_ok`` among them when it took it)."""
        frame = encode_frame(BlinkUpConfig(ssid=ssid.encode() or None,
                                           password=password.encode() if ssid and password
                                           else None, plan_id=plan_id, token=token))
        symbols = bytes(255 if s else 0 for s in bilevel_symbols(frame))
        status = self.driver.start_status(STATUS_RATE)
        try:
            self._wait(status, settle)
            start = status.count() / STATUS_RATE
            duration = self.driver.light_out(symbols, BILEVEL_FAST_RATE if fast
                                             else BILEVEL_RATE)
            self._wait(status, start + duration + watch)
        finally:
            self.driver.stop(bp.Stream.STATUS)
        return _states(status)

    def _wait(self, buffer: SampleBuffer, seconds: float) -> None:
        deadline = time.monotonic() + seconds + STREAM_SLACK_S
        while buffer.count() < seconds * STATUS_RATE:
            if time.monotonic() > deadline:
                raise BenchTimeoutError(f"the controller on {self.driver.url} sent "
                                        f"{buffer.count() / STATUS_RATE:.1f} s of status "
                                        f"samples; {seconds:.1f} s were asked for")
            time.sleep(0.02)


def _states(buffer: SampleBuffer) -> list[str]:
    decoder = StatusDecoder(STATUS_RATE)
    decoder.feed(buffer.all())
    return [r.state for r in decoder.readings]


@pytest.fixture
def bench_port(pytestconfig: pytest.Config) -> Iterator[str]:
    """A bench controller to open (``--impfactory-bench``, else an emulated one on a pty)."""
    real = bench_spec(pytestconfig)
    if real:
        yield real
        return
    # imported here so that loading the plugin costs other test runs nothing
    from impfactory.clock import ScaledClock
    from impfactory.firmware.bench_target import EmulatedImpBench
    from impfactory.hw.bench_emulated import ControllerThread, EmulatedBenchController

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


@pytest.fixture
def bench(bench_port: str) -> Iterator[Bench]:
    """``bench_port`` opened and identified, as a ``Bench``; closed after the test."""
    with BenchDriver.open(bench_port) as driver:
        yield Bench(driver)
