"""``impfactory perf firmware``: an impOS image to many devices at once, against the raw broker.

Starts a broker (Mosquitto by default) and the real cloud, with a Test Zone whose
DUT group requires an impOS release of ``--size`` bytes (1 MiB by default), then
``--devices`` emulated imps (100 by default) that hold what a factory BlinkUp
leaves, all powered on at once. Each connects, enrols, is offered the release and
fetches it block by block (``firmware/images.py``: ``cl.DEFAULT_CHUNK_SIZE`` blocks,
each checked by its SHA-256, the whole image by the block list the cloud sealed in
the offer), then installs it. ``mib_per_s`` is every device's image over the wall
time from the first device starting its download to the last one finishing
(``DeviceConfig.impos_install_s`` is 0 here, so the end is the download's). A
device that has installed is powered off at once: its reboot, code download and
factory tests are not delivery, and would share the one CPU with the downloads
still being measured. What the set-up made (the cloud, the fleet, every device's
state) is frozen for the window (``gc.freeze``): the collector's passes then walk
only what the delivery itself allocates, as in the raw reference, which has no
such heap beside it.

Before and after that (their mean), in the same run and on the same broker, the
raw reference (tools/broker_reference.py): as many blocks of the same size as the devices fetch
in all, from the cloud's account to one device account each, on the client the cloud
and the devices use (impfactory/mqttconn.py). ``ratio`` is ``mib_per_s`` over the
raw MiB/s. ``--json`` prints ``mib_per_s``, ``ratio`` and the rest as one object.

``ratio_ceiling`` is the most ``ratio`` could be with this design, from figures of the
same run: the cloud and the devices share one thread (one event loop), which does for
each block at least what the raw reference's one process does for each message
(``raw_cpu_us_per_message``: publisher and subscribers, first publish to last
delivery) and checks the block's SHA-256 besides (``block_sha_us``: a block hashed
here), so it delivers at most ``1 / (raw_cpu_us_per_message + block_sha_us)`` blocks a
second, over the raw reference's blocks a second.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from impfactory.clock import ScaledClock
from impfactory.cloud.broker import BrokerServer
from impfactory.cloud.server import Cloud
from impfactory.firmware import examples
from impfactory.firmware.device import Device, DeviceConfig
from impfactory.firmware.errors import DeviceError
from impfactory.firmware.events import DeviceEvent, DeviceRecord
from impfactory.firmware.fleet import Fleet
from impfactory.firmware.settings import MemoryStore
from impfactory.protocol import cloudlink as cl
from impfactory.tools.broker_reference import raw_rate
from impfactory.tools.cmd_line import quiet_network_logs
from impfactory.tools.emulated_zone import build_test_zone, dut_settings, start_fixture

RELEASE = "44.0.1"
TIMEOUT = 300.0


class PerfFirmwareError(DeviceError):
    """Arguments a run cannot use (no devices, an empty image, a stopped clock)."""


async def _deliver(cloud_url: str, devices: int, size: int, scale: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with Cloud(Path(tmp) / "cloud.db", cloud_url) as cloud:
            svc = cloud.service
            zone = build_test_zone(svc)
            svc.add_impos_release(RELEASE, size=size)
            config = DeviceConfig(impos_install_s=0.0)
            async with Fleet(cloud.broker_url, ScaledClock(scale), config=config) as fleet:
                fixture = await start_fixture(svc, zone, fleet)
                duts = [fleet.add(store=MemoryStore(dut_settings(svc, fixture)),
                                  hardware=examples.dut_board(), imp_type=examples.DUT_IMP)
                        for _ in range(devices)]
                await _enrol(duts)
                svc.update_group(zone.dut_group, min_impos_version=RELEASE)
                return await _update(duts, size)


async def _enrol(duts: list[Device]) -> None:
    """Every DUT enrolled into the DUT group (its own broker account made), then off."""
    async def one(dut: Device) -> None:
        dut.power_on()
        await dut.wait_for(DeviceEvent.ASSIGNED, TIMEOUT, since=0)
        await dut.power_off()

    await asyncio.gather(*(one(d) for d in duts))


async def _update(duts: list[Device], size: int) -> dict[str, Any]:
    """Power every DUT on at once; each is offered the release on connecting."""
    loop = asyncio.get_running_loop()
    started: list[float] = []
    ended: list[float] = []
    failed: list[str] = []
    all_done = loop.create_future()

    offs: list[asyncio.Task[None]] = []

    def watch(dut: Device, record: DeviceRecord) -> None:
        if record.kind is DeviceEvent.IMPOS_UPDATING:
            started.append(time.perf_counter())
        elif record.kind in (DeviceEvent.IMPOS_UPDATED, DeviceEvent.IMAGE_FAILED):
            ended.append(time.perf_counter())
            # done: off at once, so its reboot, code download and factory tests do not
            # share the CPU with the downloads still running (the raw reference has
            # nothing else running beside it either)
            offs.append(loop.create_task(dut.power_off()))
            if record.kind is DeviceEvent.IMAGE_FAILED:
                failed.append(str(record.detail))
            if len(ended) == len(duts) and not all_done.done():
                all_done.set_result(None)

    for dut in duts:
        dut.subscribe(functools.partial(watch, dut))
    # The cloud, the fleet and a hundred devices' state were made above and live for the
    # whole run: frozen, the collector's full passes in the window skip them (a long-lived
    # cloud process would freeze its start-up the same way). The raw reference has no
    # such heap beside it; what the window itself allocates is still collected.
    gc.collect()
    gc.freeze()
    cpu = time.process_time()
    for dut in duts:
        dut.power_on()
    try:
        await asyncio.wait_for(all_done, TIMEOUT)
    except TimeoutError:
        failed.append(f"{len(duts) - len(ended)} devices still downloading after "
                      f"{TIMEOUT:.0f} s")
    finally:
        gc.unfreeze()
    cpu = time.process_time() - cpu
    await asyncio.gather(*offs, *(d.power_off() for d in duts))
    installed = max(0, len(ended) - len(failed))
    wall = (max(ended) - min(started)) if started and ended else float("nan")
    return {"installed": installed, "wall_s": round(wall, 3),
            "mib_per_s": round(installed * size / wall / 2**20, 1) if installed else 0.0,
            "starts_spread_s": round(max(started) - min(started), 3) if started else None,
            # this process: the cloud and every device (the broker is another process)
            "cpu_ms_per_mib": round(1000 * cpu / max(installed * size / 2**20, 1e-9), 2),
            "failures": failed[:3]}


def block_sha_us(size: int, runs: int = 201) -> float:
    """Median microseconds to take the SHA-256 of one ``size``-byte block here."""
    block = bytes(size)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        hashlib.sha256(block).digest()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


async def run(cloud_url: str, devices: int, size: int, scale: float) -> dict[str, Any]:
    chunk = cl.DEFAULT_CHUNK_SIZE
    blocks = -(-size // chunk)
    cpu = time.process_time()
    before = await raw_rate(cloud_url, messages=devices * blocks, size=chunk,
                            subscribers=devices)
    cpu = time.process_time() - cpu  # set-up included: subscribers' accounts and connects
    figures = await _deliver(cloud_url, devices, size, scale)
    after = await raw_rate(cloud_url, messages=devices * blocks, size=chunk, subscribers=devices)
    raw_mib = (before.bytes_per_s + after.bytes_per_s) / 2 / 2**20
    raw_blocks_per_s = (before.messages_per_s + after.messages_per_s) / 2
    # this process alone: the delivery's one thread is the bound, not the broker's CPU
    raw_cpu_us = (before.cpu_s / before.messages + after.cpu_s / after.messages) / 2 * 1e6
    sha_us = block_sha_us(chunk)
    return {"devices": devices, "image_bytes": size, "chunk_bytes": chunk, **figures,
            "raw_mib_per_s": round(raw_mib, 1),
            "raw_before_after": [round(before.bytes_per_s / 2**20, 1),
                                 round(after.bytes_per_s / 2**20, 1)],
            "raw_cpu_ms_per_mib": round(1000 * cpu / (before.messages * before.size / 2**20),
                                        2),
            "ratio": round(figures["mib_per_s"] / raw_mib, 3),
            "raw_cpu_us_per_message": round(raw_cpu_us, 1),
            "block_sha_us": round(sha_us, 1),
            "ratio_ceiling": round(firmware_ceiling(raw_blocks_per_s, raw_cpu_us, sha_us), 3)}


def firmware_ceiling(raw_blocks_per_s: float, raw_cpu_us: float, sha_us: float) -> float:
    """The highest ``ratio`` one thread allows when each block costs it at least a raw
    message's ``raw_cpu_us`` and a SHA-256's ``sha_us`` (see the module's text)."""
    return 1e6 / (raw_cpu_us + sha_us) / raw_blocks_per_s


def main(args: argparse.Namespace) -> int:
    if args.devices < 1 or args.size < 1:
        raise PerfFirmwareError("--devices and --size must be at least 1")
    if not args.scale > 0:
        raise PerfFirmwareError("--scale must be positive")
    quiet_network_logs()
    server = BrokerServer(args.broker)
    with server:
        figures = asyncio.run(run(server.cloud_url, args.devices, args.size, args.scale))
    figures["broker"] = args.broker
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"perf firmware: a {figures['image_bytes'] / 2**20:g} MiB impOS image to "
              f"{figures['devices']} devices over {args.broker}: {figures['installed']} "
              f"installed in {figures['wall_s']} s, {figures['mib_per_s']} MiB/s")
        print(f"               raw broker, {figures['chunk_bytes']}-byte messages, same run: "
              f"{figures['raw_mib_per_s']} MiB/s (ratio {figures['ratio']})")
        print(f"               ratio can be at most {figures['ratio_ceiling']} here: "
              f"{figures['raw_cpu_us_per_message']} us CPU per raw message, "
              f"{figures['block_sha_us']} us per block's SHA-256, one thread")
        for failure in figures["failures"]:
            print(f"               failed: {failure}")
    return 0 if figures["installed"] == figures["devices"] else 1


def register(sub: Any) -> None:
    parser = sub.add_parser("firmware", help="an impOS image to many devices at once (MiB/s)",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100, metavar="N",
                        help="devices updating at once (default 100)")
    parser.add_argument("--size", type=int, default=1 << 20, metavar="BYTES",
                        help="impOS image size (default 1 MiB)")
    parser.add_argument("--scale", type=float, default=200.0,
                        help="device clock speed-up over the wall (default 200)")
    parser.add_argument("--broker", default="mosquitto", metavar="mosquitto|auto|embedded|URL",
                        help="broker (default mosquitto)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=main)
