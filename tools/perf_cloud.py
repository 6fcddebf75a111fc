"""``impfactory perf cloud``: N fake DUTs through the whole factory flow, one cloud process.

The cloud runs as ``impfactory cloud serve`` in its own process (as in production),
on a broker this command starts (Mosquitto when installed). Fixtures and DUTs are
scripted fake devices on this process's event loop (or shared among ``--workers``
processes on the same broker), ``--concurrency`` DUTs in flight. Each DUT: factory
token from its fixture, hello with the token, assignment + configparams + DUT
firmware download, bless(true), move to production, application download, goodbye.
Prints DUTs/s, latency and the cloud process's CPU time per DUT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from impfactory import procstat
from impfactory.cloud.broker import BrokerServer
from impfactory.cloud.errors import InvalidError
from impfactory.cloud.fakedevice import FakeDevice
from impfactory.cloud.rules import DeviceRules
from impfactory.cloud.scenario import make_factory
from impfactory.cloud.service import CloudService
from impfactory.cloud.store import open_store
from impfactory.protocol import cloudlink as cl

OWNER = "perf-owner"


def register(sub: Any) -> None:
    parser = sub.add_parser("cloud", help="DUTs per second through one cloud process")
    parser.add_argument("--duts", type=int, default=2000)
    parser.add_argument("--fixtures", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=100,
                        help="DUTs in flight at once (shared among workers)")
    parser.add_argument("--workers", type=int, default=1,
                        help="device processes sharing the broker (the cloud is always one)")
    parser.add_argument("--broker", default="auto", help="auto | mosquitto | embedded | mqtt://")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=perf_cloud)


def _setup(db_path: Path, fixtures: int) -> list[tuple[str, str]]:
    """Build the factory and register the fixtures (as their first hello would)."""
    db = open_store(db_path)
    svc = CloudService(db)
    svc.ensure_owner(OWNER)
    setup = make_factory(svc, OWNER)
    rules = DeviceRules(svc)
    ids = []
    for i in range(fixtures):
        mac = f"f1c7{i:08x}"
        device_id = "0c2a" + mac
        token = svc.create_development_token(OWNER)
        rules.handle(cl.Hello(device_id=device_id, mac=mac, plan_id=token.plan_id,
                              token=token.token))
        rules.handle(cl.Bye(device_id=device_id))
        ids.append((device_id, mac))
    svc.assign_devices(setup.fixture_group.id, [d for d, _ in ids])
    db.close()
    return ids


def _cpu_seconds(pid: int) -> float:
    """The cloud process's CPU seconds so far (the figure this benchmark is for)."""
    cpu = procstat.cpu_seconds(pid)
    if cpu is None:
        raise InvalidError(f"cannot read the CPU time of process {pid} (/proc: Linux only)")
    return cpu


async def _run(url: str, fixture_ids: list[tuple[str, str]], indices: range,
               concurrency: int) -> tuple[float, float, list[float]]:
    """Run DUTs ``indices`` through the flow; (wall start, wall end, latencies)."""
    fixtures = []
    for device_id, mac in fixture_ids:
        fx = FakeDevice(url, device_id, mac=mac, timeout=60)
        await fx.connect()
        await fx.hello()
        await fx.run(await fx.expect(cl.CodeOffer))
        fixtures.append(fx)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            t0 = time.perf_counter()
            fx = fixtures[i % len(fixtures)]
            token = await fx.factory_token()
            dut = FakeDevice(url, mac=f"d07{i:09x}", timeout=60)
            await dut.connect()
            await dut.hello(token.plan_id, token.token)
            await dut.expect(cl.Assignment)
            await dut.expect(cl.ConfigParams)
            await dut.run(await dut.expect(cl.CodeOffer))
            answer = await dut.bless(True)
            if not answer.blessed:
                raise RuntimeError(f"DUT {dut.device_id} not blessed: {answer.reason}")
            await dut.expect(cl.Assignment)
            await dut.run(await dut.expect(cl.CodeOffer))
            await dut.close()
            latencies.append(time.perf_counter() - t0)

    start = time.time()
    await asyncio.gather(*(one(i) for i in indices))
    end = time.time()
    for fx in fixtures:
        await fx.close()
    return start, end, latencies


def _worker(url: str, fixture_ids: list[tuple[str, str]], indices: range,
            concurrency: int) -> tuple[float, float, list[float]]:
    """One device process of a sharded run (its own event loop and connections)."""
    return asyncio.run(_run(url, fixture_ids, indices, concurrency))


def _sharded(url: str, fixture_ids: list[tuple[str, str]], duts: int, concurrency: int,
             workers: int) -> tuple[float, list[float]]:
    if workers == 1:
        start, end, latencies = _worker(url, fixture_ids, range(duts), concurrency)
        return end - start, latencies
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futures = [pool.submit(_worker, url, fixture_ids[w::workers], range(w, duts, workers),
                               max(1, concurrency // workers)) for w in range(workers)]
        results = [f.result() for f in futures]
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    return end - start, [lat for r in results for lat in r[2]]


def perf_cloud(args: argparse.Namespace) -> int:
    if args.duts < 1 or args.concurrency < 1 or not 1 <= args.workers <= args.fixtures:
        raise InvalidError("need --duts >= 1, --concurrency >= 1, 1 <= --workers <= --fixtures")
    broker = BrokerServer(args.broker)
    with tempfile.TemporaryDirectory(prefix="impfactory-perf-cloud-") as tmp, broker as url:
        db_path = Path(tmp) / "cloud.db"
        fixture_ids = _setup(db_path, args.fixtures)
        proc = subprocess.Popen(  # the cloud in its own process: its credentials in the URL
            [sys.executable, "-m", "impfactory.tools.cli", "cloud", "serve",
             "--broker", broker.cloud_url,
             "--db", str(db_path), "--log-level", "WARNING"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            json.loads(proc.stdout.readline())
            cpu0 = _cpu_seconds(proc.pid)
            elapsed, latencies = _sharded(url, fixture_ids, args.duts, args.concurrency,
                                          args.workers)
            cpu = _cpu_seconds(proc.pid) - cpu0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
        db = open_store(db_path)
        blessed = sum(1 for d in CloudService(db).list_devices() if d.blessed)
        db.close()
    latencies.sort()
    figures = {
        "broker": args.broker, "duts": args.duts, "fixtures": args.fixtures,
        "concurrency": args.concurrency, "workers": args.workers, "seconds": round(elapsed, 2),
        "duts_per_second": round(args.duts / elapsed, 1), "blessed_in_db": blessed,
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "latency_p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        "cloud_cpu_seconds": round(cpu, 2),
        "cloud_cpu_ms_per_dut": round(cpu / args.duts * 1000, 2),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>22}: {value}")
    return 0 if blessed == args.duts else 1
