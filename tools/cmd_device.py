"""``impfactory device life``: one DUT's whole life, told by its events and status LED.

Starts a broker and the cloud on loopback (or uses ``--broker mqtt://H:P``), a
Test Zone running the example factory and application firmware, one emulated
fixture and one DUT; presses the fixture's footswitch, shines the BlinkUp through
the optical channel into the DUT, and follows the DUT until it runs the
application (or until its failure shows). ``--fault`` injects one failure, each a
case of the factory troubleshooting guide (docs/guide.md): ``bad_blinkup`` (a
corrupted flash), ``misplaced`` (the DUT 10 mm off the emitter's axis),
``wrong_password`` and ``no_dhcp`` (a network the BlinkUp does not fit),
``test_fail`` (an open jig loopback), ``code_error`` (a callback that throws),
``no_bless`` (DUT firmware without ``server.bless()``), ``already_blessed`` (a
blessed DUT on the line again); ``--png`` draws the DUT's LED timeline.

``impfactory device blinkup CAPTURE``: power on one emulated imp (no network, a
virtual clock), let its light sensor see a capture file (``.wav`` or ``.csv``, as
``impfactory blinkup encode -o`` writes them or a real sensor recorded), and print
what it stored and what its LED showed. Exit 1 when the device rejected it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from impfactory.clock import Clock, ScaledClock, VirtualClock
from impfactory.cloud.broker import BrokerServer
from impfactory.cloud.server import Cloud
from impfactory.devicecode import is_python_code
from impfactory.firmware import examples
from impfactory.firmware.device import Device
from impfactory.firmware.errors import DeviceError
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID, Fleet
from impfactory.firmware.lightpath import shine
from impfactory.firmware.signals import FixtureFlash
from impfactory.firmware.wifi import AccessPoint, WifiEnvironment
from impfactory.fixture.dut import MISPLACED_OFFSET_MM
from impfactory.hw.optical import OpticalChannel, OpticalConfig
from impfactory.protocol.blinkup import BlinkUpConfig
from impfactory.protocol.statusled import LedState
from impfactory.tools.cmd_blinkup import without_passwords
from impfactory.tools.emulated_zone import build_test_zone, start_fixture
from impfactory.tools.firmware_input import (
    add_firmware_options,
    apply_lib_dirs,
    read_agent,
    read_firmware,
)

# Fault names are spelled as ``line run --fault`` spells them (underscores); the
# hyphenated spelling (``test-fail``) is accepted too (``fault_name``). Each one is a
# case of the troubleshooting section of docs/guide.md.
FAULTS = ("none", "bad_blinkup", "misplaced", "wrong_password", "no_dhcp", "test_fail",
          "code_error", "no_bless", "already_blessed")
# What ends the life for each fault (the DUT would otherwise keep retrying).
END = {"none": DeviceEvent.CODE_STARTED, "bad_blinkup": DeviceEvent.BLINKUP_FAILED,
       "misplaced": DeviceEvent.BLINKUP_WINDOW_CLOSED,
       "wrong_password": DeviceEvent.CONNECT_FAILED, "test_fail": DeviceEvent.TEST_FAILED,
       "no_dhcp": DeviceEvent.CONNECT_FAILED, "code_error": DeviceEvent.CODE_ERROR,
       "no_bless": DeviceEvent.TESTING, "already_blessed": DeviceEvent.CODE_STARTED}
# code_error: the DUT firmware as deployed, plus a timer whose callback raises.
RAISING_TIMER = ('\nimp.wakeup(0, function() { local t = {}; return t["no such key"]; });\n')
# no_bless: every ``server.bless(`` of the DUT firmware calls a function that does nothing
# instead, as if the call had been left out (commented out, behind a flag never set).
BLESS_CALL = re.compile(r"\bserver\s*\.\s*bless\s*\(")
NO_BLESS = {"squirrel": "(function(...) {})(", "python": "(lambda *a, **k: None)("}
#: Device seconds the DUT is watched once its firmware runs without ``server.bless()``:
#: the example firmware's tests take well under one.
NO_VERDICT_WATCH_S = 30.0
#: Device seconds between the first life's end and the second BlinkUp of an
#: ``already_blessed`` DUT: past the example fixture firmware's 10 s re-trigger guard.
RETRIGGER_WAIT_S = 11.0


class DeviceCommandError(DeviceError):
    """A ``device`` option the command cannot use (exit status 2)."""


class DeviceLifeFailed(DeviceError):
    """The DUT's life did not reach the expected end in time (a failed run: exit 1)."""

    exit_code = 1


def fault_name(text: str) -> str:
    """A ``--fault`` value in its one spelling: ``test-fail`` and ``test_fail`` alike."""
    return text.strip().lower().replace("-", "_")


def dut_code(factory: str, fault: str) -> str:
    """The DUT group's code for ``fault``: the factory firmware, broken as the fault says."""
    if fault == "code_error":
        return factory + RAISING_TIMER
    if fault == "no_bless":
        return BLESS_CALL.sub(NO_BLESS["python" if is_python_code(factory) else "squirrel"],
                              factory)
    return factory


async def life(url: str, fault: str, scale: float, impos: str | None,
               timeout: float, firmware: str | None = None, app: str | None = None,
               agent: str | None = None) -> tuple[Device, list[str]]:
    """One fixture and one DUT through the cloud; ``firmware``, ``app`` and ``agent`` are
    the user's factory, application and factory agent code (the examples when
    ``firmware`` is ``None``; no agent with the user's firmware unless given). Returns
    the DUT and what the cloud logged about it (its status lines, as ``impt log get``
    shows)."""
    with tempfile.TemporaryDirectory() as tmp:
        async with Cloud(Path(tmp) / "cloud.db", url) as cloud:
            factory = firmware or examples.factory_source(FACTORY_SSID, FACTORY_PASSWORD)
            if firmware is None and agent is None:
                agent = examples.factory_agent_source()
            dut = dut_code(factory, fault)
            zone = build_test_zone(cloud.service, min_impos=impos, dut_code=dut,
                                   fixture_code=factory, app_code=app)
            if agent:  # the factory builds again, each with its agent
                cloud.service.create_deployment(zone.fixture_group, factory, agent)
                cloud.service.create_deployment(zone.dut_group, dut, agent)
            async with Fleet(url, ScaledClock(scale)) as fleet:
                try:
                    fixture = await start_fixture(cloud.service, zone, fleet, timeout)
                except TimeoutError as err:
                    raise DeviceLifeFailed(
                        f"the fixture did not enrol and start its firmware within {timeout} s"
                    ) from err
                device = fleet.add(hardware=examples.dut_board(loopback=fault != "test_fail"),
                                   env=_dut_network(fault), imp_type=examples.DUT_IMP)
                station = _Station(fixture, device, fleet.clock, timeout)
                if fault == "already_blessed":  # its first life: blessed, then switched off
                    await station.blinkup("none")
                    await device.power_off()
                    await fleet.clock.sleep(RETRIGGER_WAIT_S)
                await station.blinkup(fault)
                await fleet.clock.sleep(2.0)
            said = [e.msg for e in cloud.service.device_logs(device.device_id, size=1000)
                    if e.type == "status"]
            return device, said


def _dut_network(fault: str) -> WifiEnvironment | None:
    """The network in front of the DUT: the factory's, or one the BlinkUp does not fit."""
    if fault not in ("wrong_password", "no_dhcp"):
        return None
    return WifiEnvironment([AccessPoint(
        FACTORY_SSID, "other-password" if fault == "wrong_password" else FACTORY_PASSWORD,
        dhcp=fault != "no_dhcp")])


class _Station:
    """The fixture with one DUT in front of it: each ``blinkup`` is one placement."""

    def __init__(self, fixture: Device, dut: Device, clock: Clock, timeout: float) -> None:
        self.fixture, self.dut, self.clock, self.timeout = fixture, dut, clock, timeout
        self.fault = "none"
        fixture.on_flash(self._flashed)

    def _flashed(self, flash: FixtureFlash) -> None:
        if self.fault == "bad_blinkup":
            symbols = flash.light_symbols.copy()
            symbols[400:404] = 1.0 - symbols[400:404]
            flash = FixtureFlash(**{**flash.__dict__, "light_symbols": symbols})
        offset = MISPLACED_OFFSET_MM if self.fault == "misplaced" else 0.0
        channel = OpticalChannel(OpticalConfig(offset_mm=offset), rng=1)
        asyncio.get_running_loop().create_task(shine(flash, self.dut, channel, self.clock))

    async def blinkup(self, fault: str) -> None:
        """Power the DUT, press the footswitch, shine the flash; follow to the fault's end."""
        dut, self.fault = self.dut, fault
        since = len(dut.events)
        dut.power_on()
        await self.clock.sleep(1.0)
        self.fixture.press("footswitch")
        want = END[fault]
        try:
            if fault == "already_blessed":  # the code it runs after the new BlinkUp
                ok = await dut.wait_for(DeviceEvent.BLINKUP_OK, self.timeout, since=since)
                since = dut.events.index(ok)
            await dut.wait_for(want, self.timeout, since=since)
            while fault == "none" and not dut.blessed:
                await dut.wait_for(want, self.timeout)  # the DUT firmware; then the app
            if want is DeviceEvent.CONNECT_FAILED:
                await self._fails_in_sight()
        except TimeoutError as err:
            raise DeviceLifeFailed(f"the DUT never reached {want.value}") from err
        if fault == "no_bless":
            await self.clock.sleep(NO_VERDICT_WATCH_S)

    async def _fails_in_sight(self) -> None:
        """Follow the DUT until a connection attempt fails with its LED no longer
        holding the BlinkUp's green: the red stages that attempt showed are what the
        operator reads (the guide's "three seconds of solid green, then red"). The
        first attempt fails inside those three seconds, its stages held back by the
        green; waiting for the next failure, not for a time, keeps the stages on the
        timeline however late a loaded machine serves the device's timers."""
        dut = self.dut
        while dut.led.state is LedState.BLINKUP_OK:
            await dut.wait_for(DeviceEvent.CONNECT_FAILED, self.timeout, since=len(dut.events))


def _check_png(path: Path) -> None:
    """Refuse a ``--png`` that could not be drawn before the life runs, not after."""
    if not path.resolve().parent.is_dir():
        raise DeviceCommandError(f"--png: no directory for {path}")
    if path.is_dir():
        raise DeviceCommandError(f"--png: {path} is a directory")
    try:
        import matplotlib  # noqa: F401 - only to know it is there
    except ImportError:
        raise DeviceCommandError("--png needs matplotlib: pip install 'impfactory[plot]'"
                                 ) from None


def summary(dut: Device, cloud_log: list[str] | None = None) -> dict[str, Any]:
    return {
        "device_id": dut.device_id,
        "events": [{"t": round(r.time, 3), "event": r.kind.value,
                    **({"detail": _plain(r.detail)} if r.detail is not None else {})}
                   for r in dut.events if r.kind is not DeviceEvent.LOG],
        "led": [{"t": round(t, 3), "state": s.value} for t, s in dut.led.timeline],
        "logs": dut.logs,
        "cloud_log": cloud_log or [],
        "blessed": dut.blessed,
    }


def _plain(detail: Any) -> Any:
    if isinstance(detail, (str, int, float, bool)):
        return detail
    if isinstance(detail, BlinkUpConfig):  # what the DUT took in, without the WiFi key
        return without_passwords(detail.to_json())
    if isinstance(detail, tuple) and len(detail) == 2 and isinstance(detail[0], str):
        return {"name": detail[0], "data": detail[1]}
    return str(detail)[:200]


def _cmd_life(args: argparse.Namespace) -> int:
    if not args.scale > 0:
        raise DeviceCommandError("--scale must be positive")
    if not args.timeout > 0:
        raise DeviceCommandError("--timeout must be positive")
    if args.png:
        _check_png(Path(args.png))
    apply_lib_dirs(args.lib)
    firmware = read_firmware(args.firmware, "--firmware")
    app = read_firmware(args.app, "--app")
    agent = read_agent(args.agent, "--agent")
    if args.fault == "code_error" and firmware is not None and is_python_code(firmware):
        raise DeviceCommandError("--fault code_error adds a Squirrel timer: give a .nut "
                                 "--firmware (or none)")
    with BrokerServer(args.broker) as url:
        dut, said = asyncio.run(life(url, args.fault, args.scale, args.impos, args.timeout,
                                     firmware, app, agent))
    if args.png:
        dut.led.render_png(args.png, title=f"DUT {dut.device_id} ({args.fault})")
    out = summary(dut, said)
    if args.json:
        print(json.dumps(out))
    else:
        for e in out["events"]:
            detail = f"  {e['detail']}" if "detail" in e else ""
            print(f"{e['t']:9.3f}  {e['event']}{detail}"[:160])
        print("LED: " + " > ".join(s.value for s in dut.led.states()))
        for line in said:
            print(f"cloud: {line}"[:160])
        if args.png:
            print(f"LED timeline drawn in {args.png}")
    return 0


async def blinkup_capture(path: Path, trilevel: bool) -> Device:
    """One unconfigured imp sees the capture 1 s after power-on, in sensor-sized chunks."""
    from impfactory.firmware.device import DeviceConfig
    from impfactory.firmware.identity import DeviceIdentity
    from impfactory.firmware.settings import MemoryStore
    from impfactory.tools.cmd_blinkup import read_capture

    signal, _ = read_capture(path)
    clock = VirtualClock()
    # the receiver locks to any symbol rate (60 Hz, BLINKUP_FAST's 142 Hz, ...)
    config = DeviceConfig(blinkup_line_codes=("bilevel", "trilevel") if trilevel
                          else ("bilevel",))
    dut = Device(DeviceIdentity.from_serial(1), clock, WifiEnvironment(), "mqtt://127.0.0.1:1",
                 store=MemoryStore(), config=config)
    dut.power_on()
    await clock.advance(1.0)
    step = max(1, round(signal.sample_rate / 100))  # 10 ms of samples at a time
    for i in range(0, len(signal.samples), step):
        dut.feed_light(signal.samples[i:i + step], signal.sample_rate)
        await clock.advance(step / signal.sample_rate)
    dut.end_light()  # the capture's last sample: decode what the receiver still holds
    await clock.advance(5.0)  # the 3 s green and the first connection stage
    await dut.power_off()
    return dut


def _cmd_blinkup(args: argparse.Namespace) -> int:
    path = Path(args.capture)
    if not path.is_file():
        raise DeviceCommandError(f"no capture file {path}")
    dut = asyncio.run(blinkup_capture(path, args.trilevel))
    kinds = [r.kind for r in dut.events]
    s = dut.settings
    errors = [str(r.detail) for r in dut.events if r.kind is DeviceEvent.BLINKUP_FAILED]
    out: dict[str, Any] = {
        "accepted": DeviceEvent.BLINKUP_OK in kinds,
        "heard": DeviceEvent.BLINKUP_STARTED in kinds,
        "errors": errors,
        "stored": {"ssid": s.ssid, "password_set": bool(s.password), "plan_id": s.plan_id,
                   "enrol_token_set": bool(s.enrol_token), "static_network": s.static_network,
                   "proxy": None if s.proxy is None else {
                       k: v for k, v in s.proxy.items() if k != "password"}},
        "led": [s.value for s in dut.led.states()],
    }
    if args.json:
        print(json.dumps(out))
    else:
        verdict = ("accepted" if out["accepted"] else
                   "rejected: " + "; ".join(errors) if errors else "no BlinkUp heard")
        print(f"BlinkUp {verdict}")
        for key, value in out["stored"].items():
            print(f"  {key:>16}: {value}")
        print("LED: " + " > ".join(out["led"]))
    return 0 if out["accepted"] else 1


def register(sub: Any) -> None:
    parser = sub.add_parser("device", help="emulated imp: follow one DUT's life",
                            description="The emulated imp (docs/device.md).")
    dsub = parser.add_subparsers(dest="device_command", metavar="ACTION")
    p = dsub.add_parser("life", help="one fixture + one DUT through the real cloud",
                        description=__doc__.split("\n\n")[1].replace("``", ""))
    p.add_argument("--fault", type=fault_name, choices=FAULTS, default="none",
                   help="inject one failure (default: none, the DUT is blessed); "
                        "test-fail is accepted for test_fail, and so on")
    p.add_argument("--broker", default="auto", help="auto, mosquitto, embedded or mqtt://H:P")
    p.add_argument("--scale", type=float, default=100.0, help="device clock scale")
    p.add_argument("--impos", default="44.0.1", help="impOS the DUT group requires ('': none)")
    p.add_argument("--timeout", type=float, default=60.0, help="wall seconds per stage")
    p.add_argument("--png", help="draw the DUT's LED timeline to this PNG")
    add_firmware_options(p)
    p.add_argument("--json", action="store_true",
                   help="print events, LED timeline and logs as one JSON object")
    p.set_defaults(func=_cmd_life)
    b = dsub.add_parser("blinkup", help="an emulated imp sees a BlinkUp capture file",
                        description=__doc__.split("\n\n")[2].replace("``", ""))
    b.add_argument("capture", help=".wav or .csv light samples with their sample rate")
    b.add_argument("--trilevel", action="store_true",
                   help="also decode a phone screen's tri-level code")
    b.add_argument("--json", action="store_true", help="one JSON object")
    b.set_defaults(func=_cmd_blinkup)
    parser.set_defaults(func=lambda a: (parser.print_help(), 2)[1])
