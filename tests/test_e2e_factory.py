"""End to end: one fixture, one DUT, the real cloud, over Mosquitto and the embedded broker.

The fixture runs the example factory firmware; its footswitch triggers
``server.factoryblinkup``; the light goes through the optical channel into the
DUT's sensor; the DUT decodes it, connects, enrols, updates its impOS, downloads
its DUT firmware, runs its hardware tests, blesses, lands in the production
group and runs the application firmware. Failure paths: a bad BlinkUp, a wrong
WiFi password, a failed test, bless refused for a blessed device, code that raises.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from impfactory.clock import ScaledClock
from impfactory.cloud.server import Cloud
from impfactory.firmware import examples
from impfactory.firmware.device import Device
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID, Fleet
from impfactory.firmware.led import BLINKUP_GREEN_S, LedState
from impfactory.firmware.lightpath import shine
from impfactory.firmware.signals import FixtureFlash
from impfactory.firmware.wifi import AccessPoint, WifiEnvironment
from impfactory.hw.optical import OpticalChannel, OpticalConfig
from impfactory.tools.emulated_zone import TestZone, build_test_zone, start_fixture

S = LedState
E = DeviceEvent
WAIT = 30.0  # loop seconds; a whole DUT life takes well under one at this clock scale
IMPOS = "44.0.1"


class TimerLog(ScaledClock):
    """A ``ScaledClock`` that remembers each timer it fired: its length, its callback's
    owner, and that owner's ``state`` just before and just after the callback ran.

    On a scaled clock a timer fires late by the wall's jitter times the scale, so on a
    loaded machine a 3 s LED state may be timed at 3.4 s; which timer ended a state,
    and how long that timer was, do not depend on the load.
    """

    def __init__(self, scale: float) -> None:
        super().__init__(scale)
        self.fired: list[tuple[float, Any, Any, Any]] = []

    def call_later(self, seconds: float, callback: Callable[[], Any]) -> Any:
        owner = getattr(callback, "__self__", None)

        def fire() -> None:
            before = getattr(owner, "state", None)
            callback()
            self.fired.append((seconds, owner, before, getattr(owner, "state", None)))

        return super().call_later(seconds, fire)


@dataclass
class Line:
    cloud: Cloud
    fleet: Fleet
    fixture: Device
    zone: TestZone
    flashes: list[FixtureFlash]


async def build_line(url: str, db: Path, *, dut_code: str | None = None,
                     fixture_code: str | None = None,
                     env: WifiEnvironment | None = None) -> Line:
    """A cloud with a Test Zone and a fixture in its fixture group, online and ready."""
    cloud = Cloud(db, url)
    await cloud.start()
    zone = build_test_zone(cloud.service, dut_code=dut_code, fixture_code=fixture_code,
                           min_impos=IMPOS)
    fleet = Fleet(url, TimerLog(100.0), env)
    fixture = await start_fixture(cloud.service, zone, fleet, WAIT)
    return Line(cloud, fleet, fixture, zone, [])


async def until(cond: Callable[[], bool], timeout: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def connect_light(line: Line, dut: Device, corrupt: bool = False) -> None:
    """The fixture's LED pin shines on the DUT's sensor (optionally garbled in flight)."""
    channel = OpticalChannel(OpticalConfig(noise_rms=0.01), rng=7)

    def flashed(flash: FixtureFlash) -> None:
        line.flashes.append(flash)
        if corrupt:
            symbols = flash.light_symbols.copy()
            symbols[400:404] = 1.0 - symbols[400:404]  # a glitch inside the SSID bits
            flash = FixtureFlash(**{**flash.__dict__, "light_symbols": symbols})
        asyncio.get_running_loop().create_task(shine(flash, dut, channel, line.fleet.clock))

    line.fixture.on_flash(flashed)


def blink_dut(line: Line, dut: Device, corrupt: bool = False) -> None:
    """Power the DUT in front of the fixture's LED and press the footswitch."""
    dut.power_on()
    connect_light(line, dut, corrupt=corrupt)
    line.fixture.press("footswitch")


async def run_scenario(url: str, db: Path, body: Callable[[Line], Awaitable[Any]],
                       **kw: Any) -> Any:
    line = await build_line(url, db, **kw)
    try:
        return await body(line)
    finally:
        await line.fleet.close()
        await line.cloud.stop()


def is_subsequence(wanted: list[LedState], seen: list[LedState]) -> bool:
    it = iter(seen)
    return all(any(s is w for s in it) for w in wanted)


def test_fixture_configures_dut_which_is_tested_blessed_and_runs_the_application(
        any_broker_url: str, tmp_path: Path) -> None:
    async def body(line: Line) -> dict[str, Any]:
        heard: list[tuple[str, str, Any]] = []
        line.cloud.service.add_agent_listener(lambda *m: heard.append(m))
        dut = line.fleet.add(hardware=examples.dut_board(temperature=24.0))
        blink_dut(line, dut)
        await dut.wait_for(E.BLESSED, WAIT, since=0)
        await until(lambda: any(m.startswith("application started") for m in dut.logs))
        await until(lambda: any(m[1] == "testresult" for m in heard))
        record = line.cloud.service.get_device(dut.device_id)
        results = [r.detail for r in dut.events if r.kind is E.AGENT_MESSAGE]
        return {"dut": dut, "record": record, "results": results, "heard": heard,
                "zone": line.zone, "timers": line.fleet.clock.fired}

    out = asyncio.run(run_scenario(any_broker_url, tmp_path / "cloud.db", body))
    dut: Device = out["dut"]
    assert out["record"].blessed
    # blessing moves the DUT from the DUT group into the fixture's production target
    assert out["record"].group_id == out["zone"].production_group
    kinds = [r.kind for r in dut.events]
    order = [E.BLINKUP_OK, E.ENROLLED, E.ONLINE, E.IMPOS_UPDATING, E.IMPOS_UPDATED,
             E.TESTING, E.BLESSED, E.CODE_STARTED]
    positions = [kinds.index(k) if k is not E.CODE_STARTED else len(kinds) - 1 - kinds[::-1]
                 .index(k) for k in order]
    assert positions == sorted(positions), kinds
    assert dut.settings.impos_version == IMPOS
    # Blessed DUTs ship unconfigured: the factory firmware cleared WiFi and enrolment.
    assert not dut.store.load().has_network and not dut.store.load().enrolled
    name, result = out["results"][0]
    assert name == "testresult" and result["passed"] and result["blessed"]
    assert {m["name"] for m in result["measurements"]} == {
        "supply_voltage", "sensor_id", "temperature", "humidity", "pin_loopback"}
    # the temperature came from the board's HTS221 through Electric Imp's library
    temperature = next(m for m in result["measurements"] if m["name"] == "temperature")
    assert abs(temperature["value"] - 24.0) < 0.05
    # The result crossed the cloud link: the DUT's agent (a cloud listener) heard it.
    assert (dut.device_id, "testresult", result) in out["heard"]
    # The stages reached during the 3 s green are not shown; the green hands over
    # to the stage current when it ends (connecting, here). After the impOS
    # restart every stage shows.
    documented = [S.WAITING_BLINKUP, S.BLINKUP_RECEIVING, S.BLINKUP_OK, S.CONNECTING, S.ONLINE,
                  S.UPDATING, S.OFF, S.SEARCHING_WIFI, S.JOINING_WIFI, S.GETTING_IP, S.RESOLVING,
                  S.CONNECTING, S.ONLINE, S.BLESSED, S.ONLINE]
    assert is_subsequence(documented, dut.led.states()), dut.led.states()
    # The green shows once and ends when its own 3 s timer fires (not cut short by the
    # impOS update, not held): the timer's length and what its firing did, not the wall.
    assert [s for _, s in dut.led.timeline].count(S.BLINKUP_OK) == 1
    ended = [seconds for seconds, owner, before, after in out["timers"]
             if owner is dut.led and before is S.BLINKUP_OK and after is not S.BLINKUP_OK]
    assert ended == [BLINKUP_GREEN_S], ended


def test_bad_blinkup_leaves_the_dut_unconfigured(any_broker_url: str, tmp_path: Path) -> None:
    async def body(line: Line) -> Device:
        dut = line.fleet.add(hardware=examples.dut_board())
        blink_dut(line, dut, corrupt=True)
        await dut.wait_for(E.BLINKUP_FAILED, WAIT, since=0)
        await line.fleet.clock.sleep(5.0)
        assert dut.led.state is S.BLINKUP_FAILED
        return dut

    dut = asyncio.run(run_scenario(any_broker_url, tmp_path / "cloud.db", body))
    assert not dut.store.load().has_network
    assert E.ONLINE not in [r.kind for r in dut.events]


def test_wrong_wifi_password_keeps_flashing_and_retrying(any_broker_url: str,
                                                         tmp_path: Path) -> None:
    async def body(line: Line) -> Device:
        # The DUT sits on a different radio world where the factory AP wants another key.
        dut_env = WifiEnvironment([AccessPoint(FACTORY_SSID, "changed-password")])
        dut = line.fleet.add(env=dut_env)
        blink_dut(line, dut)
        await dut.wait_for(E.BLINKUP_OK, WAIT, since=0)
        for _ in range(2):
            await dut.wait_for(E.CONNECT_FAILED, WAIT)
        assert dut.led.state is S.JOINING_WIFI
        return dut

    dut = asyncio.run(run_scenario(any_broker_url, tmp_path / "cloud.db", body))
    failures = [r.detail for r in dut.events if r.kind is E.CONNECT_FAILED]
    assert len(failures) >= 2 and set(failures) == {1}  # NO_WIFI
    assert E.ONLINE not in [r.kind for r in dut.events]


def test_failed_hardware_test_shows_solid_red_and_is_not_blessed(any_broker_url: str,
                                                                 tmp_path: Path) -> None:
    async def body(line: Line) -> tuple[Device, Any]:
        dut = line.fleet.add(hardware=examples.dut_board(loopback=False))
        blink_dut(line, dut)
        await dut.wait_for(E.TEST_FAILED, WAIT, since=0)
        await until(lambda: any(r.kind is E.AGENT_MESSAGE for r in dut.events))
        assert dut.led.state is S.TEST_FAILED and dut.led.colour_at(dut.clock.now()) == "red"
        return dut, line.cloud.service.get_device(dut.device_id)

    dut, record = asyncio.run(run_scenario(any_broker_url, tmp_path / "cloud.db", body))
    assert not record.blessed
    result = next(r.detail[1] for r in dut.events if r.kind is E.AGENT_MESSAGE)
    loop = next(m for m in result["measurements"] if m["name"] == "pin_loopback")
    assert loop["value"] == 0 and not loop["passed"]


def test_blessed_device_cannot_be_blessed_again(any_broker_url: str, tmp_path: Path) -> None:
    async def body(line: Line) -> Device:
        dut = line.fleet.add(hardware=examples.dut_board())
        blink_dut(line, dut)
        await dut.wait_for(E.BLESSED, WAIT, since=0)
        await until(lambda: any(m.startswith("application started") for m in dut.logs))
        # The application code tries to bless again: the server refuses.
        assert dut.runtime.engine is not None
        dut.runtime.call(dut.runtime.engine.imp_api["server"].bless, True,
                         lambda ok: dut.log(f"second bless {ok}"))
        await dut.wait_for(E.BLESS_REFUSED, WAIT)
        await until(lambda: "second bless False" in dut.logs)
        assert dut.led.state is S.TEST_FAILED
        return dut

    dut = asyncio.run(run_scenario(any_broker_url, tmp_path / "cloud.db", body))
    refused = [r.detail for r in dut.events if r.kind is E.BLESS_REFUSED]
    assert refused == ["already blessed"]


def test_dut_code_that_raises_is_logged_and_device_stays_online(any_broker_url: str,
                                                               tmp_path: Path) -> None:
    bad = ("# impfactory: python\nserver.log('dut starting')\n"
           "hardware.pin9.configure(ANALOG_IN)\nvalue = 1 / 0\n")

    async def body(line: Line) -> tuple[Device, list[str]]:
        dut = line.fleet.add(hardware=examples.dut_board())
        blink_dut(line, dut)
        await dut.wait_for(E.CODE_ERROR, WAIT, since=0)
        await until(lambda: any("ZeroDivisionError" in e.msg for e in
                                line.cloud.service.device_logs(dut.device_id)))
        logs = [e.msg for e in line.cloud.service.device_logs(dut.device_id)]
        await line.fleet.clock.sleep(2.0)
        assert dut.is_online and dut.led.state is S.ONLINE
        return dut, logs

    _dut, logs = asyncio.run(run_scenario(any_broker_url, tmp_path / "cloud.db", body,
                                         dut_code=bad))
    assert "dut starting" in logs
    assert any("ZeroDivisionError" in m and "(at line 4)" in m for m in logs)


async def blessed_dut(line: Line) -> Device:
    """A DUT taken through the factory until its application runs."""
    dut = line.fleet.add(hardware=examples.dut_board())
    blink_dut(line, dut)
    await dut.wait_for(E.BLESSED, WAIT, since=0)
    await until(lambda: any(m.startswith("application started") for m in dut.logs))
    # Blessing cleared WiFi and enrolment (shipped units start unconfigured); an end
    # user's BlinkUp to the same network gives it WiFi again for the tests below.
    assert not dut.settings.has_network
    dut.set_wifi(FACTORY_SSID, FACTORY_PASSWORD)
    return dut


def test_polite_deployment_lets_the_application_finish_then_runs_new_code(
        any_broker_url: str, tmp_path: Path) -> None:
    new_app = examples.application_source().replace("application started",
                                                    "application v2 started")

    async def body(line: Line) -> Device:
        dut = await blessed_dut(line)
        svc = line.cloud.service
        svc.create_deployment(line.zone.production_group, new_app)
        assert svc.restart_group(line.zone.production_group, conditional=True) == 1
        await until(lambda: any(m.startswith("application v2 started") for m in dut.logs))
        return dut

    dut = asyncio.run(run_scenario(any_broker_url, tmp_path / "cloud.db", body))
    asked = dut.logs.index("shutdown requested (1): finishing up")
    restarted = next(i for i, m in enumerate(dut.logs) if m.startswith("restarting"))
    started = next(i for i, m in enumerate(dut.logs) if m.startswith("application v2"))
    assert asked < restarted < started
    t_asked = next(r.time for r in dut.events
                   if r.kind is E.LOG and r.detail.startswith("shutdown requested"))
    t_restart = next(r.time for r in dut.events
                     if r.kind is E.LOG and r.detail.startswith("restarting"))
    assert t_restart - t_asked >= 1.0  # the handler deferred the restart by 1 s


def test_lost_link_reconnects_and_code_keeps_running(any_broker_url: str,
                                                    tmp_path: Path) -> None:
    async def body(line: Line) -> tuple[Device, bool]:
        dut = await blessed_dut(line)
        mark = len(dut.events)
        assert dut.sever_link()
        await dut.wait_for(E.OFFLINE, WAIT, since=mark)
        assert dut.runtime.engine is not None
        dut.runtime.call(dut.runtime.engine.imp_api["server"].log, "logged while offline")
        await dut.wait_for(E.ONLINE, WAIT, since=mark)
        await until(lambda: any(e.msg == "logged while offline" for e in
                                line.cloud.service.device_logs(dut.device_id)))
        online = line.cloud.service.get_device(dut.device_id).online
        return dut, online

    dut, online = asyncio.run(run_scenario(any_broker_url, tmp_path / "cloud.db", body))
    assert online
    starts = sum(m.startswith("application started") for m in dut.logs)
    assert starts == 1, "; ".join(f"{r.kind.name} {str(r.detail)[:60]}" for r in dut.events)
    states = dut.led.states()
    assert is_subsequence([S.ONLINE, S.SEARCHING_WIFI, S.CONNECTING, S.ONLINE], states)


def test_factoryblinkup_on_a_dut_is_refused_and_code_resumes(any_broker_url: str,
                                                            tmp_path: Path) -> None:
    code = ("# impfactory: python\nserver.factoryblinkup('x', 'y', hardware.pin8, 0)\n"
            "imp.wakeup(0.5, lambda: server.log('resumed'))\n")

    async def body(line: Line) -> Device:
        dut = line.fleet.add(hardware=examples.dut_board())
        blink_dut(line, dut)
        await dut.wait_for(E.FACTORY_REFUSED, WAIT, since=0)
        await until(lambda: "resumed" in dut.logs)
        return dut

    dut = asyncio.run(run_scenario(any_broker_url, tmp_path / "cloud.db", body, dut_code=code))
    assert "ERROR: Factory BlinkUp request failed. This is not a factory imp." in dut.logs
    assert E.BLINKUP_SENT not in [r.kind for r in dut.events]


AGENT_CODE = """# impfactory: python
def on_ping(value):
    agent.send("pong", {"got": value})
agent.on("ping", on_ping)
server.log("agent ready")
"""


def test_agent_messages_cross_the_cloud_both_ways(any_broker_url: str, tmp_path: Path) -> None:
    """agent.send reaches the cloud's agent listeners; send_to_device reaches agent.on."""

    async def body(line: Line) -> tuple[Device, list[tuple[str, str, Any]], bool]:
        svc = line.cloud.service
        heard: list[tuple[str, str, Any]] = []
        svc.add_agent_listener(lambda *m: heard.append(m))
        dut = line.fleet.add(hardware=examples.dut_board())
        blink_dut(line, dut)
        await until(lambda: "agent ready" in dut.logs)
        handed = svc.send_to_device(dut.device_id, "ping", {"n": 1, "tags": ["a", None]})
        await until(lambda: any(m[1] == "pong" for m in heard))
        return dut, heard, handed

    dut, heard, handed = asyncio.run(
        run_scenario(any_broker_url, tmp_path / "cloud.db", body, dut_code=AGENT_CODE))
    assert handed
    assert heard == [(dut.device_id, "pong", {"got": {"n": 1, "tags": ["a", None]}})]


BACK_TO_BACK = """# impfactory: python
def flash():
    server.factoryblinkup("w", "p", hardware.pinM, BLINKUP_FAST)
def over():
    server.log("last flash over")
def last():
    flash()
    imp.wakeup(0.01, over)  # due during this flash too: runs when its light has ended
def pressed():
    if hardware.pinH.read() == 0:
        flash()
        flash()  # the same callback again: the first flash is still going
        imp.wakeup(0.01, last)  # due during the flash: runs as soon as its light ends
hardware.pinH.configure(DIGITAL_IN_PULLUP, pressed)
server.log("fixture ready")
"""


def test_a_flash_is_over_when_its_light_ends(any_broker_url: str, tmp_path: Path) -> None:
    """A call made while a flash is going is ignored; one queued behind it (a timer, a
    press) runs after the light and flashes: the flash ends before the code resumes."""

    async def body(line: Line) -> list[FixtureFlash]:
        line.fixture.on_flash(line.flashes.append)
        line.fixture.press("footswitch")
        # the firmware says when its last call is over: every flash it asked for has
        # been asked for by then (no wall-clock wait to prove there is no third)
        with contextlib.suppress(AssertionError):  # the count is asserted below
            await until(lambda: "last flash over" in line.fixture.logs, 10.0)
        return line.flashes

    line_logs: list[str] = []

    async def run(line: Line) -> list[FixtureFlash]:
        try:
            return await body(line)
        finally:
            line_logs.extend(line.fixture.logs)

    flashes = asyncio.run(run_scenario(any_broker_url, tmp_path / "cloud.db", run,
                                       fixture_code=BACK_TO_BACK))
    assert line_logs.count("factoryblinkup already in progress; ignored") == 1, line_logs
    assert "last flash over" in line_logs
    assert len(flashes) == 2
    assert flashes[1].start >= flashes[0].start + flashes[0].duration


def test_power_cut_mid_flash_does_not_leave_a_flash_in_progress(any_broker_url: str,
                                                                 tmp_path: Path) -> None:
    async def body(line: Line) -> Device:
        fixture = line.fixture
        cut: list[asyncio.Task[None]] = []
        fixture.on_flash(lambda f: cut.append(asyncio.create_task(fixture.power_off()))
                         if not cut else None)
        fixture.press("footswitch")
        await until(lambda: bool(cut))
        await cut[0]
        seen = len(fixture.logs)
        fixture.power_on()
        await until(lambda: "fixture ready" in fixture.logs[seen:])
        fixture.press("footswitch")
        await until(lambda: len([r for r in fixture.events if r.kind is E.BLINKUP_SENT]) == 2,
                    10.0)
        return fixture

    fixture = asyncio.run(run_scenario(any_broker_url, tmp_path / "cloud.db", body))
    assert "factoryblinkup already in progress; ignored" not in fixture.logs
