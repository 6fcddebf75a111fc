"""``impfactory perf device``: how many DUT lives per second one process sustains.

Starts a broker and the real cloud on loopback, a Test Zone with the example
factory and application firmware, one emulated fixture, then ``--duts`` DUTs
already holding what a factory BlinkUp leaves (WiFi + a factory token minted
for the fixture), ``--concurrency`` alive at a time. Each DUT connects through
every WiFi stage, enrols, downloads its DUT firmware by chunks, runs its hardware
tests, blesses, and runs the application. The light itself is measured by
``impfactory perf decoder``; here the figure is the device + cloud + broker cost.

Printed: DUTs/s (wall), CPU ms per DUT (this process: devices and cloud; the
broker is a separate process with Mosquitto), and how many were blessed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from impfactory.clock import ScaledClock
from impfactory.cloud.broker import BrokerServer
from impfactory.cloud.server import Cloud
from impfactory.firmware import examples
from impfactory.firmware.errors import DeviceError
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.fleet import Fleet
from impfactory.firmware.settings import MemoryStore
from impfactory.tools.emulated_zone import build_test_zone, dut_settings, start_fixture


async def run(url: str, duts: int, concurrency: int, scale: float,
              impos: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with Cloud(Path(tmp) / "cloud.db", url) as cloud:
            svc = cloud.service
            zone = build_test_zone(svc, min_impos="44.0.1" if impos else None)
            async with Fleet(url, ScaledClock(scale)) as fleet:
                fixture = await start_fixture(svc, zone, fleet)
                gate = asyncio.Semaphore(concurrency)
                blessed = 0

                async def one_life() -> None:
                    nonlocal blessed
                    async with gate:
                        dut = fleet.add(store=MemoryStore(dut_settings(svc, fixture)),
                                        hardware=examples.dut_board(),
                                        imp_type=examples.DUT_IMP)
                        dut.power_on()
                        try:
                            await dut.wait_for(DeviceEvent.BLESSED, 120.0, since=0)
                            blessed += 1
                        finally:
                            await dut.power_off()

                cpu0, wall0 = time.process_time(), time.perf_counter()
                results = await asyncio.gather(*(one_life() for _ in range(duts)),
                                               return_exceptions=True)
                wall = time.perf_counter() - wall0
                cpu = time.process_time() - cpu0
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    return {"duts": duts, "blessed": blessed, "concurrency": concurrency,
            "wall_s": round(wall, 3), "duts_per_s": round(duts / wall, 1),
            "cpu_ms_per_dut": round(1000 * cpu / duts, 2), "clock_scale": scale,
            "impos_update": impos, "failures": failures[:3]}


class PerfDeviceError(DeviceError):
    """Arguments a run cannot use (no DUTs, nothing allowed at a time, a stopped clock)."""


def main(args: argparse.Namespace) -> int:
    if args.duts < 1 or args.concurrency < 1:
        raise PerfDeviceError("--duts and --concurrency must be at least 1")
    if not args.scale > 0:
        raise PerfDeviceError("--scale must be positive")
    with BrokerServer(args.broker) as url:
        figures = asyncio.run(run(url, args.duts, args.concurrency, args.scale, args.impos))
    figures["broker"] = args.broker
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>16}: {value}")
    return 0 if figures["blessed"] == figures["duts"] else 1


def register(sub: Any) -> None:
    parser = sub.add_parser("device", help="DUT lives per second (devices + cloud + broker)")
    parser.add_argument("--duts", type=int, default=200, help="DUT lives in all")
    parser.add_argument("--concurrency", type=int, default=100, help="DUTs alive at a time")
    parser.add_argument("--scale", type=float, default=200.0, help="device clock scale")
    parser.add_argument("--broker", default="auto", help="auto, mosquitto, embedded or mqtt://")
    parser.add_argument("--impos", action="store_true", help="DUTs update their impOS first")
    parser.add_argument("--json", action="store_true", help="one JSON object of figures")
    parser.set_defaults(func=main)
