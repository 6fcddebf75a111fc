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
from impfactory.firmware.bench_target import EmulatedImpBench
from impfactory.firmware.identity import DeviceIdentity
from impfactory.fixture.dut_bench import BenchDutError, BenchDuts
from impfactory.fixture.line import Line, LineConfig, LineResult
from impfactory.hw.bench import BenchDriver
from impfactory.hw.bench_emulated import ControllerThread, EmulatedBenchController
from impfactory.tools.line_setup import FactoryCloud, factory_cloud

from impfactory.clock import ScaledClock

#: Both lines run ten times faster than the wall, as ``bench run`` does by default.
SCALE = 10.0
BENCH_SERIAL = 0x0B0000


@contextlib.contextmanager
def benches(count: int, cloud: FactoryCloud, broker_url: str,
            password: str | None = None) -> Iterator[list[BenchDriver]]:
    """``count`` emulated benches, each an emulated imp that can join the cloud's WiFi
    (with ``password``, when given, as the access point's key), opened by their ptys."""
    with contextlib.ExitStack() as stack:
        drivers = []
        for k in range(count):
            clock = ScaledClock(SCALE)
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
    config = LineConfig(fixtures=1, duts=duts, seed=11, clock_scale=SCALE,
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
