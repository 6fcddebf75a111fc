"""The runtime for device code: event-driven, like Squirrel on an imp, in either language.

``Runtime`` owns what every language shares: timers on the injected clock, the
generation check, suspension while a factory BlinkUp flashes, and logging errors
the way impOS does. An ``Engine`` owns one language: ``SquirrelEngine``
(firmware/sq_engine.py, the real Squirrel 3.0.5 VM, what an imp runs) or
``PythonEngine`` below (Python source, for tests and quick experiments; chosen
when the code's first line is ``PYTHON_MARKER``). The rest of this docstring is
about the Python engine.

Device code runs once from top to bottom when deployed, registering callbacks
(timers through ``imp.wakeup``, ``agent.on``, ``server.onshutdown`` ...) and
returning. Every later call into it goes through ``Runtime.call``, which:

* drops calls meant for code that has since been replaced (a *generation* check),
* queues calls while the code is suspended (``server.factoryblinkup`` suspends
  Squirrel while the LED flashes),
* catches any exception, logs it as ``ERROR: ...`` with the line in the device
  code, and lets the impOS carry on, as an imp does.

Timers run on the injected clock, so thousands of devices share one asyncio loop
and a virtual clock runs a device's day in microseconds. Device code gets a small
set of builtins and may import only pure modules (``math``, ``json`` ...): there is
no ``open``, no ``time.sleep`` and no threads. That keeps honest code on the imp
API; it is no sandbox (``PythonEngine``). A callback that holds the loop longer
than ``BLOCKED_WARN_S`` is reported in the device log.

One device never stalls another: a real imp has its own CPU, here every device
shares one loop, so a callback (or top-level code) still running after
``CALLBACK_LIMIT_S`` wall seconds is stopped with ``DeviceCodeTimeout`` raised at
its next line, logged as a runtime error like any other; the impOS carries on.
This costs a line trace only while device code runs, and only in device-code
frames: every frame not running in a module's own globals (``sys.settrace``,
restored afterwards, so a debugger or coverage keeps working between callbacks).
A real imp would not stop such a loop; it would just go quiet. What a trace hook
cannot stop is one long call into C (``sum(range(10**9))``): it holds the GIL, so
nothing else in the process runs until it returns, and the callback is stopped at
its next line after that (docs/device.md says why nothing in process can do
better).
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import mmap
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Any, Protocol

from impfactory.clock import Clock, TimerHandle
from impfactory.devicecode import PYTHON_MARKER, is_python_code, mark_python
from impfactory.firmware.errors import DeviceCodeError

__all__ = ["PYTHON_MARKER", "Engine", "PythonEngine", "Runtime", "is_python_code",
           "mark_python"]

CODE_FILENAME = "device.nut.py"
ALLOWED_IMPORTS = frozenset(
    {"math", "json", "random", "struct", "hashlib", "binascii", "re", "collections",
     "itertools", "functools", "statistics", "string", "dataclasses", "enum", "typing"}
)
_SAFE_BUILTINS = {
    name: getattr(builtins, name)
    for name in dir(builtins)
    if name not in {"open", "exec", "eval", "compile", "input", "breakpoint", "exit", "quit",
                    "help", "__import__", "globals", "locals", "vars", "memoryview"}
    and not name.startswith("_")
}
_SAFE_BUILTINS["__build_class__"] = builtins.__build_class__
_SAFE_BUILTINS["__name__"] = "__device__"


def _guarded_import(name: str, globals_: Any = None, locals_: Any = None,
                    fromlist: Any = (), level: int = 0) -> Any:
    root = name.split(".")[0]
    if level != 0 or root not in ALLOWED_IMPORTS:
        raise ImportError(f"device code may not import {name!r}")
    return builtins.__import__(name, globals_, locals_, fromlist, level)


_SAFE_BUILTINS["__import__"] = _guarded_import

LogFn = Callable[[str, bool], None]
BLOCKED_WARN_S = 0.25
"""Wall seconds one callback may hold the shared loop before it is reported."""
CALLBACK_LIMIT_S = 2.0
"""Wall seconds after which a callback that has not returned is stopped."""
STUCK_EXIT_S: float | None = None
"""In a process that may be ended for it (a line worker, fixture/shard.py sets it):
wall seconds after which a Python callback still running ends the process. The
trace hook stops Python code at ``CALLBACK_LIMIT_S``; only a call into C (which
holds the GIL, so no Python of this process runs) is still there. The kernel ends
the process (``SIGALRM``, no handler: a ``setitimer`` armed around each callback),
and the line's coordinator fails the stuck DUT and goes on. ``None`` (one process
for the whole line): never."""
NOTE_SIZE = 64
"""Bytes of a stuck note: the ID of the device whose callback runs, NUL-padded."""
_NOTE: mmap.mmap | None = None
"""The stuck note of this process (``end_process_when_stuck``), or None."""


def end_process_when_stuck(seconds: float, note: str | None = None) -> None:
    """Set ``STUCK_EXIT_S`` for this process, with ``SIGALRM`` at its default action
    (ending the process): for processes whose end the caller handles.

    ``note``: a file of ``NOTE_SIZE`` bytes, shared with the caller, into which the
    ID of the device whose Python callback is about to run is written (one store
    into shared memory per callback): after the kernel ended the process, the file
    names the device that was stuck (``read_stuck_note``).
    """
    global STUCK_EXIT_S, _NOTE
    if not seconds > CALLBACK_LIMIT_S:
        raise ValueError(f"a stuck callback ends its process after more than "
                         f"{CALLBACK_LIMIT_S:g} s, not {seconds!r}")
    if note is not None:
        with open(note, "r+b") as f:
            f.truncate(NOTE_SIZE)
            _NOTE = mmap.mmap(f.fileno(), NOTE_SIZE)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    STUCK_EXIT_S = seconds


def read_stuck_note(note: str) -> str | None:
    """The device ID the stuck note ``note`` names (None: no Python callback ran)."""
    with open(note, "rb") as f:
        text = f.read(NOTE_SIZE).rstrip(b"\0").decode("ascii", "replace")
    return text or None


def _write_note(owner: bytes) -> None:
    if _NOTE is not None:
        _NOTE[:] = owner


class Engine(Protocol):
    """One language's way to run device code for a ``Runtime``."""

    def load(self, source: str) -> Callable[[], Any]:
        """Compile ``source``; the thunk runs its top level. A compile error is
        logged by the engine and raised as ``DeviceCodeError``."""
        ...

    def error_lines(self, err: BaseException) -> list[str]:
        """The device-log lines (``ERROR: ...``) for an error raised by its code."""
        ...

    def watch(self) -> contextlib.AbstractContextManager[None]:
        """Held around every call into device code (a watchdog, if the language needs one)."""
        ...

    def close(self) -> None:
        """The code is gone: free what it held (never called while its code runs)."""
        ...

    @property
    def imp_api(self) -> dict[str, Any]:
        """The Python objects behind the imp API this code sees (``server``, ``imp`` ...)."""
        ...


class DeviceCodeTimeout(BaseException):
    """Raised inside device code that ran past ``CALLBACK_LIMIT_S``.

    A ``BaseException``, so ``except Exception`` in device code does not swallow
    it; and it is raised again at every later line until the callback returns.
    """


class Runtime:
    """One device's code: its globals, its timers, its error log."""

    def __init__(self, clock: Clock, log: LogFn) -> None:
        self.clock = clock
        self.engine: Engine | None = None
        self._depth = 0  # calls into device code in progress (a stop inside one defers close)
        self._closing: list[Engine] = []
        self._log = log
        self.generation = 0
        self.running = False
        self.errors = 0
        self._timers: dict[int, TimerHandle] = {}
        self._next_timer = 0
        self._suspended_until: float | None = None
        self._queued: list[tuple[int, Callable[..., Any], tuple[Any, ...]]] = []
        self._resume: TimerHandle | None = None

    # --- lifecycle ------------------------------------------------------------

    def start(self, source: str, engine: Engine) -> bool:
        """Replace any running code with ``source`` run by ``engine``; return False
        when its top level raised.

        A compile error is a ``DeviceCodeError`` (the impOS refuses the image); an
        error at run time is logged and the device keeps running.
        """
        self.stop()
        try:
            top = engine.load(source)
        except DeviceCodeError as err:
            self._log(f"ERROR: {err}", True)
            engine.close()
            raise
        self.engine = engine
        self.running = True
        return self._guard(top)

    def stop(self) -> None:
        """Forget the running code: its timers and queued calls never fire."""
        self.generation += 1
        self.running = False
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._queued.clear()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        self._suspended_until = None
        engine, self.engine = self.engine, None
        if engine is not None:
            self._closing.append(engine)
        self._close_idle()

    def _close_idle(self) -> None:
        """Close engines whose code is gone, once no call into device code is running."""
        if self._depth == 0:
            closing, self._closing = self._closing, []
            for engine in closing:
                engine.close()

    @property
    def globals(self) -> dict[str, Any]:
        """The running Python code's globals (empty for Squirrel code)."""
        engine = self.engine
        return engine.globals if isinstance(engine, PythonEngine) else {}

    # --- calling into device code --------------------------------------------

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a device callback now (or when the code resumes), guarded.

        A callback raised while device code is running (a pin's state-change
        callback when the code's own bus access flips that pin) runs after it
        returns, at the same clock time: impOS runs callbacks one at a time from its
        event loop, never inside other code, and a Squirrel VM cannot be re-entered.
        """
        if not self.running:
            return
        if self._suspended_until is not None:
            self._queued.append((self.generation, fn, args))
            return
        if self._depth:
            self.later(0.0, fn, *args)
            return
        self._guard(lambda: fn(*args))

    def bind(self, fn: Callable[..., Any]) -> Callable[..., None]:
        """A callable that calls ``fn`` through the runtime, only while this code runs."""
        generation = self.generation

        def bound(*args: Any) -> None:
            if generation == self.generation:
                self.call(fn, *args)

        return bound

    def later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> int:
        """Call ``fn(*args)`` after ``seconds`` of clock time; return a handle id."""
        self._next_timer += 1
        key = self._next_timer
        generation = self.generation

        def fire() -> None:
            self._timers.pop(key, None)
            if generation == self.generation:
                self.call(fn, *args)

        self._timers[key] = self.clock.call_later(max(0.0, float(seconds)), fire)
        return key

    def cancel(self, key: int) -> None:
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    def suspend(self, seconds: float | None) -> None:
        """Hold every callback for ``seconds`` (``None``: until the next ``suspend``).

        Held calls then run in order; ``suspend(0)`` resumes at once.
        """
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if seconds is None:
            self._suspended_until = float("inf")
            return
        if seconds <= 0:
            self._wake()
            return
        self._suspended_until = self.clock.now() + seconds
        self._resume = self.clock.call_later(seconds, self._wake)

    def hold(self, seconds: float) -> None:
        """Device code busy-waits (``imp.sleep``): nothing else of it runs for ``seconds``.

        A hold never shortens a suspension already in force (a factory BlinkUp).
        """
        now = self.clock.now()
        until = self._suspended_until
        if until is not None and until >= now + seconds:
            return
        self.suspend(seconds)

    @property
    def suspended(self) -> bool:
        return self._suspended_until is not None

    def _wake(self) -> None:
        self._resume = None
        self._suspended_until = None
        queued, self._queued = self._queued, []
        for generation, fn, args in queued:
            if generation == self.generation:
                self.call(fn, *args)

    def _guard(self, thunk: Callable[[], Any]) -> bool:
        engine = self.engine
        if engine is None:
            return False
        started = time.perf_counter()
        self._depth += 1
        try:
            with engine.watch():
                thunk()
        except (Exception, DeviceCodeTimeout) as err:  # the impOS survives its code
            self.errors += 1
            for line in engine.error_lines(err):
                self._log(line, True)
            if getattr(engine, "dead", False):  # its VM was stopped: no more of this code
                self.stop()
            return False
        finally:
            self._depth -= 1
            held = time.perf_counter() - started
            if held > BLOCKED_WARN_S:
                self._log(f"WARNING: device code held the loop for {held * 1000:.0f} ms "
                          "(every device on this loop waited)", False)
            self._close_idle()
        return True


class PythonEngine:
    """Python device code: its globals are the imp API, its builtins a small safe set.

    This is trusted code: the restricted builtins and imports keep honest code on
    the imp API, they are not a sandbox (Python offers no way to make one in
    process). Run code you did not write as Squirrel, whose VM is one.
    """

    def __init__(self, api: dict[str, Any], owner: str = "") -> None:
        """``owner``: the ID of the device the code runs on (what a stuck note names)."""
        self.api = api
        self.globals: dict[str, Any] = {}
        self._note = owner.encode("ascii", "replace")[:NOTE_SIZE].ljust(NOTE_SIZE, b"\0")

    @property
    def imp_api(self) -> dict[str, Any]:
        return self.api

    def load(self, source: str) -> Callable[[], Any]:
        try:
            code = _compile(source)
        except SyntaxError as err:
            raise DeviceCodeError(f"device code does not compile: {err.msg} "
                                  f"at line {err.lineno}") from err
        self.globals = {"__builtins__": dict(_SAFE_BUILTINS), **self.api}
        return lambda: exec(code, self.globals)

    def error_lines(self, err: BaseException) -> list[str]:
        return [f"ERROR: {type(err).__name__}: {err}{_where(err)}"]

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        previous = sys.gettrace()
        stuck = STUCK_EXIT_S
        if stuck is not None:
            _write_note(self._note)
            signal.setitimer(signal.ITIMER_REAL, stuck)  # SIGALRM unhandled: the end
        sys.settrace(_watchdog(time.perf_counter() + CALLBACK_LIMIT_S))
        try:
            yield
        finally:
            sys.settrace(previous)
            if stuck is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)

    def close(self) -> None:
        self.globals = {}


def _watchdog(deadline: float) -> Any:
    """A trace function that stops device code (only) once ``deadline`` has passed.

    Device code is every frame that does not run in a module's own globals: the
    code deployed, and whatever functions it makes, however their code objects are
    named or built (``types.FunctionType(code.replace(co_filename=...), {})``). The
    frames of modules (the imp API, impOS, the standard library) are left alone, so
    a timeout never lands in the middle of impOS's own work.
    """

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and time.perf_counter() > deadline:
            raise DeviceCodeTimeout(
                f"device code ran over {CALLBACK_LIMIT_S:g} s without returning "
                "(stopped: every device on this loop was waiting)")
        return local

    def on_call(frame: Any, event: str, arg: Any) -> Any:
        return None if _in_module(frame) else local

    return on_call


def _in_module(frame: Any) -> bool:
    """Whether ``frame`` runs in the globals of an imported module."""
    namespace = frame.f_globals
    name = namespace.get("__name__")
    module = sys.modules.get(name) if isinstance(name, str) else None
    return module is not None and getattr(module, "__dict__", None) is namespace


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> CodeType:
    """Compile once per distinct source: a line of DUTs runs the same firmware."""
    return compile(source, CODE_FILENAME, "exec")


def _where(err: BaseException) -> str:
    """`` at line N`` for the innermost frame inside device code, as an imp reports it."""
    line = None
    for frame in traceback.extract_tb(err.__traceback__):
        if frame.filename == CODE_FILENAME:
            line = frame.lineno
    return f" (at line {line})" if line is not None else ""
