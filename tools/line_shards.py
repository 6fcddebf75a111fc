"""The coordinator of a line run as W workers (protocol/linework.py).

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
``SIGALRM``: it was cut off for a Python callback stuck in C (fixture/shard.py).
Then (``_Coordinator._recover``):

* every DUT of its shard not yet done is asked of the cloud: one the cloud
  blessed (its ``done`` went down with the worker) is recorded blessed, as the
  factory's blessing webhook would tell;
* of the rest, the DUT its stuck note names (runtime.end_process_when_stuck)
  fails as ``device_code_stuck`` (a stuck fixture: each DUT it had left; no note:
  all of them, as nothing tells which one hung);
* the others are run again, fresh from BlinkUp, by a worker started in its place
  (an ``assign`` naming just those DUTs). The cloud never blesses a device twice,
  so a bless still on its way when the cloud was asked fails the rerun as
  refused; it does not bless twice.

A line whose firmware is Python runs on one such local worker even without
``--workers`` (``piped``: over two pipes instead of the broker, fixture/linepipe.py,
so it needs no line account, as with ``--cloud``).
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
import tempfile
import time
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from impfactory.brokerurl import safe_url
from impfactory.cloud import brokersec
from impfactory.errors import ImpFactoryError
from impfactory.firmware.runtime import NOTE_SIZE, read_stuck_note
from impfactory.fixture.line import LineCloud, LineConfig, LineError, LineObserver, LineResult
from impfactory.fixture.linebus import BusAddress, LineBus, WorkChannel
from impfactory.fixture.linepipe import LINE_PIPE_ENV, PipeHub
from impfactory.fixture.record import BLESSED, DutEvent, DutRecord, LineSummary, RecordError
from impfactory.fixture.shard import (
    STUCK_EXIT_S,
    STUCK_NOTE_ENV,
    CloudInfo,
    config_to_dict,
    dut_device_id,
    failed_record,
    fixture_device_id,
    shard_duts,
)
from impfactory.protocol import linework as lw

log = logging.getLogger(__name__)

LINE_BROKER_ENV = "IMPFACTORY_LINE_BROKER"
"""Where ``line worker`` finds its broker URL (with its password) when ``--broker`` is not
given."""
JOIN_TIMEOUT = 60.0
"""Seconds local workers get to start (imports) and join."""
SETTLE_S = 0.5
"""Wall seconds after a worker was cut off before the cloud is asked what its DUTs
reached: what they sent before the end is through the broker and handled by then."""


class LineWorkSetupError(ImpFactoryError, ValueError):
    """The run cannot have workers on this broker (no line account known for it)."""


class ShardCloud(LineCloud, Protocol):
    """What the coordinator needs of the cloud side (tools/line_setup.py, line_remote.py)."""

    async def blessed_devices(self, device_ids: list[str]) -> set[str]:
        """Those of ``device_ids`` the cloud has blessed."""
        ...


@dataclass
class _Worker:
    shard: int
    assign: lw.Assign | None = None
    duts: list[int] = field(default_factory=list)
    """Only these DUTs of the shard (empty: all): a worker started in a cut-off one's place."""
    cut: bool = False
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


async def run_sharded(config: LineConfig, cloud: ShardCloud, observer: LineObserver,
                      workers: int, *, remote: int = 0, run: str | None = None,
                      line_broker: str | None = None, join_timeout: float | None = None,
                      announce: bool = False, piped: bool = False) -> LineResult:
    """Run ``config`` on ``workers`` local worker processes and ``remote`` joining ones
    (at most one shard per fixture). ``line_broker``: the coordinator's line account
    (default: line account 0 of the broker this process started). ``piped``: the
    local workers talk over pipes, not the broker (no remote workers then)."""
    if piped and remote:
        raise LineWorkSetupError("remote workers join over the broker, not over pipes")
    shards = max(1, min(workers + remote, config.fixtures))
    run = lw.check_run(run or new_run_name())
    if announce and remote:
        print(f"line: waiting for {remote} worker(s): impfactory line worker --run {run} "
              f"--broker mqtt://{brokersec.LINE_USER}-N:PASSWORD@HOST:PORT", file=sys.stderr)
    timeout = join_timeout if join_timeout is not None else (
        JOIN_TIMEOUT if not remote else 600.0)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="impline-notes-") as notes:
        try:
            channel: Any
            if piped:
                channel = hub = PipeHub(run)
            else:
                url = line_broker or worker_url(cloud.broker_url, 0)
                channel, hub = LineBus(BusAddress.parse(url), run), None
            async with channel:
                await channel.subscribe(lw.coordinator_filter(run))
                spawner = _Spawner(run, cloud.broker_url, hub, Path(notes), procs)
                local = [secrets.token_hex(8) for _ in range(min(workers, shards))]
                for seat, worker in enumerate(local):
                    await spawner.spawn(worker, seat + 1)
                coordinator = _Coordinator(config, cloud, observer, channel, shards, spawner)
                return await coordinator.run(timeout)
        finally:
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=5)


class _Spawner:
    """Starts local workers: the same command a remote machine runs (a broker URL travels
    in the environment, not the command line other users can read), each with its
    stuck note, over the broker (line account ``seat``) or pipes."""

    def __init__(self, run: str, broker_url: str, hub: PipeHub | None, notes: Path,
                 procs: list[subprocess.Popen[bytes]]) -> None:
        self.run = run
        self.broker_url = broker_url
        self.hub = hub
        self.notes = notes
        self.procs = procs
        self.proc_of: dict[str, subprocess.Popen[bytes]] = {}
        self.seat_of: dict[str, int] = {}

    def note(self, worker: str) -> Path:
        return self.notes / worker

    async def spawn(self, worker: str, seat: int) -> None:
        note = self.note(worker)
        note.write_bytes(bytes(NOTE_SIZE))
        env = {**os.environ, STUCK_NOTE_ENV: str(note)}
        fds: tuple[int, ...] = ()
        ours = None
        if self.hub is not None:
            theirs, ours = self.hub.pipes()
            env[LINE_PIPE_ENV] = f"{theirs[0]},{theirs[1]}"
            fds = theirs
        else:
            env[LINE_BROKER_ENV] = worker_url(self.broker_url, seat)
        try:
            proc = subprocess.Popen([sys.executable, "-m", "impfactory.tools.cli", "line",
                                     "worker", "--run", self.run, "--worker-id", worker,
                                     "--quiet"], env=env, stdin=subprocess.DEVNULL,
                                    pass_fds=fds)
        finally:
            for fd in fds:
                os.close(fd)
        self.procs.append(proc)
        self.proc_of[worker] = proc
        self.seat_of[worker] = seat
        if self.hub is not None and ours is not None:
            await self.hub.add(worker, ours)


class _Coordinator:
    def __init__(self, config: LineConfig, cloud: ShardCloud, observer: LineObserver,
                 bus: WorkChannel, shards: int, spawner: _Spawner) -> None:
        self.config = config
        self.cloud = cloud
        self.observer = observer
        self.bus = bus
        self.shards = shards
        self.spawner = spawner
        self.local = set(spawner.proc_of)
        """Worker IDs of the local workers: their shards are kept for them."""
        self.proc_of = spawner.proc_of
        self.workers: dict[str, _Worker] = {}
        self.records: dict[int, DutRecord] = {}
        self.all_joined = asyncio.get_running_loop().create_future()
        self.tasks: set[asyncio.Task[None]] = set()
        self.started = 0.0

    async def run(self, join_timeout: float) -> LineResult:
        listening = asyncio.ensure_future(self._listen())
        watching = asyncio.ensure_future(self._watch_processes())
        lost = 0
        try:
            await self._wait(asyncio.wait_for(asyncio.shield(self.all_joined), join_timeout),
                             listening, watching,
                             f"{self.shards} workers did not join within {join_timeout:.0f} s")
            self.started = time.perf_counter()
            for worker_id, worker in self.workers.items():
                worker.assign = self._assignment(worker.shard)
                await self.bus.send(worker_id, worker.assign)
            counted: set[str] = set()
            while len(counted) < len(self.workers):  # a cut-off worker adds its successor
                waiting = {w: self.workers[w] for w in self.workers if w not in counted}
                done = await self._wait(
                    asyncio.gather(*(w.finished for w in waiting.values())),
                    listening, watching, "")
                lost += sum(done)
                counted.update(waiting)
        finally:
            for task in (listening, watching, *self.tasks):
                task.cancel()
            await asyncio.gather(listening, watching, *self.tasks, return_exceptions=True)
        wall = time.perf_counter() - self.started
        records = sorted(self.records.values(), key=lambda r: r.index)
        return LineResult(records, LineSummary.of(records, wall, fixtures=self.config.fixtures,
                                                  seed=self.config.seed), lost)

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

    def _assignment(self, shard: int, duts: list[int] | None = None) -> lw.Assign:
        """Shard ``shard``'s assignment (``duts``: only these, and only their fixtures)."""
        fixtures = self.config.fixtures
        mine = [k for k in range(fixtures) if k % self.shards == shard
                and (not duts or any(i % fixtures == k for i in duts))]
        cloud = self.cloud
        info = CloudInfo(cloud.broker_url, cloud.wifi_ssid, cloud.wifi_password,
                         cloud.impos_current, cloud.impos_outdated,
                         tuple(cloud.fixture_enrolment() for _ in mine),
                         cloud.first_dut_serial)
        return lw.Assign(shard=shard, shards=self.shards, config=config_to_dict(self.config),
                         cloud=info.to_dict(), duts=list(duts or []))

    async def _watch_processes(self) -> None:
        """A local worker that exits before finishing fails the run at once, unless the
        kernel ended it for a stuck callback (then its shard is cut off)."""
        while True:
            for worker_id, proc in list(self.proc_of.items()):
                code = proc.poll()
                worker = self.workers.get(worker_id)
                if code == -signal.SIGALRM and worker is not None:
                    self._cut(worker_id, worker)
                elif code is not None and code != 0 and not (
                        worker is not None and (worker.finished.done() or worker.cut)):
                    raise LineError(f"local line worker exited with status {code}")
            await asyncio.sleep(0.2)

    def _cut(self, worker_id: str, worker: _Worker) -> None:
        if not worker.cut and not worker.finished.done():
            worker.cut = True
            log.warning("line worker %d cut off: a Python callback ran %g s without "
                        "returning (stuck in a call into C)", worker.shard, STUCK_EXIT_S)
            self._spawn_task(self._recover(worker_id, worker))

    async def _recover(self, worker_id: str, worker: _Worker) -> None:
        """Fail the stuck device's DUT(s), record what the cloud blessed, and have a
        worker in the cut-off one's place run the rest (see the module docstring). The
        successor starts at once, its imports overlapping the wait for the cloud."""
        successor = secrets.token_hex(8)
        self.local.add(successor)
        heir = self.workers[successor] = _Worker(worker.shard)
        try:
            await self.spawner.spawn(successor, self.spawner.seat_of[worker_id])
            await self._reassign(worker_id, worker, successor, heir)
        except Exception as err:  # the cloud cannot say, the worker cannot start: no guess
            if not heir.finished.done():
                heir.finished.set_result(0)
            proc = self.proc_of.get(successor)
            if proc is not None:
                proc.terminate()
            self._fail(worker, f"cut off for a stuck callback, and its DUTs could not be "
                               f"accounted for: {type(err).__name__}: {err}")
        if not worker.finished.done():
            worker.finished.set_result(0)

    async def _reassign(self, worker_id: str, worker: _Worker, successor: str,
                        heir: _Worker) -> None:
        await asyncio.sleep(SETTLE_S)
        config, first = self.config, self.cloud.first_dut_serial
        left = {dut_device_id(config, first, i): i
                for i in worker.duts or shard_duts(config, (worker.shard, self.shards))
                if i not in self.records}
        blessed = await self.cloud.blessed_devices(list(left)) if left else set()
        for dut_id in blessed & set(left):  # its ``done`` went down with the worker
            i = left.pop(dut_id)
            self._record(DutRecord(
                dut_id, fixture_device_id(config, i % config.fixtures), i,
                final_state=BLESSED, events=[DutEvent(
                    0.0, "cut_off", "blessed by the cloud; its line worker was cut off "
                    "before it reported")]))
        stuck = read_stuck_note(str(self.spawner.note(worker_id)))
        fixtures = {fixture_device_id(config, k): k for k in range(config.fixtures)}
        if stuck in left:
            failing = [left[stuck]]
        elif stuck in fixtures:
            failing = [i for i in left.values() if i % config.fixtures == fixtures[stuck]]
        elif stuck is None:  # nothing says which device hung: every DUT the worker had left
            failing = list(left.values())
        else:
            failing = []  # a blessed DUT's application: recorded blessed above
        for i in failing:
            self._record(failed_record(config, first, i))
        rerun = sorted(i for i in left.values() if i not in failing)
        if rerun:
            log.warning("line worker %d: %d DUT(s) run again by a new worker",
                        worker.shard, len(rerun))
            heir.duts = rerun
            heir.assign = self._assignment(worker.shard, rerun)
            self._send(successor, heir.assign)  # and again at each join
        else:
            heir.finished.set_result(0)
            self.proc_of[successor].terminate()  # nothing left for it: ended unheard

    def _record(self, record: DutRecord) -> None:
        if record.index not in self.records:
            self.records[record.index] = record
            self.observer.done(record)

    async def _failed(self, worker_id: str, worker: _Worker, error: str) -> None:
        """A ``failed`` (or the will) of a local worker: its exit status says whether it
        was cut off for a stuck callback or failed the run."""
        proc = self.proc_of[worker_id]
        for _ in range(50):
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        if proc.poll() == -signal.SIGALRM:
            self._cut(worker_id, worker)
        elif not worker.cut:
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
        if isinstance(msg, lw.Stage):
            self.observer.stage(msg.index, msg.stage)
        elif isinstance(msg, lw.Done):
            try:
                record = DutRecord.from_dict(msg.record)
            except RecordError as err:
                self._fail(worker, f"sent a bad record: {err}")
                return
            self._record(record)  # once: QoS 1 may deliver twice
        elif isinstance(msg, lw.Adopt):
            self._spawn_task(self._adopt(worker_id, msg.device_id))
        elif isinstance(msg, lw.ActivityRequest):
            self._spawn_task(self._activity(worker_id, msg.device_id, msg.messages))
        elif isinstance(msg, lw.Finished):
            if not worker.finished.done():
                worker.finished.set_result(msg.lost_presses)
        elif isinstance(msg, lw.Failed):
            if worker_id in self.proc_of:
                self._spawn_task(self._failed(worker_id, worker, msg.error))
            else:
                self._fail(worker, msg.error)

    def _fail(self, worker: _Worker, error: str) -> None:
        if not worker.finished.done():
            worker.finished.set_exception(LineError(f"line worker {worker.shard}: {error}"))

    def _join(self, worker_id: str, worker: _Worker | None) -> None:
        if worker is None:
            remote_taken = sum(1 for w in self.workers if w not in self.local)
            if worker_id not in self.local and remote_taken >= self.shards - len(self.local):
                self._send(worker_id, lw.Dismiss(reason="the run has all its workers"))
                return
            worker = self.workers[worker_id] = _Worker(len(self.workers))
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

    async def _activity(self, worker_id: str, device_id: str, messages: int) -> None:
        ask = getattr(self.cloud, "agent_activity", None)  # a remote cloud cannot say
        entries = await ask(device_id, messages) if ask is not None else []
        await self.bus.send(worker_id, lw.Activity(device_id=device_id, entries=entries))
