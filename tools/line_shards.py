"""The coordinator of a line run as W workers that share the broker (protocol/linework.py).

``line run --workers K`` starts K local worker processes (``impfactory line worker``,
fixture/shard.py) and ``--remote-workers R`` waits for R more started by hand on
other machines; all of them take the same path: they ``join`` over the broker, and
once every expected worker has joined (start-up is not line time) each is
assigned its shard, its fixtures' developer enrolments and the line
configuration. The coordinator, which owns the cloud side, adopts their fixtures
into the fixture group and answers what an agent did when they ask, and gathers
progress and DUT records. The line's wall time runs from the assignments to the
last worker's ``finished``. A worker that dies is reported by the broker (its
will is a ``failed`` message) and fails the run, except a local worker ended by
``SIGALRM``: it was cut off for a DUT's callback stuck in C (fixture/shard.py), so
its DUTs not yet done are recorded as failed (``device_code_stuck``) and the line
goes on with the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from impfactory.brokerurl import safe_url
from impfactory.cloud import brokersec
from impfactory.errors import ImpFactoryError
from impfactory.fixture.line import LineConfig, LineError, LineObserver, LineResult
from impfactory.fixture.linebus import BusAddress, LineBus, Outbox
from impfactory.fixture.record import DutRecord, LineSummary, RecordError
from impfactory.fixture.shard import (
    LINE_BROKER_ENV,
    STUCK,
    STUCK_EXIT_S,
    CloudInfo,
    config_to_dict,
    lost_records,
)
from impfactory.protocol import linework as lw
from impfactory.tools.line_setup import FactoryCloud

log = logging.getLogger(__name__)

JOIN_TIMEOUT = 60.0
"""Seconds local workers get to start (imports) and join."""


class LineWorkSetupError(ImpFactoryError, ValueError):
    """The run cannot have workers on this broker (no line account known for it)."""


@dataclass
class _Worker:
    shard: int
    answers: Outbox[lw.AgentActivity]
    """Answers to its agent questions, sent in ``answers`` batches."""
    assign: lw.Assign | None = None
    finished: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


def new_run_name() -> str:
    return f"run-{secrets.token_hex(4)}"


def worker_url(broker_url: str, n: int) -> str:
    """Broker URL with line account ``n``'s credentials, for a worker (or the coordinator)."""
    access = brokersec.line_access_for(broker_url, n)
    if access is None:
        raise LineWorkSetupError(
            f"no line account known for {safe_url(broker_url)}: give --line-broker "
            f"mqtt://{brokersec.LINE_USER}-0:PASSWORD@HOST:PORT")
    return access.cloud_url


async def run_sharded(config: LineConfig, cloud: FactoryCloud, observer: LineObserver,
                      workers: int, *, remote: int = 0, run: str | None = None,
                      line_broker: str | None = None, join_timeout: float | None = None,
                      announce: bool = False) -> LineResult:
    """Run ``config`` on ``workers`` local worker processes and ``remote`` joining ones
    (at most one shard per fixture). ``line_broker``: the coordinator's line account
    (default: line account 0 of the broker this process started)."""
    shards = max(1, min(workers + remote, config.fixtures))
    run = lw.check_run(run or new_run_name())
    url = line_broker or worker_url(cloud.broker_url, 0)
    local = [secrets.token_hex(8) for _ in range(min(workers, shards))]
    procs = [_spawn(worker_url(cloud.broker_url, n + 1), run, worker)
             for n, worker in enumerate(local)]
    if announce and remote:
        print(f"line: waiting for {remote} worker(s): impfactory line worker --run {run} "
              f"--broker mqtt://{brokersec.LINE_USER}-N:PASSWORD@HOST:PORT", file=sys.stderr)
    timeout = join_timeout if join_timeout is not None else (
        JOIN_TIMEOUT if not remote else 600.0)
    try:
        async with LineBus(BusAddress.parse(url), run) as bus:
            await bus.subscribe(lw.coordinator_filter(run))
            coordinator = _Coordinator(config, cloud, observer, bus, shards, procs, local)
            return await coordinator.run(timeout)
    finally:
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=5)


def _spawn(url: str, run: str, worker: str) -> subprocess.Popen[bytes]:
    """A local worker: the same command a remote machine runs (the URL travels in the
    environment, not the command line other users can read)."""
    env = {**os.environ, LINE_BROKER_ENV: url}
    return subprocess.Popen([sys.executable, "-m", "impfactory.tools.cli", "line", "worker",
                             "--run", run, "--worker-id", worker, "--quiet"], env=env,
                            stdin=subprocess.DEVNULL)


class _Coordinator:
    def __init__(self, config: LineConfig, cloud: FactoryCloud, observer: LineObserver,
                 bus: LineBus, shards: int, procs: list[subprocess.Popen[bytes]],
                 local: list[str]) -> None:
        self.config = config
        self.cloud = cloud
        self.observer = observer
        self.bus = bus
        self.shards = shards
        self.procs = procs
        self.local = set(local)
        """Worker IDs of the local workers: their shards are kept for them."""
        self.proc_of = dict(zip(local, procs, strict=True))
        self.cut_off: list[int] = []
        """Shards whose local worker the kernel ended for a stuck callback."""
        self.workers: dict[str, _Worker] = {}
        self.records: dict[int, DutRecord] = {}
        self.all_joined = asyncio.get_running_loop().create_future()
        self.tasks: set[asyncio.Task[None]] = set()
        self.started = 0.0

    async def run(self, join_timeout: float) -> LineResult:
        listening = asyncio.ensure_future(self._listen())
        watching = asyncio.ensure_future(self._watch_processes())
        try:
            await self._wait(asyncio.wait_for(asyncio.shield(self.all_joined), join_timeout),
                             listening, watching,
                             f"{self.shards} workers did not join within {join_timeout:.0f} s")
            self.started = time.perf_counter()
            for worker_id, worker in self.workers.items():
                worker.assign = self._assignment(worker.shard)
                await self.bus.send(worker_id, worker.assign)
            finished = asyncio.gather(*(w.finished for w in self.workers.values()))
            lost = await self._wait(finished, listening, watching, "")
        finally:
            for worker in self.workers.values():
                worker.answers.close()
            for task in (listening, watching, *self.tasks):
                task.cancel()
            await asyncio.gather(listening, watching, *self.tasks, return_exceptions=True)
        wall = time.perf_counter() - self.started
        for shard in self.cut_off:
            for record in lost_records(self.config, self.cloud.first_dut_serial,
                                       (shard, self.shards), set(self.records)):
                self.records[record.index] = record
                self.observer.done(record)
        records = sorted(self.records.values(), key=lambda r: r.index)
        return LineResult(records, LineSummary.of(records, wall, fixtures=self.config.fixtures,
                                                  seed=self.config.seed), sum(lost))

    async def _wait(self, what: Awaitable[Any], listening: asyncio.Future[None],
                    watching: asyncio.Future[None], timeout_text: str) -> Any:
        main = asyncio.ensure_future(what)
        await asyncio.wait({main, listening, watching}, return_when=asyncio.FIRST_COMPLETED)
        for guard in (listening, watching):
            if guard.done() and not main.done():
                main.cancel()
                guard.result()  # raises why it ended
                raise LineError("line work ended early")
        try:
            result = main.result()
        except TimeoutError:
            raise LineError(timeout_text) from None
        return result

    def _assignment(self, shard: int) -> lw.Assign:
        mine = [k for k in range(self.config.fixtures) if k % self.shards == shard]
        cloud = self.cloud
        info = CloudInfo(cloud.broker_url, cloud.wifi_ssid, cloud.wifi_password,
                         cloud.impos_current, cloud.impos_outdated,
                         tuple(cloud.fixture_enrolment() for _ in mine),
                         cloud.first_dut_serial)
        return lw.Assign(shard=shard, shards=self.shards, config=config_to_dict(self.config),
                         cloud=info.to_dict())

    async def _watch_processes(self) -> None:
        """A local worker that exits before finishing fails the run at once, unless the
        kernel ended it for a stuck callback (then its shard is cut off)."""
        while True:
            for worker_id, proc in self.proc_of.items():
                code = proc.poll()
                worker = self.workers.get(worker_id)
                if code == -signal.SIGALRM and worker is not None:
                    self._cut(worker)
                elif code is not None and code != 0 and not (
                        worker is not None and worker.finished.done()):
                    raise LineError(f"local line worker exited with status {code}")
            await asyncio.sleep(0.2)

    def _cut(self, worker: _Worker) -> None:
        if not worker.finished.done():
            log.warning("line worker %d cut off: a DUT's Python callback ran %g s without "
                        "returning (stuck in a call into C); its DUTs not yet done fail as "
                        "%s", worker.shard, STUCK_EXIT_S, STUCK)
            self.cut_off.append(worker.shard)
            worker.finished.set_result(0)

    async def _failed(self, worker_id: str, worker: _Worker, error: str) -> None:
        """A ``failed`` (or the will) of a local worker: its exit status says whether it
        was cut off for a stuck callback or failed the run."""
        proc = self.proc_of[worker_id]
        for _ in range(50):
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        if proc.poll() == -signal.SIGALRM:
            self._cut(worker)
        else:
            self._fail(worker, error)

    async def _listen(self) -> None:
        async for worker_id, msg in self.bus.receive():
            self._handle(worker_id, msg)

    def _handle(self, worker_id: str, msg: lw.Message) -> None:
        worker = self.workers.get(worker_id)
        if isinstance(msg, lw.Join):
            self._join(worker_id, worker)
            return
        if worker is None:
            return  # not one of ours (a dismissed worker, a stray)
        if isinstance(msg, lw.Progress):
            self._progress(worker, msg)
        elif isinstance(msg, lw.Adopt):
            self._spawn_task(self._adopt(worker_id, msg.device_id))
        elif isinstance(msg, lw.Finished):
            if not worker.finished.done():
                worker.finished.set_result(msg.lost_presses)
        elif isinstance(msg, lw.Failed):
            if worker_id in self.proc_of:
                self._spawn_task(self._failed(worker_id, worker, msg.error))
            else:
                self._fail(worker, msg.error)

    def _progress(self, worker: _Worker, msg: lw.Progress) -> None:
        """A worker's batch: its stages, then its records, then its questions (a DUT's
        stages precede its record; QoS 1 may deliver a batch twice)."""
        for event in msg.stages:
            if event.index not in self.records:
                self.observer.stage(event.index, event.stage)
        for data in msg.done:
            try:
                record = DutRecord.from_dict(data)
            except RecordError as err:
                self._fail(worker, f"sent a bad record: {err}")
                return
            if record.index not in self.records:
                self.records[record.index] = record
                self.observer.done(record)
        for ask in msg.asks:
            self._spawn_task(self._activity(worker, ask))

    def _fail(self, worker: _Worker, error: str) -> None:
        if not worker.finished.done():
            worker.finished.set_exception(LineError(f"line worker {worker.shard}: {error}"))

    def _join(self, worker_id: str, worker: _Worker | None) -> None:
        if worker is None:
            remote_taken = sum(1 for w in self.workers if w not in self.local)
            if worker_id not in self.local and remote_taken >= self.shards - len(self.local):
                self._send(worker_id, lw.Dismiss(reason="the run has all its workers"))
                return
            worker = self.workers[worker_id] = _Worker(
                len(self.workers), Outbox(self.bus, worker_id, _pack_answers))
            if len(self.workers) == self.shards:
                self.all_joined.set_result(None)
        if worker.assign is not None:  # a join repeated after its answer: answer again
            self._send(worker_id, worker.assign)

    def _send(self, worker_id: str, msg: lw.Message) -> None:
        self._spawn_task(self.bus.send(worker_id, msg))

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _adopt(self, worker_id: str, device_id: str) -> None:
        await self.cloud.adopt_fixture(device_id)
        await self.bus.send(worker_id, lw.Adopted(device_id=device_id))

    async def _activity(self, worker: _Worker, ask: lw.Ask) -> None:
        entries = await self.cloud.agent_activity(ask.device_id, ask.messages)
        worker.answers.put(lw.AgentActivity(device_id=ask.device_id, entries=entries))


def _pack_answers(items: list[lw.AgentActivity]) -> lw.Message:
    return lw.Answers(activity=items)
