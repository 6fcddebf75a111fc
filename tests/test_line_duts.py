"""One line, two kinds of DUT: the same ``Line`` over emulated imps, and over emulated
imps standing on emulated bench controllers reached through ptys.

The bench case is the bench's whole path: the fixture's flash goes out as
LIGHT_OUT frames over the pty, the DUT's LED comes back as colour samples that
``protocol.bench_status`` names, its log lines come back on the UART, and who it
is (and whether it was blessed) comes from the cloud's record of its enrolment
token. Both runs must agree on the outcome and on the reason a DUT failed, which
``fixture.observe.failure_reason`` computes for both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from impfactory.clock import ScaledClock, VirtualClock
from impfactory.firmware.bench_target import EmulatedImpBench
from impfactory.firmware.identity import DeviceIdentity
from impfactory.firmware.signals import render_fixture_flash
from impfactory.fixture.dut_bench import WIFI_LIMIT_S, BenchDut, BenchDutError, BenchDuts
from impfactory.fixture.line import Line, LineConfig, LineResult
from impfactory.hw.bench import BenchDriver, SampleBuffer
from impfactory.hw.bench_emulated import ControllerThread, EmulatedBenchController
from impfactory.protocol import bench as bp
from impfactory.protocol.bench_status import StatusReading
from impfactory.tools.line_setup import FactoryCloud, factory_cloud

#: The emulated line runs ten times faster than the wall, as ``bench run`` does by
#: default; the bench line five times: its LED's blinks are named within 90 ms of bench
#: time, 9 ms of wall time at 10x, and a loaded 2-core machine's scheduling delays
#: misnamed a stage or missed the BlinkUp green (CI failed 2 runs of ~6 so; 4 runs at
#: once failed 4 of 4 at 10x, none at 5x).
SCALE = {"emulated": 10.0, "bench": 5.0}
BENCH_SERIAL = 0x0B0000


@contextlib.contextmanager
def benches(count: int, cloud: FactoryCloud, broker_url: str,
            password: str | None = None) -> Iterator[list[BenchDriver]]:
    """``count`` emulated benches, each an emulated imp that can join the cloud's WiFi
    (with ``password``, when given, as the access point's key), opened by their ptys."""
    with contextlib.ExitStack() as stack:
        drivers = []
        for k in range(count):
            clock = ScaledClock(SCALE["bench"])
            target = EmulatedImpBench.build(
                clock, serial=BENCH_SERIAL + k, server=broker_url,
                wifi=(cloud.wifi_ssid, password or cloud.wifi_password))
            runner = ControllerThread(EmulatedBenchController(target, clock))
            path = stack.enter_context(runner)
            stack.callback(lambda r=runner, t=target: asyncio.run_coroutine_threadsafe(
                t.device.power_off(), r.loop).result(10))
            drivers.append(stack.enter_context(BenchDriver.open(path, timeout=0.5)))
        yield drivers


def run(kind: str, broker_url: str, *, duts: int, wrong_wifi: bool = False) -> LineResult:
    config = LineConfig(fixtures=1, duts=duts, seed=11, clock_scale=SCALE[kind],
                        faults={"wrong_wifi": 1.0} if wrong_wifi and kind == "emulated" else {},
                        dut_timeout_wall=40.0, max_connect_failures=1)

    async def go() -> LineResult:
        async with factory_cloud(broker_url, impos_size=64 * 1024) as cloud:
            line = Line(config, cloud)
            if kind == "emulated":
                return await line.run()
            with benches(duts, cloud, broker_url,
                         cloud.wifi_password + "-changed" if wrong_wifi else None) as drivers:
                line.duts = BenchDuts(drivers, line.clock, lookup=cloud.dut_verdict)
                return await line.run()

    return asyncio.run(go())


@pytest.mark.parametrize("kind", ["emulated", "bench"])
def test_the_same_line_blesses_emulated_and_bench_duts(kind: str, broker_url: str) -> None:
    result = run(kind, broker_url, duts=2)
    s = result.summary
    assert (s.duts, s.blessed, s.failures) == (2, 2, {}), [r.events for r in result.records]
    for r in result.records:
        assert r.failure_reason is None and r.final_state == "blessed"
        stages = [st.name for st in r.stages]
        assert stages[:2] == ["wait", "blinkup"], stages
        assert "green" in [e.colour for e in r.led_timeline]
        # the DUT firmware's log lines: an emulated imp's own, a bench's through its UART
        assert any(line.startswith("factory tests ") for line in r.uart), r.uart
    if kind == "emulated":
        # an emulated imp says how many messages it sent its agent, so the line waits
        # for the agent to hear them all; a bench cannot see them, so a bench DUT's
        # record has what its agent had done when the DUT was done
        assert all(any(e.kind == "from_device" for e in r.agent) for r in result.records)
    else:
        # who each bench DUT is came from the cloud (its enrolment token), not from us
        assert [r.dut_id for r in result.records] == [
            DeviceIdentity.from_serial(BENCH_SERIAL + k).device_id for k in range(2)]


@pytest.mark.parametrize("kind", ["emulated", "bench"])
def test_the_same_line_gives_a_wrong_wifi_key_the_same_reason(kind: str,
                                                               broker_url: str) -> None:
    result = run(kind, broker_url, duts=1, wrong_wifi=True)
    assert result.summary.failures == {"wifi_join_failed": 1}, result.records[0].led_timeline


def test_a_bench_line_refuses_faults_and_more_duts_than_benches(broker_url: str) -> None:
    async def go(config: LineConfig) -> None:
        async with factory_cloud(broker_url, impos_size=64 * 1024) as cloud:
            line = Line(config, cloud)
            line.duts = BenchDuts([], line.clock)
            await line.run()

    for config in (LineConfig(fixtures=1, duts=1),
                   LineConfig(fixtures=1, duts=1, faults={"misplaced": 1.0})):
        with pytest.raises(BenchDutError):
            asyncio.run(go(config))


class ScriptedController:
    """A controller that answers everything and streams nothing: the readings a test
    hands ``BenchDut.saw`` are all its DUT shows."""

    url = "scripted://bench"
    timeout = 5.0  # the stall watch stays quiet while a test runs

    def __init__(self) -> None:
        self.power_log: list[bool] = []

    def identify(self) -> bp.Identity:
        return bp.Identity(bp.PROTOCOL_VERSION, "scripted", "1", bp.Capability.ALL,
                           bp.MAX_PAYLOAD)

    def start_status(self, rate_hz: float) -> SampleBuffer:
        buffer = SampleBuffer(width=3)
        buffer.reset(rate_hz)
        return buffer

    def power(self, on: bool) -> None:
        self.power_log.append(on)

    def light_out(self, symbols: bytes, rate_hz: float, *, active_high: bool = True,
                  wait: bool = True) -> float:
        return len(symbols) / rate_hz

    def stop(self, stream: int) -> None: ...

    def uart_read(self, timeout: float = 0.0) -> bytes:
        return b""


@pytest.mark.parametrize(("names", "kinds"), [
    # a quick cloud: the BlinkUp green and the blessing read as one green
    (["waiting_blinkup", "off", "updating/blessed"], ["blinkup_ok"]),
    (["waiting_blinkup", "off", "blinkup_failed/power_problem"], ["blinkup_failed"]),
    # round the WiFi stages again: that try failed (red between them is not a verdict)
    (["off", "blinkup_ok", "searching_wifi", "joining_wifi", "test_failed/power_problem",
      "joining_wifi"], ["blinkup_ok", "connect_failed"]),
    (["off", "blinkup_ok", "connecting", "online", "test_failed/power_problem"],
     ["blinkup_ok", "online", "test_failed"]),
])
def test_a_bench_dut_tells_what_its_led_showed_as_events(names: list[str],
                                                         kinds: list[str]) -> None:
    flash = render_fixture_flash("w", "k", "0123456789abcdef", "fedcba9876543210", "pin1",
                                 fast=True, active_high=True, start=0.0, device_id="f")
    controller = ScriptedController()
    dut = BenchDut(controller, VirtualClock(), watch_after_s=0.0)  # type: ignore[arg-type]

    async def go() -> None:
        await dut.start()
        await dut.power_off()
        await dut.power_on()
        await dut.shine(flash)
        for t, name in enumerate(names):
            dut.saw(StatusReading(float(t), name, "green"))
        await dut.close()

    asyncio.run(go())
    assert [e.kind.value for e in dut.events] == kinds
    assert dut.led_states() == names and dut.device_id is None
    assert controller.power_log == [False, True, False]  # off, on for the flash, off at the end


def test_a_bench_dut_learns_who_it_is_and_its_verdict_from_the_cloud() -> None:
    dut = BenchDut(ScriptedController(), VirtualClock())  # type: ignore[arg-type]
    answers = iter([(None, None), ("d00d0c2a690b0001", None), ("d00d0c2a690b0001", False)])

    async def lookup(token: str) -> tuple[str | None, bool | None]:
        assert token == "fedcba9876543210"
        return next(answers)

    async def go() -> None:
        for _ in range(3):
            await dut.ask_cloud(lookup, "fedcba9876543210")

    asyncio.run(go())
    assert [e.kind.value for e in dut.events] == ["blinkup_ok", "enrolled", "bless_refused"]
    assert dut.device_id == "d00d0c2a690b0001" and dut.verdict is False


def test_a_bench_dut_stuck_in_one_wifi_stage_has_failed_tries() -> None:
    """An imp failing at one stage keeps showing it through its retries, so no new
    round is ever read: each ``WIFI_LIMIT_S`` in the WiFi stages counts as a failed try,
    and going online ends the count."""
    clock = VirtualClock()
    dut = BenchDut(ScriptedController(), clock, watch_after_s=0.0)  # type: ignore[arg-type]
    flash = render_fixture_flash("w", "k", "0123456789abcdef", "fedcba9876543210", "pin1",
                                 fast=True, active_high=True, start=0.0, device_id="f")

    async def go() -> None:
        await dut.start()
        await dut.shine(flash)
        dut.saw(StatusReading(0.0, "blinkup_ok", "green"))
        dut.saw(StatusReading(1.0, "joining_wifi", "red"))
        for _ in range(2):
            await clock.advance(WIFI_LIMIT_S - 1)
            dut._look()
            await clock.advance(1)
            dut._look()
        dut.saw(StatusReading(2.0, "online", "green"))
        await clock.advance(3 * WIFI_LIMIT_S)
        dut._look()
        await dut.close()

    asyncio.run(go())
    assert [e.kind.value for e in dut.events] == [
        "blinkup_ok", "connect_failed", "connect_failed", "online"]
