"""One sandboxed Squirrel VM: compile, run and call under the watchdog.

::

    Vm(time_limit_s=2.0)                    a fresh VM, root table from the allow-list
      .compile(src, "device.nut", line_map) -> SqFunction (the top level, not run yet)
      .run(src, ...)                        compile and run the top level
      .call(fn, *args)                      run a Squirrel function (a callback)
      .native(fn, "name")                   a Python function Squirrel can call
      .host_class(name, methods, getter)    a class whose methods are natives
      .wrap(obj, cls)                       an instance standing for a Python object
      .set_global / .get_global             root-table slots, values converted
      .away()                               a native waits elsewhere (limits paused)
      .heap_bytes                           net memory its work left allocated
      .close()

**Entering Squirrel.** Every run and call goes through one entry (``_enter``):
it puts the function and its arguments in the entry closure's private job array,
arms the watchdog with ``time_limit_s`` wall seconds, and calls the entry closure
through pybind (``binding``), the C++ ``try`` that a stopped VM unwinds to. The
entry is not re-entrant: a native that Squirrel is calling may not call Squirrel
back (``SquirrelReentryError``); it schedules the callback instead.

**Compiling.** The source is compiled as written (a compile error is Squirrel's
own message at the user's file, line and column, through the ``#require`` line
map), then instrumented (``source``) and compiled again, and its bytecode patched
(``bytecode``). The patched unit is kept, with the constants it declares, for
the next VM that compiles the same unit with the same constants in force: a
line of DUTs compiles its firmware once.

**Errors.** An uncaught runtime error carries the
stack captured by the VM's error handler *before* the stack unwinds, innermost
frame first; the handler runs again at every level the error passes (once per
native boundary), so a repeat of the same error at a shallower, matching stack
is ignored. A timeout or a recursion past ``max_depth`` stops the VM for good
(``dead``): it must be replaced, as impOS restarts Squirrel.

**Memory.** A VM with a ``memory_limit`` has everything it runs (its creation,
compiles, entries, ``collect``) measured at the process's allocator (``memory``),
the difference added to ``heap_bytes``; the watchdog also stops an entry whose
allocation passes what is left of the limit (checked at most every
``MEMORY_CHECK_S`` of the watchdog's timer, since a reading costs up to ~0.1 ms in a
large process), and an entry that ends above it is followed by a cycle collection
and, if still above, stops the VM (``SquirrelMemoryError``; the VM is dead, like
after a timeout). A VM without a limit is not measured (``heap_bytes`` stays 0).

**Waiting inside a native.** A native may suspend the running entry (a greenlet
switch, say, while an HTTP answer arrives) and let other VMs run meanwhile;
inside ``with vm.away():`` the entry's time limit and memory count are paused,
so neither the wait nor the other VMs' work is charged to it. ``stop_soon``
makes the VM stop at its next line (a suspended entry that will never get its
answer).

**Threads.** One VM is used by one thread at a time; different VMs may be used
by different threads. While Squirrel runs, the GIL is held (pybind keeps it).

**Output.** ``print`` and ``error`` call ``output(kind, text)`` (``kind`` is
``"print"`` or ``"error"``); nothing is ever written to the process's streams.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import sys
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from ctypes import byref, c_int, c_void_p
from dataclasses import dataclass
from typing import Any

from impfactory.squirrel import bytecode, capi, impos, memory, sandbox, watchdog
from impfactory.squirrel import shared as sharedstate
from impfactory.squirrel.binding import ENTRY_SOURCE_NAME, AbortVm, PybindVm
from impfactory.squirrel.capi import SQObj
from impfactory.squirrel.convert import _NOT_HOST, Marshal
from impfactory.squirrel.errors import (
    ConversionError,
    Frame,
    SquirrelCompileError,
    SquirrelError,
    SquirrelMemoryError,
    SquirrelReentryError,
    SquirrelRuntimeError,
    SquirrelStackOverflow,
    SquirrelThrow,
    SquirrelTimeout,
    SquirrelVmStopped,
)
from impfactory.squirrel.handles import SqFunction, SqObject
from impfactory.squirrel.natives import (
    GETTER,
    HOSTS,
    METHOD,
    PLAIN,
    RELEASE_HOST,
    RENDER,
    HostClass,
    NativeSpec,
    arity,
    error_message,
    new_host_key,
    new_tag,
)
from impfactory.squirrel.source import Instrumented, LineMap, instrument
from impfactory.squirrel.watchdog import (
    METERED_CHECK_EVERY,
    Guard,
    RawFrame,
    capture_stack,
)

#: Deepest Squirrel call nesting before the VM is stopped with a stack overflow.
MAX_DEPTH = 1000
#: Frames kept for an uncaught error's stack.
MAX_ERROR_FRAMES = 100
#: Compiled units kept (patched bytecode) for VMs that compile the same source.
COMPILE_CACHE_SIZE = 32

_COMPILED: OrderedDict[tuple[str, str, Any], tuple[Instrumented, bytes, dict[Any, Any]]] = (
    OrderedDict())


def _frozen(value: Any) -> Any:
    """``value`` (plain data) as something hashable, equal for equal data."""
    if isinstance(value, dict):
        return tuple(sorted(((repr(k), _frozen(v)) for k, v in value.items())))
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return (type(value).__name__, value)


_MISSING: Any = object()


def _no_fn(*_args: Any) -> None:
    """The function of natives the VM answers itself (``print``, ``error``)."""


@dataclass
class VmStats:
    """Counters of one VM's work."""

    entries: int = 0  # runs and calls into Squirrel
    native_calls: int = 0  # calls of Python natives from Squirrel
    natives: int = 0  # natives made
    compiled: int = 0  # sources compiled
    busy_s: float = 0.0  # timer seconds spent inside entries (the watchdog's timer)


_LIVE: dict[int, weakref.ref[Vm]] = {}


def _vm_of(v: int) -> Vm | None:
    ref = _LIVE.get(v)
    return ref() if ref is not None else None


def _trampoline(v: int) -> int:
    vm = _vm_of(v)
    if vm is None:
        return capi.sq_throwerror(v, b"the VM is closed")
    try:
        return vm._dispatch(v)
    except BaseException:  # never through a ctypes frame
        return capi.sq_throwerror(v, b"internal error in a native")


def _on_error(v: int) -> int:
    vm = _vm_of(v)
    if vm is not None:
        with contextlib.suppress(BaseException):  # never through a ctypes frame
            vm._note_error(v)
    return 0


def _on_compile_error(v: int, _desc: int | None, _src: int | None, line: int,
                      column: int) -> None:
    vm = _vm_of(v)
    if vm is not None:
        vm._compile_error = (line, column)


TRAMPOLINE = capi.SQFUNCTION(_trampoline)
ERROR_HANDLER = capi.SQFUNCTION(_on_error)
COMPILE_ERROR = capi.SQCOMPILERERROR(_on_compile_error)


def _teardown(backend: PybindVm | sharedstate.SharedThread, v: int, refs: list[SQObj],
              handles: weakref.WeakSet[SqObject], pending: list[SQObj]) -> None:
    watchdog.forget(v)
    _LIVE.pop(v, None)
    if isinstance(backend, sharedstate.SharedThread):
        # The state goes on: release what this VM held in it (a VM of its own frees
        # everything at once when it closes), under the state's lock.
        backend.close(held=(*pending, *refs, *(h._obj for h in list(handles))))
        pending.clear()
    else:
        backend.close()


class Vm:
    """A fresh, sandboxed Squirrel VM (see the module doc).

    ``time_limit_s``: wall seconds each entry (the top level, one callback) may
    run. ``environment``: ``"device"`` or ``"agent"`` (``sandbox``). ``output``:
    receives ``print``/``error`` text. ``max_depth``: Squirrel call nesting
    allowed. ``timer``: the watchdog's clock (wall time by default;
    ``time.thread_time`` makes the limit CPU time; a test may inject one).
    ``memory_limit``: bytes of ``heap_bytes`` allowed (None: no limit).
    ``entry_growth_limit``: without a memory limit, bytes one entry may add to what
    the process has allocated (``watchdog``; cheaper: short entries are not metered).
    ``shared``: ``True`` makes the VM a thread of the calling OS thread's shared
    state (``shared.current()``), or of the ``SharedState`` given: it shares
    compiled code and the standard library with the state's other VMs, so a fresh
    one costs ~16 KiB, not ~66 (module ``shared``); it cannot have a
    ``memory_limit`` (what it allocates is not its own alone).
    """

    def __init__(self, *, time_limit_s: float = 2.0, environment: str = "device",
                 output: Callable[[str, str], None] | None = None,
                 max_depth: int = MAX_DEPTH, timer: Callable[[], float] = time.monotonic,
                 stack_size: int = 256, memory_limit: int | None = None,
                 entry_growth_limit: int | None = None,
                 shared: bool | sharedstate.SharedState = False) -> None:
        if not time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive, not {time_limit_s!r}")
        if memory_limit is not None and memory_limit <= 0:
            raise ValueError(f"memory_limit must be positive, not {memory_limit!r}")
        if shared is not False and memory_limit is not None:
            raise ValueError("a VM with a memory_limit needs a state of its own (shared=False)")
        sandbox.allowed_globals(environment)
        self._meter = memory.METER if memory_limit is not None else None
        started = self._meter() if self._meter is not None else 0
        self.heap_bytes = 0
        self.memory_limit = memory_limit
        self._timer = timer
        self.time_limit_s = float(time_limit_s)
        self.environment = environment
        self.stats = VmStats()
        self._output = output
        self._natives: list[NativeSpec] = []
        self._host_classes: dict[int, HostClass] = {}
        # compiled name -> how its lines map back (shared with the compile cache)
        self._units: dict[str, tuple[Instrumented, LineMap | None, str]] = {}
        self._pending: list[SQObj] = []
        self._depth = 0
        self._closed = False
        self._dead: str | None = None
        self._err: tuple[tuple[int, int], list[RawFrame]] | None = None
        self._host_failure: BaseException | None = None
        self._compile_error: tuple[int, int] | None = None
        self._idx = c_int()
        self._ptr = c_void_p()
        self._state: sharedstate.SharedState | None = None
        self._backend: PybindVm | sharedstate.SharedThread
        if shared is not False:
            self._state = sharedstate.current() if shared is True else shared
            self._backend = self._state.new_thread(stack_size)
        else:
            self._backend = PybindVm(stack_size)
        v = self._v = self._backend.v
        self._marshal = Marshal(self)
        _LIVE[v] = weakref.ref(self)
        # What a thread of a shared state must give back when it closes: its own
        # references in the state (a VM of its own frees everything with itself).
        self._refs: list[SQObj] = []
        self._handles: weakref.WeakSet[SqObject] = weakref.WeakSet()
        self._finalizer = weakref.finalize(self, _teardown, self._backend, v, self._refs,
                                           self._handles, self._pending)
        if self._state is None:
            impos.install(v)  # compiled before debug info is on: no line events
        capi.sq_setcompilererrorhandler(v, COMPILE_ERROR)
        capi.sq_enabledebuginfo(v, 1)
        capi.sq_newclosure(v, ERROR_HANDLER, 0)
        capi.sq_seterrorhandler(v)
        host = {}
        for name in sandbox.HOST:
            self._push_native(v, NativeSpec(_no_fn, name, RENDER, 0, 1, 1))
            host[name] = capi.stack_object(v, -1)
            capi.sq_pop(v, 1)
        if self._state is None:
            sandbox.build_root(v, environment, host)
        else:
            sandbox.copy_root(v, self._state.template(environment), host)
            self._blob_class = self._state.own_classes(v)
            self._consts_table = self._state.new_table()
            self._refs.append(self._consts_table)
        for obj in host.values():
            capi.sq_release(v, byref(obj))
        if self._state is None:
            capi.sq_pushregistrytable(v)
            capi.sq_pushstring(v, b"std_blob", -1)
            capi.sq_rawget(v, -2)
            self._blob_class = capi.stack_object(v, -1)
        else:
            capi.sq_pushobject(v, self._blob_class)
        capi.sq_pushstring(v, b"constructor", -1)
        capi.sq_rawget(v, -2)
        self._blob_ctor = capi.stack_object(v, -1)
        self._refs += (self._blob_class, self._blob_ctor)
        if isinstance(self._backend, sharedstate.SharedThread):
            self._backend.blob_class = self._blob_class
        capi.sq_settop(v, 0)
        self._guard = Guard(timer, max_depth, self._backend.arm_raiser)
        self._guard.meter = self._meter
        self.entry_growth_limit: int | None = None
        if entry_growth_limit is not None and memory_limit is None and memory.METER is not None:
            self.entry_growth_limit = entry_growth_limit
            self._guard.meter = memory.METER
            self._guard.growth = float(entry_growth_limit)
        if self._guard.meter is not None:
            self._guard.check_every = METERED_CHECK_EVERY
        capi.sq_setnativedebughook(v, watchdog.watch(v, self._guard))
        self._mark = started  # where the current measurement started
        self._settle()

    # --- state ----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dead(self) -> bool:
        """True once the watchdog stopped this VM (timeout, stack overflow): it takes
        no more calls and must be replaced."""
        return self._dead is not None

    def _check_open(self) -> None:
        if self._closed:
            raise SquirrelVmStopped("the Squirrel VM is closed")
        if self._dead is not None:
            raise SquirrelVmStopped(f"the Squirrel VM was stopped ({self._dead}) and must be "
                                    "replaced")

    # --- compiling and running ------------------------------------------------------------

    def compile(self, source: str, filename: str = "device.nut",
                line_map: LineMap | None = None) -> SqFunction:
        """Compile ``source`` (with debug info, loops instrumented) into its top-level
        function, without running it. ``line_map`` maps ``source``'s lines to the
        files and lines the user wrote (``require.resolve`` gives one).

        The source is compiled as written first, so a compile error is exactly
        Squirrel's (``SquirrelCompileError``, at the user's line and column); only
        code that compiles is then compiled again instrumented (``source``).
        """
        self._check_open()
        if not self._depth:
            self._mark = self._meter() if self._meter is not None else 0
        try:
            return self._compile(source, filename, line_map)
        finally:
            if not self._depth:
                self._settle()

    def _compile(self, source: str, filename: str, line_map: LineMap | None) -> SqFunction:
        state = self._state
        if state is None:
            return self._compile_unit(source, filename, line_map)
        # The const table belongs to the state: this VM's own is swapped in while
        # its code compiles, so one VM's const and enum are not another's.
        with state.lock:
            self._use_consts(self._consts_table)
            try:
                return self._compile_unit(source, filename, line_map)
            finally:
                self._use_consts(state.empty_consts)

    def _use_consts(self, table: SQObj) -> None:
        capi.sq_pushobject(self._v, table)
        capi.sq_setconsttable(self._v)

    def _compile_unit(self, source: str, filename: str,
                      line_map: LineMap | None) -> SqFunction:
        v = self._v
        name = self._unit_name(filename)
        top = capi.sq_gettop(v)
        consts = self._consts()
        key = (name, source, _frozen(consts))
        if self._state is not None:
            shared_unit = self._state.recall(key)
            if shared_unit is not None:  # the very closure: its prototypes are shared
                capi.sq_pushobject(v, shared_unit[1])
                cached: tuple[Instrumented, Any, dict[Any, Any]] | None = shared_unit
            else:
                cached = None
        else:
            cached = _COMPILED.get(key)
            if cached is not None and bytecode.load(v, cached[1]):
                _COMPILED.move_to_end(key)
            else:
                cached = None
        if cached is not None:
            inst = cached[0]
            self._define_consts(cached[2])
        else:
            inst = self._compile_fresh(source, name, filename, line_map, key, consts)
        self._units[name] = (inst, line_map, filename)
        self.stats.compiled += 1
        fn = self._handle(capi.stack_object(v, -1))
        capi.sq_settop(v, top)
        assert isinstance(fn, SqFunction)
        return fn

    def _compile_fresh(self, source: str, name: str, filename: str, line_map: LineMap | None,
                       key: tuple[str, str, Any], consts: dict[Any, Any]) -> Instrumented:
        """Compile ``source`` as written (for its errors), then instrumented and
        patched (``bytecode``), leaving the closure on the stack; remember the result
        (and the constants it declared) for the next VM that compiles the same unit
        with the same constants in force."""
        v = self._v
        encoded_name = name.encode("utf-8", "surrogateescape")
        top = capi.sq_gettop(v)
        self._compile_error = None
        data = source.encode("utf-8", "surrogateescape")
        if capi.sq_compilebuffer(v, data, len(data), encoded_name, 0) < 0:
            # The message from the error itself; the position from the error handler,
            # on a second try (the handler's message points at a dead stack buffer).
            capi.sq_getlasterror(v)
            message = self._marshal.read_string(v, -1) or "does not compile"
            capi.sq_settop(v, top)
            capi.sq_compilebuffer(v, data, len(data), encoded_name, 1)
            capi.sq_settop(v, top)
            line, column = self._compile_error or (0, 0)
            if line > 1:  # the lexer counts columns from 0 on the first line only
                column -= 1
            file, line = line_map.lookup(line) if line_map is not None else (filename, line)
            raise SquirrelCompileError(file, line, column, message)
        capi.sq_settop(v, top)
        inst = instrument(source)
        data = inst.source.encode("utf-8", "surrogateescape")
        if capi.sq_compilebuffer(v, data, len(data), encoded_name, 0) < 0:  # pragma: no cover
            data = source.encode("utf-8", "surrogateescape")  # never expected: run it as is
            capi.sq_compilebuffer(v, data, len(data), encoded_name, 0)
            return Instrumented(source, tuple((n, 0) for n in range(1, source.count("\n") + 2)))
        patched = bytecode.reshape(v)
        if patched is not None:
            after = self._consts()
            declared = {k: value for k, value in after.items()
                        if k not in consts or consts[k] != value}
            if self._state is not None:
                self._state.remember(key, (inst, capi.stack_object(v, -1), declared))
            else:
                _COMPILED[key] = (inst, patched, declared)
                while len(_COMPILED) > COMPILE_CACHE_SIZE:
                    _COMPILED.popitem(last=False)
        return inst

    def _consts(self) -> dict[Any, Any]:
        """The VM's constant table (``const`` and ``enum``, filled in by the compiler)."""
        v = self._v
        capi.sq_pushconsttable(v)
        try:
            table = self._marshal.read(v, -1)
        finally:
            capi.sq_pop(v, 1)
        return table if isinstance(table, dict) else {}

    def _define_consts(self, declared: Mapping[Any, Any]) -> None:
        v = self._v
        top = capi.sq_gettop(v)
        try:
            capi.sq_pushconsttable(v)
            for k, value in declared.items():
                self._marshal.push(v, k)
                self._marshal.push(v, value)
                capi.sq_rawset(v, top + 1)
        finally:
            capi.sq_settop(v, top)

    def _unit_name(self, filename: str) -> str:
        if filename not in self._units and filename != ENTRY_SOURCE_NAME:
            return filename
        n = 2
        while f"{filename}#{n}" in self._units:
            n += 1
        return f"{filename}#{n}"

    def run(self, source: str, filename: str = "device.nut",
            line_map: LineMap | None = None) -> Any:
        """Compile ``source`` and run its top level under the watchdog; its result."""
        return self.call(self.compile(source, filename, line_map))

    def call(self, fn: SqObject, *args: Any) -> Any:
        """Call a Squirrel function with ``this`` the root table, under the watchdog."""
        if not isinstance(fn, SqObject) or fn._vm is not self:
            raise SquirrelError("call() takes a function of this VM")
        if fn._obj.type not in (capi.OT_CLOSURE, capi.OT_NATIVECLOSURE):
            raise SquirrelError(f"a Squirrel {fn.type_name} cannot be called")
        return self._enter(fn._obj, args)

    def _enter(self, fn: SQObj, args: tuple[Any, ...]) -> Any:
        self._check_open()
        if self._depth:
            raise SquirrelReentryError("a native may not call Squirrel while Squirrel is "
                                       "calling it; schedule the callback instead")
        if self._state is None:
            return self._enter_locked(fn, args)
        with self._state.lock:  # the job array and the state are the state's VMs' own
            return self._enter_locked(fn, args)

    def _enter_locked(self, fn: SQObj, args: tuple[Any, ...]) -> Any:
        v = self._v
        if self._pending:
            self._flush()
        job = self._backend.job
        top = capi.sq_gettop(v)
        capi.sq_pushobject(v, job)
        capi.sq_pushinteger(v, 0)
        capi.sq_pushobject(v, fn)
        capi.sq_rawset(v, top + 1)
        if args:
            try:
                capi.sq_pushinteger(v, 1)
                capi.sq_newarray(v, 0)
                capi.sq_pushroottable(v)
                capi.sq_arrayappend(v, top + 3)
                push = self._marshal.push
                for arg in args:
                    push(v, arg)
                    capi.sq_arrayappend(v, top + 3)
                capi.sq_rawset(v, top + 1)
            except BaseException:
                capi.sq_settop(v, top)
                self._clear_job()
                raise
        self._err = None
        self._host_failure = None
        self.stats.entries += 1
        self._depth = 1
        self._guard.arm(self.time_limit_s)
        began = self._guard.deadline - self.time_limit_s  # the timer as armed
        self._begin_count()
        stopped: BaseException | None = None
        try:
            self._backend.enter()
        except AbortVm as abort:
            # Its traceback holds the hook's arguments, pybind objects that would keep
            # the VM from ever being freed: drop it, and raise outside this handler.
            abort.__traceback__ = None
            capi.sq_settop(v, top)
            stopped = self._stopped()
        except RuntimeError as exc:
            failure: BaseException = self._uncaught(exc)
            capi.sq_settop(v, top)
            if self._host_failure is not None:
                raise self._host_failure from failure
            raise failure from None
        finally:
            self._guard.disarm()
            self._depth = 0
            self.stats.busy_s += max(0.0, self._timer() - began)
            self._settle()
        if stopped is not None:
            raise stopped
        self._check_memory()
        capi.sq_pushinteger(v, 2)
        capi.sq_rawget(v, top + 1)
        try:
            result = self._marshal.read(v, top + 2)
        finally:
            capi.sq_settop(v, top)
        if self._host_failure is not None:
            raise self._host_failure
        return result

    def _clear_job(self) -> None:
        v = self._v
        capi.sq_pushobject(v, self._backend.job)
        for i in range(3):
            capi.sq_pushinteger(v, i)
            capi.sq_pushnull(v)
            capi.sq_rawset(v, -3)
        capi.sq_pop(v, 1)

    def _stopped(self) -> BaseException:
        guard = self._guard
        reason = self._dead = guard.stopped or "stopped"
        stack = self._frames(guard.stack)
        if reason == "interrupt" and guard.interrupt is not None:
            return guard.interrupt
        if reason == "overflow":
            return SquirrelStackOverflow("stack overflow", stack)
        if reason == "memory":
            if self.memory_limit is None:  # stopped by the entry growth limit
                return SquirrelMemoryError(self.entry_growth_limit or 0, guard.grown, stack,
                                           what="allocated in one call")
            self._settle()
            return SquirrelMemoryError(self.memory_limit or 0, self.heap_bytes, stack)
        if reason == "stopped":
            return SquirrelVmStopped("the Squirrel VM was stopped by its host")
        return SquirrelTimeout(self.time_limit_s, stack)

    # --- memory and waiting ------------------------------------------------------------

    def _begin_count(self) -> None:
        """Start measuring (an entry, or its return from ``away``); arm the ceiling."""
        if self._meter is None:
            if self.entry_growth_limit is not None and memory.METER is not None:
                self._guard.ceiling = memory.METER() + self.entry_growth_limit
            return
        self._mark = now = self._meter()
        if self.memory_limit is not None:
            self._guard.ceiling = now + (self.memory_limit - self.heap_bytes)

    def _settle(self) -> None:
        """Add what the process allocated since ``_mark`` to ``heap_bytes``."""
        if self._meter is not None:
            now = self._meter()
            self.heap_bytes += now - self._mark
            self._mark = now

    def _check_memory(self) -> None:
        """After an entry: over the limit even after collecting cycles stops the VM."""
        limit = self.memory_limit
        if limit is None or self.heap_bytes <= limit:
            return
        self.collect()
        if self.heap_bytes > limit:
            self._dead = "memory"
            raise SquirrelMemoryError(limit, self.heap_bytes)

    @contextlib.contextmanager
    def away(self) -> Iterator[None]:
        """Held by a native while its entry waits for something outside Squirrel (other
        VMs may run meanwhile): the entry's time limit and memory count stop, and go on
        from where they were when it comes back."""
        if not self._depth:
            raise SquirrelError("away() is for a native of a running entry")
        guard = self._guard
        left = guard.deadline - self._timer()
        self._settle()
        guard.deadline = math.inf
        guard.ceiling = math.inf
        backend = self._backend
        if isinstance(backend, sharedstate.SharedThread):
            backend.lock.release()  # other OS threads may use the state meanwhile
        try:
            yield
        finally:
            if isinstance(backend, sharedstate.SharedThread):
                backend.lock.acquire()
                backend.resume()  # the binding's holder names this VM's thread again
            guard.deadline = self._timer() + left
            self._begin_count()

    def stop_soon(self) -> None:
        """Stop the VM at its next line or call, through any ``try``: for an entry that
        is suspended in a native and must not go on (its host is going away)."""
        if self._closed or self._dead is not None:
            return
        if self._depth:
            self._guard.stop(self._v, "stopped")
        else:
            self._dead = "stopped"

    def _uncaught(self, exc: RuntimeError) -> SquirrelRuntimeError:
        v = self._v
        capi.sq_getlasterror(v)
        if capi.sq_gettype(v, -1) == capi.OT_STRING:
            message = self._marshal.read_string(v, -1)
        else:
            message = str(exc)
        capi.sq_pop(v, 1)
        stack = self._frames(self._err[1]) if self._err is not None else []
        return SquirrelRuntimeError(message, stack)

    # --- what Squirrel calls back ----------------------------------------------------

    def _note_error(self, v: int) -> None:
        obj = SQObj()
        capi.sq_getstackobj(v, 2, byref(obj))
        key = (int(obj.type), int(obj.raw))
        frames = capture_stack(v, 1, MAX_ERROR_FRAMES)
        prev = self._err
        if (prev is not None and prev[0] == key and len(frames) < len(prev[1])
                and prev[1][len(prev[1]) - len(frames):] == frames):
            return  # the same error passing a native boundary on its way out
        self._err = (key, frames)

    def _dispatch(self, v: int) -> int:
        top = capi.sq_gettop(v)
        capi.sq_getinteger(v, top, byref(self._idx))
        spec = self._natives[self._idx.value]
        self.stats.native_calls += 1
        nargs = top - 2
        if nargs < spec.min_args or (spec.max_args is not None and nargs > spec.max_args):
            return capi.sq_throwerror(v, b"wrong number of parameters")
        try:
            if spec.kind == RENDER:
                if self._output is not None:
                    self._output(spec.name, self._marshal.render(v, 2))
                return 0
            read = self._marshal.read
            args = [read(v, i) for i in range(2, top)]
            if spec.kind == PLAIN:
                result = spec.fn(*args)
            else:
                this = self._this(v, spec)
                if spec.kind == GETTER:
                    try:
                        result = spec.fn(this, *args)
                    except (KeyError, AttributeError):
                        capi.sq_pushnull(v)  # a "clean" failure: the index does not exist
                        return capi.sq_throwobject(v)
                else:
                    result = spec.fn(this, *args)
            if result is None:
                return 0
            self._marshal.push(v, result)
            return 1
        except SquirrelThrow as exc:
            try:
                self._marshal.push(v, exc.value)
            except ConversionError:
                self._marshal.push(v, str(exc.value))
            return capi.sq_throwobject(v)
        except BaseException as exc:
            message, expected = error_message(exc, spec.name)
            if not expected:
                self._host_failure = exc
            return capi.sq_throwerror(v, message.encode("utf-8", "surrogateescape"))

    def _this(self, v: int, spec: NativeSpec) -> Any:
        if capi.sq_getinstanceup(v, 1, byref(self._ptr), spec.tag) < 0:
            cls = self._host_classes[spec.tag].name
            raise SquirrelError(f"{spec.name} must be called on a {cls} instance")
        obj = HOSTS.get(self._ptr.value or 0, _NOT_HOST)
        if obj is _NOT_HOST:
            raise SquirrelError(f"{spec.name}: the object is gone")
        return obj

    # --- natives, host classes, handles -------------------------------------------------

    def native(self, fn: Callable[..., Any], name: str) -> SqFunction:
        """A Squirrel native closure that calls ``fn`` with the converted arguments
        (see ``natives`` for what its exceptions become)."""
        self._check_open()
        v = self._v
        low, high = arity(fn, 0)
        self._push_native(v, NativeSpec(fn, name, PLAIN, 0, low, high))
        handle = self._handle(capi.stack_object(v, -1))
        capi.sq_pop(v, 1)
        assert isinstance(handle, SqFunction)
        return handle

    def _push_native(self, v: int, spec: NativeSpec) -> None:
        self._natives.append(spec)
        self.stats.natives += 1
        capi.sq_pushinteger(v, len(self._natives) - 1)
        capi.sq_newclosure(v, TRAMPOLINE, 1)
        capi.sq_setnativeclosurename(v, -1, spec.name.encode("utf-8", "surrogateescape"))

    def host_class(self, name: str, methods: Mapping[str, Callable[..., Any]],
                   getter: Callable[[Any, str], Any] | None = None) -> HostClass:
        """A Squirrel class whose methods are natives called as ``fn(obj, *args)`` with
        the Python object an instance stands for; ``getter(obj, key)`` answers
        members the class does not have (raise ``KeyError``/``AttributeError`` for
        Squirrel's own "does not exist", or an error with a message)."""
        self._check_open()
        v = self._v
        tag = new_tag()
        top = capi.sq_gettop(v)
        capi.sq_newclass(v, 0)
        cls = capi.sq_gettop(v)
        capi.sq_settypetag(v, cls, tag)
        for mname, fn in methods.items():
            capi.sq_pushstring(v, mname.encode(), -1)
            low, high = arity(fn, 1)
            self._push_native(v, NativeSpec(fn, sys.intern(f"{name}.{mname}"), METHOD, tag, low,
                                             high))
            capi.sq_newslot(v, cls, 0)
        if getter is not None:
            capi.sq_pushstring(v, b"_get", -1)
            self._push_native(v, NativeSpec(getter, f"{name}._get", GETTER, tag, 1, 1))
            capi.sq_newslot(v, cls, 0)
        host = HostClass(name, tag, capi.stack_object(v, cls))
        self._refs.append(host.obj)
        capi.sq_settop(v, top)
        self._host_classes[tag] = host
        return host

    def wrap(self, obj: Any, cls: HostClass) -> SqObject:
        """A new instance of ``cls`` standing for ``obj`` (which Squirrel cannot reach:
        only the class's natives receive it)."""
        self._check_open()
        if self._host_classes.get(cls.tag) is not cls:
            raise SquirrelError(f"host class {cls.name} belongs to another VM")
        v = self._v
        top = capi.sq_gettop(v)
        capi.sq_pushobject(v, cls.obj)
        capi.sq_createinstance(v, -1)
        capi.sq_setinstanceup(v, -1, new_host_key(obj))
        capi.sq_setreleasehook(v, -1, RELEASE_HOST)
        handle = self._handle(capi.stack_object(v, -1))
        capi.sq_settop(v, top)
        return handle

    def _host_object(self, v: int, idx: int, tag: int) -> Any:
        if tag not in self._host_classes:
            return _NOT_HOST
        capi.sq_getinstanceup(v, idx, byref(self._ptr), 0)
        return HOSTS.get(self._ptr.value or 0, _NOT_HOST)

    def _handle(self, obj: SQObj) -> SqObject:
        if len(self._pending) > 256 and not self._depth:
            self._flush()
        handle = (SqFunction(self, obj) if obj.type in (capi.OT_CLOSURE, capi.OT_NATIVECLOSURE)
                  else SqObject(self, obj))
        if self._state is not None:
            self._handles.add(handle)  # released by close if it outlives the VM
        return handle

    def _push_handle(self, v: int, handle: Any) -> None:
        if not isinstance(handle, SqObject) or handle._vm is not self:
            raise ConversionError("a Squirrel object of another VM cannot be used here")
        capi.sq_pushobject(v, handle._obj)

    def _push_blob(self, v: int, data: bytes) -> None:
        capi.sq_pushobject(v, self._blob_class)
        capi.sq_createinstance(v, -1)
        capi.sq_remove(v, -2)
        blob = capi.sq_gettop(v)
        capi.sq_pushobject(v, self._blob_ctor)
        capi.sq_push(v, blob)
        capi.sq_pushinteger(v, len(data))
        if capi.sq_call(v, 2, 0, 0) < 0:
            raise ConversionError(f"a blob of {len(data)} bytes cannot be made")
        capi.sq_pop(v, 1)
        if data:
            capi.sqstd_getblob(v, blob, byref(self._ptr))
            ctypes.memmove(self._ptr.value or 0, data, len(data))

    def _release_later(self, obj: SQObj) -> None:
        if not self._closed:
            self._pending.append(obj)

    def _flush(self) -> None:
        pending = self._pending[:]
        self._pending.clear()  # the same list: the finalizer releases what is left in it
        for obj in pending:
            capi.sq_release(self._v, byref(obj))

    # --- globals ---------------------------------------------------------------------------

    def set_global(self, name: str, value: Any) -> None:
        """Set root-table slot ``name`` to ``value`` converted (natives and wrapped
        host objects as they are)."""
        self._check_open()
        v = self._v
        top = capi.sq_gettop(v)
        try:
            capi.sq_pushroottable(v)
            capi.sq_pushstring(v, name.encode("utf-8", "surrogateescape"), -1)
            self._marshal.push(v, value)
            capi.sq_rawset(v, top + 1)
        finally:
            capi.sq_settop(v, top)

    def set_globals(self, values: Mapping[str, Any]) -> None:
        """``set_global`` for every item, the root table pushed once (a device's imp
        API constants: some seventy slots per VM, a VM or two per DUT)."""
        self._check_open()
        v = self._v
        top = capi.sq_gettop(v)
        try:
            capi.sq_pushroottable(v)
            for name, value in values.items():
                capi.sq_pushstring(v, name.encode("utf-8", "surrogateescape"), -1)
                self._marshal.push(v, value)
                capi.sq_rawset(v, top + 1)
        finally:
            capi.sq_settop(v, top)

    def get_global(self, name: str, default: Any = _MISSING) -> Any:
        """Root-table slot ``name`` converted; ``default`` (or ``KeyError``) if absent."""
        self._check_open()
        v = self._v
        top = capi.sq_gettop(v)
        try:
            capi.sq_pushroottable(v)
            capi.sq_pushstring(v, name.encode("utf-8", "surrogateescape"), -1)
            if capi.sq_rawget(v, top + 1) < 0:
                if default is _MISSING:
                    raise KeyError(name)
                return default
            return self._marshal.read(v, -1)
        finally:
            capi.sq_settop(v, top)

    # --- errors ----------------------------------------------------------------------------

    def stack(self) -> list[Frame]:
        """The Squirrel call stack now, innermost first, in the user's files and lines:
        for a native that wants to know which line of Squirrel called it."""
        self._check_open()
        return self._frames(capture_stack(self._v, 0, MAX_ERROR_FRAMES))

    def _frames(self, raw: list[RawFrame]) -> list[Frame]:
        frames = []
        for fname, src, line in raw:
            if src is None or line < 0 or src == b"NATIVE":
                continue
            name = src.decode("utf-8", "surrogateescape")
            if name == ENTRY_SOURCE_NAME:
                continue
            unit = self._units.get(name)
            if unit is not None:
                file, where = unit[0].lookup(line, unit[1], unit[2])
            else:
                file, where = name, line
            function = fname.decode("utf-8", "surrogateescape") if fname else "unknown"
            frames.append(Frame(function, file, where))
        return frames

    # --- housekeeping -----------------------------------------------------------------------

    def collect(self) -> int:
        """Release dropped handles and run Squirrel's cycle collector; objects freed."""
        if self._closed:
            raise SquirrelVmStopped("the Squirrel VM is closed")
        if not self._depth:
            self._mark = self._meter() if self._meter is not None else 0
        self._flush()
        freed = (capi.sq_collectgarbage(self._v) if self._state is None
                 else self._state.collect())
        if not self._depth:
            self._settle()
        return freed

    def close(self) -> None:
        """Free the VM (silently: nothing reaches standard output). Idempotent."""
        if self._closed:
            return
        if self._depth:
            raise SquirrelReentryError("a native may not close the VM that is calling it")
        self._closed = True
        if self._state is None:
            self._pending.clear()
        self._finalizer()

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
