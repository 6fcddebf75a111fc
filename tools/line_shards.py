"""Run one line as W worker processes sharing the broker, with the cloud in this process.

The coordinator side of ``fixture/shard.py``: spawn the workers, wait until each
has imported everything (start-up is not line time), give each its shard, its
fixtures' developer enrolments and the broker, adopt their fixtures into the
fixture group when they ask, and gather progress and records. The line's wall
time runs from the ``start`` messages to the last record.

A worker ended by ``SIGALRM`` was cut off for a DUT's callback stuck in C
(fixture/shard.py): its DUTs not yet done are recorded as failed
(``device_code_stuck``) and the line goes on with the others. A worker that ends
any other way without saying why fails the line (``LineError``): that is a bug.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from impfactory.fixture.line import LineConfig, LineError, LineObserver, LineResult
from impfactory.fixture.record import DutRecord, LineSummary
from impfactory.fixture.shard import STUCK_EXIT_S, CloudInfo, lost_records, worker_main
from impfactory.tools.line_setup import FactoryCloud

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0


async def run_sharded(config: LineConfig, cloud: FactoryCloud, observer: LineObserver,
                      workers: int) -> LineResult:
    """Run ``config`` on ``workers`` processes (at most one per fixture)."""
    workers = max(1, min(workers, config.fixtures))
    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")
    conns: list[Connection] = []
    procs: list[Any] = []
    try:
        for _ in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child,), daemon=True)
            proc.start()
            child.close()
            conns.append(parent)
            procs.append(proc)
        for conn in conns:
            ready = await asyncio.wait_for(loop.run_in_executor(None, conn.recv), READY_TIMEOUT)
            if ready != ("ready",):
                raise LineError(f"line worker did not start: {ready!r}")
        return await _coordinate(config, cloud, observer, conns, procs)
    finally:
        for conn in conns:
            conn.close()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()


async def _coordinate(config: LineConfig, cloud: FactoryCloud, observer: LineObserver,
                      conns: list[Connection], procs: list[Any]) -> LineResult:
    loop = asyncio.get_running_loop()
    records: list[DutRecord] = []
    finished = [loop.create_future() for _ in conns]
    cut_off: list[int] = []  # workers ended for a stuck callback
    lost_presses = [0] * len(conns)
    adoptions: set[asyncio.Task[None]] = set()

    async def adopt(conn: Connection, device_id: str) -> None:
        await cloud.adopt_fixture(device_id)
        conn.send(("adopted", device_id))

    async def activity(conn: Connection, device_id: str, messages: int) -> None:
        conn.send(("agent_activity", device_id,
                   await cloud.agent_activity(device_id, messages)))

    def on_readable(w: int) -> None:
        conn = conns[w]
        try:
            while conn.poll():
                msg = conn.recv()
                kind = msg[0]
                if kind == "stage":
                    observer.stage(msg[1], msg[2])
                elif kind == "done":
                    records.append(msg[1])
                    observer.done(msg[1])
                elif kind == "adopt":
                    task = loop.create_task(adopt(conn, msg[1]))
                    adoptions.add(task)
                    task.add_done_callback(adoptions.discard)
                elif kind == "agent_activity":
                    task = loop.create_task(activity(conn, msg[1], msg[2]))
                    adoptions.add(task)
                    task.add_done_callback(adoptions.discard)
                elif kind == "finished" and not finished[w].done():
                    lost_presses[w] = int(msg[1])
                    finished[w].set_result(None)
                elif kind == "error" and not finished[w].done():
                    finished[w].set_exception(LineError(f"line worker {w}: {msg[1]}"))
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            if finished[w].done():
                return
            procs[w].join(timeout=5)
            if procs[w].exitcode == -signal.SIGALRM:
                log.warning("line worker %d cut off: a DUT's Python callback ran %g s without "
                            "returning (stuck in a call into C); its DUTs not yet done fail "
                            "as device_code_stuck", w, STUCK_EXIT_S)
                cut_off.append(w)
                finished[w].set_result(None)
            else:
                finished[w].set_exception(LineError(
                    f"line worker {w} died (exit code {procs[w].exitcode})"))

    ways = len(conns)
    started = time.perf_counter()
    for w, conn in enumerate(conns):
        mine = [k for k in range(config.fixtures) if k % ways == w]
        info = CloudInfo(cloud.broker_url, cloud.wifi_ssid, cloud.wifi_password,
                         cloud.impos_current, cloud.impos_outdated,
                         tuple(cloud.fixture_enrolment() for _ in mine),
                         cloud.first_dut_serial)
        conn.send(("start", config, info, (w, ways)))
        loop.add_reader(conn.fileno(), on_readable, w)
    try:
        await asyncio.gather(*finished)
    finally:
        for conn in conns:
            loop.remove_reader(conn.fileno())
    wall = time.perf_counter() - started
    done = {r.index for r in records}
    for w in cut_off:
        for record in lost_records(config, cloud.first_dut_serial, (w, ways), done):
            records.append(record)
            observer.done(record)
    records.sort(key=lambda r: r.index)
    return LineResult(records, LineSummary.of(records, wall, fixtures=config.fixtures,
                                              seed=config.seed), sum(lost_presses))
