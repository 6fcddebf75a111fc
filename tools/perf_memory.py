"""``impfactory perf memory``: what one connected, idle emulated imp costs in memory.

Starts a broker (Mosquitto by default) and the real cloud, then ``--devices N``
emulated imps in this process, every one running the demo's factory firmware in its
own Squirrel VM (a thread of the process's shared Squirrel state): each is a
fixture (``examples.fixture_board``, imp005) that enrols with a developer BlinkUp,
is assigned to the Test Fixture group, downloads the example factory firmware and
runs it; it then waits for the footswitch, as a fixture does, on its own MQTT
connection. Devices come up ``--batch`` at a time.

``rss_per_device_kib`` is the growth of this process's resident memory from just
before the first device to when all N are connected, running and idle (after a
garbage collection), over N. The cloud runs in this process too, so its own state
per device (a row of its database cache, the device's link key and session) is
counted against the devices: the figure is an upper bound. ``--json`` prints it and
the rest as one object.

Where it goes, from the C library's allocator (``mallinfo2``, which sees Squirrel
and every Python buffer over 512 bytes, not Python's small objects):
``c_heap_per_device_kib`` is its growth over the same span, over N, and
``squirrel_per_device_kib`` what it gets back when every device's code is then
stopped (its VM closed and the shared state's cycles collected: the VM's thread and
root, the imp API bound into it, and what the firmware made; not the compiled
firmware and standard library, which every device shares), over N. What is left of
the resident figure is Python's small objects (devices, peripherals, MQTT clients,
tasks) and the allocator's slack.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from impfactory.clock import ScaledClock
from impfactory.cloud.broker import BrokerServer
from impfactory.cloud.server import Cloud
from impfactory.firmware import examples
from impfactory.firmware.device import Device
from impfactory.firmware.errors import DeviceError
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID, Fleet
from impfactory.firmware.settings import MemoryStore, Settings
from impfactory.squirrel import shared
from impfactory.squirrel.memory import allocated
from impfactory.tools.cmd_line import quiet_network_logs
from impfactory.tools.emulated_zone import build_test_zone

TIMEOUT = 120.0
PER_DEVICE_S = 0.5
"""Wall seconds one batch may take to enrol, or to start its code: ``TIMEOUT``, or
``PER_DEVICE_S`` a device when that is longer (a loaded machine brings up slowly)."""


class PerfMemoryError(DeviceError):
    """Arguments a run cannot use (no devices, an empty batch, a stopped clock)."""


class PerfMemoryRunFailed(DeviceError, RuntimeError):
    """Devices did not come up in time: no figure is printed (exit 1)."""

    exit_code = 1


FILES_PER_DEVICE = 1
"""Open files a connected device holds in this process (its MQTT socket); the broker
(Mosquitto, started from here) needs as many, and inherits the limit."""
FILES_SPARE = 256
"""Open files for everything else: the cloud, its database, enrolment sessions."""


def raise_file_limit(devices: int) -> int:
    """Raise this process's open-file limit (``ulimit -n``) to what ``devices`` need,
    as far as the hard limit allows; ``PerfMemoryError`` naming both when it is too
    low (rather than devices that fail to connect, one by one, with ``EMFILE``)."""
    need = (devices + 1) * FILES_PER_DEVICE + FILES_SPARE  # + the one brought up first
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        too_low = PerfMemoryError(
            f"--devices {devices} needs about {need} open files (a socket each, and as "
            f"many in the broker), but this process may open at most {hard} (the hard "
            f"limit of ulimit -n): raise it (ulimit -Hn {need}, as root or in "
            f"/etc/security/limits.conf) or ask for fewer devices")
        if hard != resource.RLIM_INFINITY and hard < need:
            raise too_low
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        except (ValueError, OSError) as err:  # over the kernel's fs.nr_open
            raise too_low from err
        soft = need
    return int(soft)


def rss_kib() -> int:
    """This process's resident set now (``VmRSS``), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise PerfMemoryError("no VmRSS in /proc/self/status (not Linux?)")


async def _bring_up(svc: Any, group: str, owner: str, fleet: Fleet,
                    count: int) -> list[Device]:
    """``count`` fixtures enrolled, assigned and running the factory firmware."""
    devices = []
    for _ in range(count):
        token = svc.create_development_token(owner)
        device = fleet.add(store=MemoryStore(Settings(
            ssid=FACTORY_SSID, password=FACTORY_PASSWORD,
            plan_id=token.plan_id, enrol_token=token.token)),
            hardware=examples.fixture_board(), imp_type=examples.FIXTURE_IMP)
        device.power_on()
        devices.append(device)
    await _all(devices, DeviceEvent.ENROLLED, "enrolled")
    svc.assign_devices(group, [d.device_id for d in devices])
    await _all(devices, DeviceEvent.CODE_STARTED, "started the factory firmware")
    return devices


async def _all(devices: list[Device], event: DeviceEvent, what: str) -> None:
    timeout = max(TIMEOUT, PER_DEVICE_S * len(devices))
    results = await asyncio.gather(*(d.wait_for(event, timeout, since=0) for d in devices),
                                   return_exceptions=True)
    late = sum(1 for r in results if isinstance(r, BaseException))
    if late:
        raise PerfMemoryRunFailed(f"{late} of {len(devices)} devices had not {what} within "
                                  f"{timeout:.0f} s")


async def run(cloud_url: str, devices: int, batch: int, scale: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with Cloud(Path(tmp) / "cloud.db", cloud_url) as cloud:
            svc = cloud.service
            zone = build_test_zone(svc)
            async with Fleet(cloud.broker_url, ScaledClock(scale)) as fleet:
                # one device first, so code paths run once are not counted per device
                await _bring_up(svc, zone.fixture_group, zone.owner_id, fleet, 1)
                gc.collect()
                before, heap_before = rss_kib(), allocated() or 0
                started = time.perf_counter()
                up: list[Device] = []
                while len(up) < devices:
                    up += await _bring_up(svc, zone.fixture_group, zone.owner_id, fleet,
                                          min(batch, devices - len(up)))
                wall = time.perf_counter() - started
                await fleet.clock.sleep(1.0)  # idle: each waits for its footswitch
                gc.collect()
                after, heap_after = rss_kib(), allocated() or 0
                running = sum(1 for d in up if d.runtime.running and d.is_connected())
                for device in up:  # the breakdown: what their VMs held
                    device.runtime.stop()
                gc.collect()
                shared.collect_all()  # the cycles their code left in the shared state
                heap_stopped = allocated() or 0
    return {"devices": devices, "running": running, "rss_before_mib": round(before / 1024, 1),
            "rss_after_mib": round(after / 1024, 1),
            "rss_per_device_kib": round((after - before) / devices, 1),
            "c_heap_per_device_kib": round((heap_after - heap_before) / 1024 / devices, 1),
            "squirrel_per_device_kib": round((heap_after - heap_stopped) / 1024 / devices, 1),
            "bring_up_s": round(wall, 1), "clock_scale": scale}


def main(args: argparse.Namespace) -> int:
    if args.devices < 1 or args.batch < 1:
        raise PerfMemoryError("--devices and --batch must be at least 1")
    if not args.scale > 0:
        raise PerfMemoryError("--scale must be positive")
    raise_file_limit(args.devices)  # before the broker starts: it inherits the limit
    quiet_network_logs()
    server = BrokerServer(args.broker)
    with server:
        figures = asyncio.run(run(server.cloud_url, args.devices, args.batch, args.scale))
    figures["broker"] = args.broker
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"perf memory: {figures['running']} of {figures['devices']} emulated imps "
              f"connected and idle on the factory firmware (Squirrel): "
              f"{figures['rss_per_device_kib']} KiB resident each")
        print(f"             {figures['rss_before_mib']} MiB before, "
              f"{figures['rss_after_mib']} MiB after ({figures['bring_up_s']} s to bring "
              f"them up)")
        print(f"             of each: {figures['c_heap_per_device_kib']} KiB C heap, "
              f"{figures['squirrel_per_device_kib']} KiB of it the Squirrel VM with the "
              f"imp API and the firmware")
    return 0 if figures["running"] == figures["devices"] else 1


def register(sub: Any) -> None:
    parser = sub.add_parser("memory", help="resident memory per connected, idle emulated imp",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000, metavar="N",
                        help="emulated imps (default 1000)")
    parser.add_argument("--batch", type=int, default=200, metavar="B",
                        help="devices brought up at a time (default 200)")
    parser.add_argument("--scale", type=float, default=200.0,
                        help="device clock speed-up over the wall (default 200)")
    parser.add_argument("--broker", default="mosquitto", metavar="mosquitto|auto|embedded|URL",
                        help="broker (default mosquitto)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=main)
