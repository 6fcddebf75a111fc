"""One device's agent: its Squirrel VM, its handlers, its timers, its requests in flight.

An ``Agent`` runs one deployment's agent code for one device, on the cloud's
loop thread. Everything that calls into its code (the top level, a message from
the device, a request at its URL, a timer, an HTTP answer) is a *call*, queued
and run in order, one at a time::

    call(fn, args) -> queue -> pump: one greenlet per call -> vm.call(fn, *args)
                                          |
        a native that must wait (sendsync) switches back to the loop with a
        coroutine; the loop runs it, other agents run meanwhile, and the answer
        switches the greenlet back in: Squirrel sees a blocking call, the loop
        never blocks. While one call waits, this agent's later calls wait too.

Limits (``AgentLimits``), enforced by the VM (``impfactory.squirrel``): each call
may use ``callback_cpu_s`` seconds of CPU time (the watchdog reads the thread's
CPU clock; time spent waiting in ``sendsync`` is not counted), and the agent's
code may keep at most ``memory`` bytes allocated (``Vm.heap_bytes``: measured at
the process's allocator around every call, and inside calls by the watchdog;
see ``impfactory.squirrel.memory`` for exactly what is counted). A call over
either limit is stopped, logged as an agent error, and the agent stops until it
is restarted (a device or group restart, or new code), as a device's code does.

Errors go to the device's log as impCloud writes them, typed ``agent.error``::

    ERROR: the index 'foo' does not exist
    ERROR:   in onResult agent.nut:12
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import greenlet

from impfactory.clock import TimerHandle
from impfactory.devicecode import is_python_code, library_dirs
from impfactory.squirrel import (
    LibraryError,
    SqFunction,
    SquirrelCompileError,
    SquirrelError,
    Vm,
    format_error,
)
from impfactory.squirrel import require as sq_require

if TYPE_CHECKING:  # pragma: no cover
    from impfactory.cloud.agents.host import Agents

log = logging.getLogger(__name__)

Then = Callable[[bool], None]
AGENT_FILE = "agent.nut"
LOG = "agent.log"
ERROR = "agent.error"


@dataclass(frozen=True)
class AgentLimits:
    """What one agent may use. Where impCloud documents a number it is used; the rest
    are ours, chosen so one agent can never stall or exhaust the cloud."""

    callback_cpu_s: float = 1.0
    """CPU seconds one call into the agent's code may run (ours)."""
    memory: int = 2 << 20
    """Bytes the agent's code may keep allocated (ours; see the module doc)."""
    http_timeout_s: float = 60.0
    """Deadline of an outbound request that names none (ours)."""
    response_timeout_s: float = 60.0
    """How long a request at the agent's URL waits for ``httpresponse.send`` (ours);
    then it is answered 504."""
    requests_in_flight: int = 64
    """Outbound requests one agent may have waiting at once (ours); more fail at once."""
    save_bytes: int = 64 * 1024
    """``server.save``: the table serialised as JSON may be at most this (impCloud)."""
    offline_lifetime_s: float = 30 * 86400.0
    """An agent whose device stays offline this long is stopped (impCloud: 30 days);
    it starts again when the device returns or its URL is requested."""
    activity: int = 200
    """Entries of agent activity kept per device for reports (ours)."""
    activity_devices: int = 100_000
    """Devices whose agent activity is kept (the most recent; ours)."""


class Agent:
    """The agent of ``device_id`` running ``code`` (deployment ``deployment_id``)."""

    def __init__(self, host: Agents, device_id: str, agent_id: str, deployment_id: str,
                 code: str, config: dict[str, Any]) -> None:
        self.host = host
        self.device_id = device_id
        self.agent_id = agent_id
        self.deployment_id = deployment_id
        self.code = code
        self.config = config
        self.limits = host.limits
        self.vm: Vm | None = None
        self.api: Any = None
        self.running = False
        self.started_at = host.clock.now()
        self.device_online = False
        self.handlers: dict[str, SqFunction] = {}
        self.request_handler: SqFunction | None = None
        self.on_connect: SqFunction | None = None
        self.on_disconnect: SqFunction | None = None
        self.in_flight = 0
        self.start_s = 0.0  # wall seconds the start took (VM, API, compile, top level)
        self._timers: dict[int, TimerHandle] = {}
        self._next_timer = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._queue: deque[tuple[SqFunction, tuple[Any, ...], Then | None]] = deque()
        self._current: greenlet.greenlet | None = None
        self._then: Then | None = None
        self._waiting: asyncio.Future[Any] | None = None
        self._pumping = False
        self._pending_responses: set[Any] = set()

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> bool:
        """Build the VM, install the API, run the top level; False when the code does not
        compile or its top level fails (logged; the agent then stays stopped or runs
        what its top level registered, as impCloud does)."""
        began = time.perf_counter()
        from impfactory.cloud.agents.api import AgentApi  # the API pulls in the VM

        if is_python_code(self.code):
            self.error("ERROR: agent code must be Squirrel (Python is for device code only)")
            return False
        try:
            resolved = sq_require.resolve(self.code, AGENT_FILE, library_dirs())
        except LibraryError as err:
            self.error(f"ERROR: agent code does not compile: {err}")
            return False
        self.vm = Vm(time_limit_s=self.limits.callback_cpu_s, environment="agent",
                     timer=time.thread_time, memory_limit=self.limits.memory,
                     output=self._output)
        self.api = AgentApi(self)
        self.api.install()
        try:
            main = self.vm.compile(resolved.source, AGENT_FILE, resolved.line_map)
        except SquirrelCompileError as err:
            self.error(f"ERROR: agent code does not compile: {err}")
            self._close_vm()
            return False
        self.running = True
        self.call(main)
        self.start_s = time.perf_counter() - began
        return self.running

    def stop(self, *, cancel_requests: bool = False) -> None:
        """Stop for good: timers, queued calls and a call waiting in ``sendsync`` are
        dropped, pending requests at the agent's URL answered 503, the VM closed.
        Requests already sent by ``sendasync`` complete (what they do at the other end
        is done) but their callbacks are not called; ``cancel_requests`` cancels them
        too (the cloud is stopping)."""
        if not self.running and self.vm is None:
            return
        self.running = False
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._queue.clear()
        if cancel_requests:
            for task in list(self._tasks):
                task.cancel()
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
        for response in list(self._pending_responses):
            response.abandon(503, "the agent was stopped")
        self._pending_responses.clear()
        current = self._current
        if current is not None and not current.dead and self.vm is not None:
            # suspended in a native: it must not go on; it stops at its next line
            self.vm.stop_soon()
            self._current = None
            with contextlib.suppress(greenlet.GreenletExit):  # only if already unwinding
                current.switch(None)
        self._close_vm()

    def _close_vm(self) -> None:
        vm, self.vm = self.vm, None
        self.handlers.clear()
        self.request_handler = self.on_connect = self.on_disconnect = None
        if vm is not None:
            vm.close()

    @property
    def memory(self) -> int:
        return self.vm.heap_bytes if self.vm is not None else 0

    @property
    def busy(self) -> bool:
        """A call is running or waiting, or requests are in flight, or calls are queued."""
        return bool(self._current is not None or self._queue or self._tasks)

    # --- calling into the agent's code ----------------------------------------------------

    def call(self, fn: SqFunction, *args: Any) -> None:
        """Run ``fn(*args)`` in the agent's VM after everything queued before it."""
        self.call_then(fn, args, None)

    def call_then(self, fn: SqFunction, args: tuple[Any, ...], then: Then | None) -> None:
        """``call``, then ``then(ok)`` once it has run (``ok``: it raised no error)."""
        if not self.running:
            if then is not None:
                then(False)
            return
        self._queue.append((fn, args, then))
        if greenlet.getcurrent() is self.host.main_greenlet:
            self._pump()
        else:  # called from inside an agent's call: run it from the loop, in order
            self.host.loop.call_soon(self._pump)

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._queue and self._current is None and self.running:
                fn, args, then = self._queue.popleft()
                g = greenlet.greenlet(self._entry, parent=self.host.main_greenlet)
                self._current, self._then = g, then
                self._after(g, g.switch(fn, args))
        finally:
            self._pumping = False
        if not self.busy:
            self.host.idle_changed(self)

    def _after(self, g: greenlet.greenlet, out: Any) -> None:
        if g.dead or self._current is not g:
            if self._current is g:
                self._current = None
                then, self._then = self._then, None
                if then is not None:
                    then(bool(out))
            return
        _, coro = out  # ("await", coroutine) from ``wait``
        task = self.host.loop.create_task(coro)
        self._waiting = task
        task.add_done_callback(functools.partial(self._resume, g))

    def _resume(self, g: greenlet.greenlet, task: asyncio.Future[Any]) -> None:
        switch = g.switch  # (bound first: the identity test below narrows g to Optional)
        if self._current is not g:
            return
        self._waiting = None
        value = None if task.cancelled() or task.exception() is not None else task.result()
        self._after(g, switch(value))
        self._pump()

    def _entry(self, fn: SqFunction, args: tuple[Any, ...]) -> bool:
        vm = self.vm
        if vm is None:
            return False
        ok = False
        try:
            vm.call(fn, *args)
            ok = True
        except SquirrelError as err:
            if self.running:  # (a call cut short by the agent's own stop is no error)
                self._failed(err)
        except Exception as err:  # a bug in the host: the agent carries on
            log.exception("agent %s: host failure", self.agent_id)
            self.error(f"ERROR: impCloud: {type(err).__name__}: {err}")
        if vm.dead and self.running:
            self.error(f"ERROR: agent {self.agent_id} is stopped until it is restarted "
                       "or gets new code")
            self.host.loop.call_soon(self.host.stopped_itself, self)
        return ok

    def wait(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """From a native: suspend this call until ``coro`` (run on the loop) finishes;
        its result, or ``None`` if it failed or the agent stopped."""
        g = greenlet.getcurrent()
        vm = self.vm
        if g is not self._current or vm is None:
            coro.close()
            raise SquirrelError("this call cannot wait here")
        with vm.away():
            return self.host.main_greenlet.switch(("await", coro))

    def _failed(self, err: SquirrelError) -> None:
        for line in format_error(err):
            self.error(f"ERROR: {line}")

    # --- timers and tasks ---------------------------------------------------------------------

    def later(self, seconds: float, fn: SqFunction) -> int:
        self._next_timer += 1
        key = self._next_timer

        def fire() -> None:
            self._timers.pop(key, None)
            self.call(fn)

        self._timers[key] = self.host.clock.call_later(max(0.0, seconds), fire)
        return key

    def cancel(self, key: int) -> None:
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` on the loop for this agent (cancelled when it stops)."""
        task = self.host.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self.busy:
            self.host.idle_changed(self)

    def pending(self, response: Any, waiting: bool) -> None:
        """Track a request at the agent's URL that waits for ``httpresponse.send``."""
        if waiting:
            self._pending_responses.add(response)
        else:
            self._pending_responses.discard(response)

    # --- output -------------------------------------------------------------------------------

    def _output(self, kind: str, text: str) -> None:
        for line in text.rstrip("\n").split("\n"):
            if kind == "error":
                self.error(line)
            else:
                self.log(line)

    def log(self, text: str) -> None:
        self.host.log(self.device_id, text, LOG)

    def error(self, text: str) -> None:
        self.host.log(self.device_id, text, ERROR)

    def note(self, kind: str, detail: str, status: int | None = None, **extra: Any) -> None:
        """One entry of activity (for line reports and ``Agents.activity``)."""
        self.host.note(self.device_id, kind, detail, status, **extra)

    def when(self) -> float:
        """Seconds since the agent started, on the host's clock."""
        return self.host.clock.now() - self.started_at

    def cpu_s(self) -> float:
        return self.vm.stats.busy_s if self.vm is not None else 0.0
