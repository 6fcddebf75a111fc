"""The fixture's trigger table, and its serial emitter driving an emulated bench controller."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from bench_targets import DarkBench

from impfactory.clock import ScaledClock, VirtualClock
from impfactory.firmware.signals import render_fixture_flash
from impfactory.fixture.blinkup_fixture import (
    TRIGGER_TABLE,
    BlinkUpFixture,
    FixtureError,
    SerialEmitter,
    Trigger,
    TriggerAction,
    TriggerError,
    TriggerEvent,
    TriggerState,
)
from impfactory.hw import bench as hb
from impfactory.hw.bench_emulated import ControllerThread, EmulatedBenchController
from impfactory.protocol.decoder import BlinkUpDecoder, DecodeResult


def test_trigger_guard_ignores_presses_until_it_ends() -> None:
    clock = VirtualClock()
    trig = Trigger(clock, guard_s=10.0)
    assert trig.handle(TriggerEvent.PRESS) is TriggerAction.REQUEST
    assert trig.handle(TriggerEvent.PRESS) is TriggerAction.IGNORE  # asking for a token
    trig.handle(TriggerEvent.FLASH_STARTED)
    assert trig.handle(TriggerEvent.PRESS) is TriggerAction.IGNORE  # flashing
    clock.advance_sync(6.0)
    trig.handle(TriggerEvent.FLASH_DONE)
    assert trig.state is TriggerState.GUARD and trig.guard_left() == pytest.approx(4.0)
    trig.tick()
    assert trig.handle(TriggerEvent.PRESS) is TriggerAction.IGNORE  # guard still running
    clock.advance_sync(4.0)
    trig.tick()
    assert trig.state is TriggerState.IDLE and trig.ignored == 3
    assert trig.handle(TriggerEvent.PRESS) is TriggerAction.REQUEST


def test_trigger_unknown_event_is_an_error() -> None:
    trig = Trigger(VirtualClock())
    missing = [(s, e) for s in TriggerState for e in TriggerEvent if (s, e) not in TRIGGER_TABLE]
    assert (TriggerState.IDLE, TriggerEvent.FLASH_DONE) in missing
    with pytest.raises(TriggerError):
        trig.handle(TriggerEvent.FLASH_DONE)


class LightTarget(DarkBench):
    """A bench whose DUT sensor is a BlinkUp decoder: keeps what it decodes."""

    def __init__(self) -> None:
        self.decoder = BlinkUpDecoder(1000.0, "bilevel")
        self.results: list[DecodeResult] = []

    def light_to_dut(self, t0: float, levels: np.ndarray, rate_hz: float) -> None:
        self.results += [o for o in self.decoder.feed(0.1 + 0.6 * levels)
                         if isinstance(o, DecodeResult)]



def test_serial_emitter_flashes_through_a_bench_controller() -> None:
    flash = render_fixture_flash("factory-wifi", "secret-key", "0123456789abcdef",
                                 "fedcba9876543210", "pin8", fast=True, active_high=False,
                                 start=0.0, device_id="0000" + "0c2a69000001")
    target = LightTarget()
    with (
        ControllerThread(EmulatedBenchController(target, ScaledClock(20.0))) as path,
        hb.BenchDriver.open(path, timeout=0.5) as driver,
    ):
        asyncio.run(SerialEmitter(driver).emit(flash))
        deadline = time.monotonic() + 5.0  # the controller's sensor ticks may trail the stream
        while not target.results and time.monotonic() < deadline:
            time.sleep(0.05)
    assert target.results, "the bench DUT decoded nothing"
    assert target.results[0].config == flash.config


class ForgetfulFixtureImp:
    """A fixture imp whose firmware ignores its first ``ignore`` presses (as it does a
    press that lands while it still flashes), then flashes for each press."""

    def __init__(self, ignore: int) -> None:
        self.device_id = "f00d0c2a69f00000"
        self.ignore = ignore
        self.presses = 0
        self.logs = ["fixture ready", "ERROR: NameError: name 'SSID' is not defined"]
        self._flash_cbs: list[Any] = []

    def on_flash(self, callback: Any) -> None:
        self._flash_cbs.append(callback)

    def subscribe(self, callback: Any) -> None: ...

    def press(self, pin: str) -> None:
        self.presses += 1
        if self.presses > self.ignore:
            flash = render_fixture_flash("w", "k", "0123456789abcdef", "fedcba9876543210",
                                         pin, fast=False, active_high=True, start=0.0,
                                         device_id=self.device_id)
            for cb in self._flash_cbs:
                asyncio.get_running_loop().call_soon(cb, flash)


class Collect:
    def __init__(self) -> None:
        self.flashes: list[Any] = []

    async def emit(self, flash: Any) -> None:
        self.flashes.append(flash)


@pytest.mark.parametrize(("ignored", "flashed"), [(0, True), (1, True), (2, False)])
def test_an_ignored_press_is_pressed_again_after_the_guard(ignored: int, flashed: bool) -> None:
    imp = ForgetfulFixtureImp(ignore=ignored)
    fixture = BlinkUpFixture(imp, ScaledClock(1000.0), token_timeout=0.2,  # type: ignore[arg-type]
                             presses=2)
    out = Collect()

    async def go() -> None:
        await fixture.blinkup(out)

    if flashed:
        asyncio.run(go())
        assert len(out.flashes) == 1 and fixture.flashes == 1
    else:
        with pytest.raises(FixtureError, match=r"2 presses; its firmware logged .*NameError"):
            asyncio.run(go())
        assert not out.flashes
    assert imp.presses == min(ignored + 1, 2) and fixture.lost_presses == min(ignored, 2)
    assert fixture.trigger.state in (TriggerState.GUARD, TriggerState.IDLE)


class GuardedFixtureImp(ForgetfulFixtureImp):
    """A fixture imp whose code shows whether it took a press (``factory_blinkups``,
    as the emulated ``Device`` counts them): the first ``ignore`` presses land while
    its own re-trigger guard still holds; a taken press flashes ``token_s`` later."""

    def __init__(self, ignore: int, token_s: float = 0.0) -> None:
        super().__init__(ignore)
        self.factory_blinkups = 0
        self.token_s = token_s

    def press(self, pin: str) -> None:
        self.presses += 1
        if self.presses <= self.ignore:
            return
        self.factory_blinkups += 1
        flash = render_fixture_flash("w", "k", "0123456789abcdef", "fedcba9876543210",
                                     pin, fast=False, active_high=True, start=0.0,
                                     device_id=self.device_id)
        for cb in self._flash_cbs:
            asyncio.get_running_loop().call_later(self.token_s, cb, flash)


@pytest.mark.parametrize("ignored", [1, 3])
def test_a_press_the_code_did_not_take_is_pressed_again_at_once(ignored: int) -> None:
    """Not after the 15 s token wait: the operator sees the fixture did not react."""
    imp = GuardedFixtureImp(ignore=ignored)
    fixture = BlinkUpFixture(imp, ScaledClock(200.0), token_timeout=15.0,  # type: ignore[arg-type]
                             presses=2)
    out = Collect()
    started = time.perf_counter()
    asyncio.run(fixture.blinkup(out))
    assert time.perf_counter() - started < 2.0
    assert len(out.flashes) == 1
    assert (imp.presses, fixture.repressed, fixture.lost_presses) == (ignored + 1, ignored, 0)


def test_a_taken_press_waits_for_its_token_and_is_not_pressed_twice() -> None:
    imp = GuardedFixtureImp(ignore=0, token_s=0.4)  # a slow cloud: 80 line-s at 200x
    fixture = BlinkUpFixture(imp, ScaledClock(200.0), token_timeout=15.0,  # type: ignore[arg-type]
                             presses=2)
    out = Collect()
    asyncio.run(fixture.blinkup(out))
    assert len(out.flashes) == 1
    assert (imp.presses, fixture.repressed, fixture.lost_presses) == (1, 0, 0)
