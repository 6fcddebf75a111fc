"""``impfactory floor``: an emulated factory floor a user drives from outside.

    impfactory floor --cloud http://127.0.0.1:8080/v5 --broker mqtt://127.0.0.1:1883 \\
        --user owner --password secret [--devices 2] [--fixtures 1] [--duts 10] \\
        [--assign MyFixtureDG] [--press-every 5] [--scale 50] [--timeout 600] [--json]

It keeps emulated imps online against a running cloud, the way a factory floor
looks from impCentral:

* ``--devices`` + ``--fixtures`` new imps are BlinkUp'd into the account with its
  developer plan ID (``POST /enrolment_tokens``, which a ``blinkup_device``
  collaborator may call too), so they appear unassigned in ``GET /devices`` and
  ``impt device list``;
* the fixtures are ordinary imps until the user assigns them to a (pre-)factory
  fixture group (``impt device assign``), whose deployment makes them fixtures;
  ``--assign GROUP`` has the floor do that itself, over the same API call;
* a feeder places a fresh DUT before each ready fixture, the fixture presses its
  button every ``--press-every`` seconds of the floor's clock (or when ``press``
  is typed on stdin; ``0`` means only then), and its light reaches the DUT through
  the optical channel; each DUT's outcome is printed as it happens.

It ends when every one of the ``--duts`` DUTs has an outcome (however many fixtures
share them), after ``--timeout`` wall seconds, on ``quit`` or on Ctrl-C, with a
summary: one entry per DUT placed, a DUT still under test when the floor stops
being ``unfinished`` (exit 0 only when every placed DUT was blessed).
Only the HTTP API and the MQTT broker connect it to the cloud.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from impfactory.brokerurl import BrokerUrlError, parse_url
from impfactory.clock import ScaledClock
from impfactory.cloud.api_client import ApiClient, check_endpoint
from impfactory.errors import ImpFactoryError
from impfactory.firmware import examples
from impfactory.firmware.device import FIXTURE_GROUP_TYPES, Device
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID, Fleet
from impfactory.firmware.lightpath import shine
from impfactory.firmware.settings import MemoryStore, Settings
from impfactory.firmware.signals import FixtureFlash
from impfactory.hw.optical import OpticalChannel, OpticalConfig
from impfactory.tools.firmware_input import add_lib_option, apply_lib_dirs

OUTCOMES = (DeviceEvent.BLESSED, DeviceEvent.TEST_FAILED, DeviceEvent.BLESS_REFUSED,
            DeviceEvent.BLINKUP_FAILED, DeviceEvent.CODE_ERROR)
ENROL_WAIT = 30.0
"""Wall seconds for a new imp to come online and enrol."""
DUT_WAIT = 60.0
"""Wall seconds for a DUT's whole life (BlinkUp, impOS, tests, blessing)."""
SERIALS = 1 << 24
"""Emulated imps' serial numbers (their MACs) are below this."""
PRESSES = 5
HEAR_S = 15.0
"""Floor-clock seconds a DUT may take to start hearing a BlinkUp before another press."""


class FloorError(ImpFactoryError, RuntimeError):
    """The floor could not come up (no cloud, no broker, refused enrolment)."""


@dataclass
class Station:
    """One fixture and the DUT placed before it."""

    fixture: Device
    dut: Device | None = None
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Floor:
    """The running floor's parts and counters."""

    fleet: Fleet
    channel: OpticalChannel
    imps: list[Device]
    stations: list[Station]
    duts_left: int
    say: Any
    target: int = 0
    """How many DUT outcomes end the floor (``--duts``)."""
    press_now: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


async def _enrol_new_imp(floor_fleet: Fleet, client: ApiClient) -> Device:
    token = (await asyncio.to_thread(client.call, "POST", "/enrolment_tokens"))["data"]
    attrs = token["attributes"]
    dev = floor_fleet.add(store=MemoryStore(Settings(
        ssid=FACTORY_SSID, password=FACTORY_PASSWORD, plan_id=attrs["plan_id"],
        enrol_token=attrs["token"])),
        hardware=examples.fixture_board(), imp_type=examples.FIXTURE_IMP)
    dev.power_on()
    try:
        await dev.wait_for(DeviceEvent.ENROLLED, ENROL_WAIT, since=0)
    except TimeoutError as err:
        raise FloorError(f"imp {dev.device_id} did not enrol within {ENROL_WAIT:.0f} s: is "
                         "the broker the cloud's?") from err
    return dev


async def _station(floor: Floor, st: Station, press_every: float) -> None:
    """Feed DUTs to one fixture until the floor has placed them all."""
    def flashed(flash: FixtureFlash) -> None:
        if st.dut is not None:
            asyncio.get_running_loop().create_task(
                shine(flash, st.dut, floor.channel, floor.fleet.clock))

    st.fixture.on_flash(flashed)
    announced = False
    while floor.duts_left > 0:
        if st.fixture.group_type not in FIXTURE_GROUP_TYPES:
            await asyncio.sleep(0.1)
            continue
        if not announced:
            if not _runs_code_since_assignment(st.fixture):
                await asyncio.sleep(0.1)
                continue
            floor.say(f"fixture {st.fixture.device_id} runs its fixture firmware: feeding DUTs")
            announced = True
        floor.duts_left -= 1
        dut = floor.fleet.add(hardware=examples.dut_board(), imp_type=examples.DUT_IMP)
        st.dut = dut
        dut.power_on()
        floor.say(f"DUT {dut.device_id} placed before fixture {st.fixture.device_id}")
        await _press_when_due(floor, press_every)
        start = len(st.fixture.events)
        await _press_until_heard(st.fixture, dut, floor.fleet.clock)
        outcome = await _outcome(dut)
        refused = any(r.kind is DeviceEvent.FACTORY_REFUSED for r in st.fixture.events[start:])
        result = {"dut": dut.device_id, "fixture": st.fixture.device_id,
                  "outcome": "factory_refused" if refused and outcome == "timeout" else outcome}
        st.results.append(result)
        floor.say(f"DUT {dut.device_id}: {result['outcome']}")
        st.dut = None
        if _reported(floor) >= floor.target:
            floor.done.set()


def _reported(floor: Floor) -> int:
    """DUT outcomes so far, over every station."""
    return sum(len(st.results) for st in floor.stations)


def _close_unfinished(floor: Floor) -> None:
    """A DUT still before its fixture when the floor stops is reported, not dropped."""
    for st in floor.stations:
        if st.dut is not None:
            st.results.append({"dut": st.dut.device_id, "fixture": st.fixture.device_id,
                               "outcome": "unfinished"})
            floor.say(f"DUT {st.dut.device_id}: unfinished (the floor stopped)")
            st.dut = None


def _runs_code_since_assignment(fixture: Device) -> bool:
    """Whether the fixture started code after its latest assignment (its fixture firmware)."""
    kinds = [r.kind for r in fixture.events]
    if DeviceEvent.ASSIGNED not in kinds:
        return False
    last = len(kinds) - 1 - kinds[::-1].index(DeviceEvent.ASSIGNED)
    return DeviceEvent.CODE_STARTED in kinds[last:]


async def _press_until_heard(fixture: Device, dut: Device, clock: Any) -> None:
    """Press the button; press again (past the firmware's re-trigger guard) while the
    DUT hears no BlinkUp, as an operator would."""
    scale = float(getattr(clock, "scale", 1.0))
    for _ in range(PRESSES):
        fixture.press("footswitch")
        with contextlib.suppress(TimeoutError):
            await dut.wait_for(DeviceEvent.BLINKUP_STARTED, max(2.0, HEAR_S / scale), since=0)
            return


async def _press_when_due(floor: Floor, press_every: float) -> None:
    if press_every > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(floor.press_now.wait(),
                                   press_every / getattr(floor.fleet.clock, "scale", 1.0))
    else:
        await floor.press_now.wait()
    floor.press_now.clear()


async def _outcome(dut: Device) -> str:
    waits = [asyncio.ensure_future(dut.wait_for(kind, DUT_WAIT, since=0)) for kind in OUTCOMES]
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in done:
        if task.exception() is None:
            return str(task.result().kind.value)
    return "timeout"


def _read_commands(loop: asyncio.AbstractEventLoop, floor: Floor) -> None:
    """stdin: ``press`` presses every fixture's button now; ``quit`` ends the floor."""
    for line in sys.stdin:
        word = line.strip().lower()
        if word == "press":
            loop.call_soon_threadsafe(floor.press_now.set)
        elif word in ("quit", "exit"):
            loop.call_soon_threadsafe(floor.done.set)
            return
        elif word:
            print(f"unknown command {word!r}: type press or quit", file=sys.stderr, flush=True)


async def run_floor(args: argparse.Namespace, say: Any = print) -> dict[str, Any]:
    """Bring the floor up, run it until done, and return the summary."""
    client = ApiClient(args.cloud)
    await asyncio.to_thread(client.login, args.user, args.password)
    group = None
    if args.assign:  # looked up first: a wrong name is refused before any imp exists
        group = await asyncio.to_thread(client.find_group, args.assign)
        if group["type"] not in FIXTURE_GROUP_TYPES:
            raise FloorError(f"--assign {args.assign}: a {group['type']}, not a (pre-)factory "
                             "fixture group")
    fleet = Fleet(args.broker, ScaledClock(args.scale), first_serial=args.first_serial)
    floor = Floor(fleet, OpticalChannel(OpticalConfig(noise_rms=0.01), rng=1), [], [],
                  args.duts, say, target=args.duts)
    try:
        for i in range(args.devices + args.fixtures):
            dev = await _enrol_new_imp(fleet, client)
            floor.imps.append(dev)
            role = "fixture" if i >= args.devices else "imp"
            if group is None or role != "fixture":
                say(f"{role} {dev.device_id} (mac {dev.mac}) online and unassigned: assign "
                    f"it with `impt device assign --device {dev.device_id} --dg ...`")
            else:
                say(f"{role} {dev.device_id} (mac {dev.mac}) online")
            if role == "fixture":
                floor.stations.append(Station(dev))
        if group is not None and floor.stations:
            body = {"data": [{"type": "device", "id": st.fixture.device_id}
                             for st in floor.stations]}
            await asyncio.to_thread(client.call, "POST",
                                    f"/devicegroups/{group['id']}/relationships/devices", body)
            say(f"assigned {len(floor.stations)} fixture(s) to {group['attributes']['name']}")
        if args.commands:
            threading.Thread(target=_read_commands, args=(asyncio.get_running_loop(), floor),
                             daemon=True).start()
        tasks = [asyncio.ensure_future(_station(floor, st, args.press_every))
                 for st in floor.stations]
        if tasks:
            if floor.target == 0:
                floor.done.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(floor.done.wait(), args.timeout)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            _close_unfinished(floor)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(floor.done.wait(), args.timeout)
    finally:
        await fleet.close()
    results = [r for st in floor.stations for r in st.results]
    return {"imps": [d.device_id for d in floor.imps],
            "fixtures": [st.fixture.device_id for st in floor.stations],
            "duts": results, "placed": args.duts - floor.duts_left,
            "blessed": sum(r["outcome"] == "blessed" for r in results)}


def _check_broker(url: str) -> None:
    """The broker is ``mqtt://HOST:PORT``; anything else is refused before any connection."""
    try:
        parse_url(url)
    except BrokerUrlError as err:
        raise FloorError(f"bad --broker: {err}") from None


def run(args: argparse.Namespace) -> int:
    """The command: run the floor, print the summary."""
    apply_lib_dirs(args.lib)
    if not args.user or not args.password:
        raise FloorError("give --user and --password (an owner or a blinkup_device "
                         "collaborator)")
    for name in ("devices", "fixtures", "duts"):
        if getattr(args, name) < 0:
            raise FloorError(f"--{name} cannot be negative")
    if args.scale <= 0:
        raise FloorError("--scale must be positive")
    if args.press_every < 0:
        raise FloorError("--press-every cannot be negative (0: press only on command)")
    if args.timeout <= 0:
        raise FloorError("--timeout must be positive")
    check_endpoint(args.cloud)
    _check_broker(args.broker)
    if args.first_serial is None:
        args.first_serial = secrets.randbelow(SERIALS - 100_000)
    elif not 0 <= args.first_serial <= SERIALS - 1 - args.devices - args.fixtures - args.duts:
        raise FloorError(f"--first-serial must leave room below {SERIALS} for every imp")
    say = (lambda *_: None) if args.json else (lambda text: print(text, flush=True))
    try:
        summary = asyncio.run(run_floor(args, say))
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['blessed']} of {len(summary['duts'])} DUTs blessed")
    return 0 if all(r["outcome"] == "blessed" for r in summary["duts"]) else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``impfactory floor``."""
    p = subparsers.add_parser("floor", help="keep emulated imps, fixtures and DUTs online "
                              "against a running cloud", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cloud", required=True, help="the REST API, http://HOST:PORT/v5")
    p.add_argument("--broker", required=True, help="the cloud's broker, mqtt://HOST:PORT")
    p.add_argument("--user", help="owner (or blinkup_device collaborator) username")
    p.add_argument("--password")
    p.add_argument("--devices", type=int, default=0, help="plain new imps (default 0)")
    p.add_argument("--fixtures", type=int, default=1, help="imps to become fixtures")
    p.add_argument("--duts", type=int, default=10, help="DUTs to feed in all")
    p.add_argument("--press-every", type=float, default=5.0,
                   help="floor-clock seconds between a DUT's placing and the button press; "
                        "0: only on `press` from stdin")
    p.add_argument("--scale", type=float, default=50.0,
                   help="floor clock speed-up (LED patterns, BlinkUp, impOS install)")
    p.add_argument("--timeout", type=float, default=600.0, help="wall seconds at most")
    p.add_argument("--assign", metavar="GROUP",
                   help="assign the fixtures to this (pre-)factory fixture group (id or name) "
                        "once online, as `impt device assign` would (default: you do)")
    p.add_argument("--no-commands", dest="commands", action="store_false",
                   help="do not read press/quit commands from stdin")
    p.add_argument("--first-serial", type=int, default=None,
                   help="serial number (hence MAC and device ID) of the first imp; random by "
                        "default, so floors run one after another never reuse a device")
    p.add_argument("--json", action="store_true", help="print only the summary, as JSON")
    add_lib_option(p)
    p.set_defaults(func=run)
