"""One test session: one test file's build on a fresh emulated imp, its tests run.

The session owns a ``VirtualClock``: timers, ``imp.sleep``, the sensor's
conversions and every timeout run on it, so a 30 s timeout costs no wall time
and a run is the same every time. It drives the run the way impUnit's runner
does, from outside the VM::

    start both sides                  the agent (if the build has agent code), then
                                      the device; messages cross on the clock
    start the build (top level)       a compile error or a throw ends the session
    after the startup delay (2 s)     discover ImpTestCase subclasses in the root table
    for each case, by name            create it; setUp(), each test* by name, tearDown()
      call the method                 a throw fails it (file and line from the stack)
      a returned value                passes (shown after "Success: ")
      a returned promise              passes/fails when it settles, or times out
    stopOnFail                        the first failure ends the session

Every method runs as a callback of the device code (``target.later``), so it
waits while the code sleeps (``imp.sleep``) exactly like an imp's own callbacks.
A failed assertion reports where it was made (the framework calls the
``failed`` native, which reads the VM's stack); a method that throws reports the
innermost frame in the user's files. impt's tool-side watchdog is kept, on the
virtual clock: no progress for ``timeout + 5`` s ends the session ("Testing
timeout"); so is a session with nothing left to run ("stalled").
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from impfactory.clock import TimerHandle, VirtualClock
from impfactory.firmware.errors import DeviceCodeError
from impfactory.firmware.imptest.agent_target import (
    AgentCodeError,
    AgentFactory,
    AgentSide,
    stand_in,
)
from impfactory.firmware.imptest.build import Build, is_framework_file
from impfactory.firmware.imptest.config import DEFAULT_TIMEOUT_S, Selection
from impfactory.firmware.imptest.device_target import (
    DEFAULT_BOARD,
    DeviceTarget,
    emulated_device_id,
)
from impfactory.firmware.imptest.render import as_json, as_message
from impfactory.firmware.imptest.results import Location, SessionResult, StepResult
from impfactory.firmware.runtime import CALLBACK_LIMIT_S
from impfactory.squirrel import (
    Frame,
    SqObject,
    SquirrelCompileError,
    SquirrelError,
    SquirrelRuntimeError,
    SquirrelThrow,
    SquirrelTimeout,
    SquirrelVmStopped,
    Vm,
)

STARTUP_DELAY_S = 2.0  # impt waits this long before it starts the tests
WATCHDOG_EXTRA_S = 5.0  # impt's tool-side allowance beyond the test timeout
MAX_TIMERS_AT_ONE_TIME = 100_000  # timers firing without the clock moving: a runaway


class Listener:
    """Who hears a session as it runs (the impt-style printer); each event does
    nothing here, so a listener overrides only what it wants."""

    def session_started(self, session: SessionResult) -> None:
        """The session's sides are built; its code is about to start."""

    def step_started(self, name: str) -> None:
        """``Case::method()`` is about to run."""

    def info(self, text: str) -> None:
        """``this.info()``, as JSON."""

    def step_finished(self, step: StepResult) -> None:
        """A method passed or failed."""

    def runtime_error(self, side: str, text: str) -> None:
        """An error line of the ``device`` or ``agent`` log."""

    def notice(self, text: str) -> None:
        """Something the session did that impt reports as info."""

    def session_error(self, text: str) -> None:
        """The session cannot run (on) its tests."""

    def session_finished(self, session: SessionResult) -> None:
        """The session is over."""


@dataclass(frozen=True)
class SessionOptions:
    """How sessions run (``.impt.test`` settings and the command line's)."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    stop_on_fail: bool = False
    allow_disconnect: bool = False
    board: str = DEFAULT_BOARD
    faults: tuple[str, ...] = ()
    lib_dirs: tuple[str, ...] = ()
    startup_delay_s: float = STARTUP_DELAY_S
    time_limit_s: float = CALLBACK_LIMIT_S  # wall seconds one call into the device code may run


@dataclass
class _Plan:
    case: str
    method: str


class _SessionOver(Exception):
    """Internal: the session cannot go on."""


def session_name(test_name: str) -> str:
    """A session's name: its test file's name without ``.nut`` (impt draws random words)."""
    name = test_name.rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".nut") else name


def user_location(stack: list[Frame]) -> Location | None:
    """The innermost frame in the user's code (not the framework's)."""
    for frame in stack:
        if not is_framework_file(frame.file):
            return Location(frame.file, frame.line)
    return None


class Session:
    """Runs one build (see the module doc); ``run()`` returns its result."""

    def __init__(self, build: Build, options: SessionOptions | None = None,
                 selection: Selection | None = None, listener: Listener | None = None,
                 timer: Callable[[], float] = time.monotonic,
                 agent_factory: AgentFactory | None = None) -> None:
        self.build = build
        self.agent_factory = agent_factory or stand_in
        self.options = options or SessionOptions()
        self.selection = selection or Selection()
        self.listener: Listener = listener or Listener()
        self.timer = timer
        self.clock = VirtualClock()
        test = build.test
        self.result = SessionResult(test.name, test.kind, session_name(test.name),
                                    partner=test.partner_name, board=self.options.board)
        self.target: DeviceTarget | AgentSide | None = None  # the side the tests run on
        self._sides: list[DeviceTarget | AgentSide] = []
        self._plan: list[_Plan] = []
        self._instances: dict[str, SqObject] = {}
        self._counted: dict[str, int] = {}
        self._step: StepResult | None = None
        self._token = 0
        self._pending: int | None = None
        self._timeout: TimerHandle | None = None
        self._watchdog: TimerHandle | None = None
        self._started_at = 0.0
        self._last_failure: tuple[str, Location | None] | None = None
        self._done = False
        self._glue: dict[str, Any] = {}

    # --- running ----------------------------------------------------------------------

    def run(self) -> SessionResult:
        started = self.timer()
        result = self.result
        try:
            with contextlib.suppress(_SessionOver):
                self._start()
                self._loop()
        finally:
            for side in self._sides:
                side.close()
            result.device_s = self.clock.now()
            result.wall_s = self.timer() - started
        self.listener.session_finished(result)
        return result

    def _start(self) -> None:
        """Both sides up (the agent first, as impCloud starts it), the tests scheduled."""
        build, options, result = self.build, self.options, self.result
        kind = build.test.kind
        device = agent = None
        if kind == "device" or not build.device.empty:
            device = DeviceTarget(self.clock, options.board, options.faults, options.lib_dirs,
                                  lambda m, e: self._log("device", m, e), options.time_limit_s)
            device.on_disconnect = self._guarded(self._disconnected)
            self._sides.append(device)
        if kind == "agent" or not build.agent.empty:
            agent = self.agent_factory(self.clock, emulated_device_id(), options.lib_dirs,
                                       lambda m, e: self._log("agent", m, e))
            self._sides.append(agent)
        if device is not None and agent is not None:
            device.peer, agent.peer = agent.deliver, device.deliver
        self.target = device if kind == "device" else agent
        assert self.target is not None
        result.device_id = emulated_device_id()
        result.sides = [side.kind for side in self._sides]
        self.listener.session_started(result)
        natives: dict[str, Callable[..., Any]] = {
            "info": self._info, "failed": self._failed, "settled": self._settled,
            "command": self._command}
        for side, code in ((agent, build.agent), (device, build.device)):
            if side is None:
                continue
            try:
                started = side.start(code.parts, natives if side is self.target else {})
            except (DeviceCodeError, AgentCodeError) as err:
                cause = err.__cause__
                if isinstance(cause, SquirrelCompileError):
                    result.error_location = Location(cause.file, cause.line)
                self._end(str(err))
            if not started and side is self.target:
                self._end(f"the build threw before its tests could start (see the {kind} log)")
        self._arm_watchdog()
        self.target.later(options.startup_delay_s, self._guarded(self._begin))

    def _loop(self) -> None:
        clock = self.clock
        at, count = clock.now(), 0
        while not self._done:
            if not clock.step():
                waiting = f" while {self._step.name} was running" if self._step else ""
                self._end(f"the session stalled{waiting}: the code has nothing left to run")
            if clock.now() == at:
                count += 1
                if count > MAX_TIMERS_AT_ONE_TIME:
                    self._end(f"timers fired {count} times without time passing "
                              "(imp.wakeup(0, ...) calling itself?)")
            else:
                at, count = clock.now(), 0

    def _guarded(self, fn: Callable[[], None]) -> Callable[[], None]:
        """``fn`` for a timer: the session's own end is not the device code's error."""

        def run() -> None:
            if self._done:
                return
            with contextlib.suppress(_SessionOver):
                fn()

        return run

    # --- the plan ---------------------------------------------------------------------

    @property
    def vm(self) -> Vm:
        assert self.target is not None
        return self.target.vm

    def _begin(self) -> None:
        glue = self.vm.get_global("__imptest")
        self._glue = dict(glue) if isinstance(glue, dict) else {}
        found = self._call("discover")
        for case in sorted(found or {}):
            info = found[case]
            if not self.selection.wants(case):
                continue
            tests = [t for t in info.get("tests", []) if self.selection.wants(case, t)]
            if not tests and self.selection.method:
                continue
            methods = (["setUp"] if info.get("setUp") else []) + tests \
                + (["tearDown"] if info.get("tearDown") else [])
            self._plan += [_Plan(case, m) for m in methods]
        if not self._plan and (self.selection.case or self.selection.method):
            self._skip("no test case or method here matches --tests")
        self._progress()
        self._next()

    def _call(self, name: str, *args: Any) -> Any:
        """Call the framework's glue; the VM stopped means the session is over."""
        fn = self._glue.get(name)
        if fn is None:
            self._end(f"the test framework is missing (__imptest.{name}): did the build "
                      "replace the root table's __imptest?")
        try:
            return self.vm.call(fn, *args)
        except (SquirrelTimeout, SquirrelVmStopped) as err:
            self._end(str(err))

    def _next(self) -> None:
        if not self._plan:
            self._finish()
        step = self._plan.pop(0)
        if step.case not in self._instances:
            try:
                self._instances[step.case] = self.vm.call(self._glue["create"], step.case,
                                                          self.result.name)
                self._counted[step.case] = 0
            except SquirrelRuntimeError as err:
                self._step = StepResult(step.case, step.method)
                self.listener.step_started(self._step.name)
                self._plan = [p for p in self._plan if p.case != step.case]
                self._fail(f"{step.case} could not be created: {err.message}",
                           user_location(err.stack))
                return
        self._run(step)

    def _run(self, plan: _Plan) -> None:
        step = self._step = StepResult(plan.case, plan.method)
        self.listener.step_started(step.name)
        self._progress()
        self._token += 1
        self._last_failure = None
        assert self.target is not None
        self._started_at = self.target.now()
        instance = self._instances[plan.case]
        try:
            out = self.vm.call(self._glue["step"], instance, plan.method, self._token)
        except (SquirrelTimeout, SquirrelVmStopped) as err:
            self._fail(err.message if isinstance(err, SquirrelTimeout) else str(err),
                       user_location(getattr(err, "stack", [])), fatal=True)
            return
        except SquirrelRuntimeError as err:
            self._fail(err.message, self._where(err.message, err.stack),
                       fatal=self.target.dead)
            return
        except SquirrelError as err:
            self._fail(str(err), None)
            return
        if out.get("async"):
            token = self._pending = self._token
            self._timeout = self.clock.call_later(
                self.options.timeout_s, self._guarded(lambda: self._timed_out(token)))
            return
        took = self.target.now() - self._started_at
        if took > self.options.timeout_s:
            self._fail(f"Test took {took:g}s, longer than timeout of "
                       f"{self.options.timeout_s:g}s", None)
            return
        self._pass(as_message(out.get("value")), out.get("assertions"))

    # --- how a step ends ------------------------------------------------------------------

    def _assertions_now(self, case: str) -> int | None:
        instance = self._instances.get(case)
        if instance is None:  # it could not be created
            return None
        try:
            count = self.vm.call(self._glue["assertions"], instance)
        except SquirrelError:
            return None
        return count if isinstance(count, int) else None

    def _count(self, step: StepResult, now: int | None) -> None:
        if now is None:
            now = self._assertions_now(step.case)
        if isinstance(now, int):
            step.assertions = max(0, now - self._counted.get(step.case, 0))
            self._counted[step.case] = now

    def _pass(self, message: str | None, assertions: int | None = None) -> None:
        step = self._step
        assert step is not None and self.target is not None
        step.passed = True
        step.message = message
        self._count(step, assertions)
        self._close_step()

    def _fail(self, message: str, location: Location | None, fatal: bool = False) -> None:
        step = self._step
        assert step is not None and self.target is not None
        step.passed = False
        step.message = message
        step.location = location
        if not fatal:
            self._count(step, None)
        self._close_step(schedule=not fatal)
        if fatal:
            self._end(f"{message}: no more tests can run in this session")
        if self.options.stop_on_fail:
            self.result.stopped = True
            self._finish()

    def _close_step(self, schedule: bool = True) -> None:
        step = self._step
        assert step is not None and self.target is not None
        step.device_s = self.target.now() - self._started_at
        self.result.steps.append(step)
        self.listener.step_finished(step)
        self._step = None
        self._pending = None
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        self._progress()
        if schedule:
            self._schedule_next()

    def _schedule_next(self) -> None:
        if self._done or self.target is None:
            return
        if self.target.dead:
            self._end(f"the {self.target.kind} code was stopped (see the {self.target.kind} "
                      "log): no more tests can run in this session")
        self.target.later(0.0, self._guarded(self._next))

    def _where(self, message: str, stack: list[Frame]) -> Location | None:
        noted = self._last_failure
        if noted is not None and noted[0] == message and noted[1] is not None:
            return noted[1]
        return user_location(stack)

    def _timed_out(self, token: int) -> None:
        if self._pending != token or self._step is None:
            return
        self._fail(f"Test timed out after {self.options.timeout_s:g}s", None)

    def _settle(self, token: int, ok: bool, value: Any) -> None:
        if self._pending != token or self._step is None:
            return
        if ok:
            self._pass(as_message(value))
        else:
            message = as_message(value)
            self._fail("null" if message is None else message,
                       self._where(message or "", []))

    # --- natives (called from Squirrel: they may not call Squirrel back) ------------------

    def _info(self, message: Any = "") -> None:
        text = as_json(message)
        if self._step is not None:
            self._step.info.append(text)
        self.listener.info(text)
        self._progress()

    def _failed(self, message: Any = "") -> Any:
        try:
            where = user_location(self.vm.stack())
        except SquirrelError:
            where = None
        self._last_failure = (message if isinstance(message, str) else as_json(message), where)
        return message

    def _settled(self, token: int, ok: bool, value: Any = None) -> None:
        if self._pending != token or self.target is None:
            return
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        self.target.later(0.0, self._guarded(lambda: self._settle(token, bool(ok), value)))

    def _command(self, command: Any = "") -> None:
        raise SquirrelThrow(f"runCommand({as_json(command)}): impfactory test does not run "
                            "host commands")

    def _disconnected(self) -> None:
        """The device code called server.disconnect(): impt's rule."""
        if self.options.allow_disconnect:
            self.listener.notice("Disconnected. Allowed by config.")
        else:
            self._end("Device disconnected")

    # --- the logs -----------------------------------------------------------------------------

    def _log(self, side: str, message: str, error: bool) -> None:
        line = ("ERROR: " if error and not message.startswith("ERROR") else "") + message
        (self.result.logs if side == "device" else self.result.agent_logs).append(line)
        if error:
            text = message[len("ERROR: "):] if message.startswith("ERROR: ") else message
            self.listener.runtime_error(side, text)

    # --- ending -----------------------------------------------------------------------------

    def _progress(self) -> None:
        self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        limit = self.options.timeout_s + WATCHDOG_EXTRA_S
        self._watchdog = self.clock.call_later(limit, self._guarded(
            lambda: self._end("Testing timeout")))

    def _skip(self, why: str) -> NoReturn:
        self.result.skipped = why
        self._done = True
        raise _SessionOver

    def _finish(self) -> NoReturn:
        self._done = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        raise _SessionOver

    def _end(self, error: str) -> NoReturn:
        """The session cannot go on: record why and stop."""
        if self.result.error is None:
            self.result.error = error
            self.listener.session_error(error)
        self._finish()
