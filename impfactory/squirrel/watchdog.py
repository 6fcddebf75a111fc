"""The watchdog: stop Squirrel code that runs too long or recurses too deep.

Every VM has the same native debug hook (``DEBUG_HOOK``), on from the start. The VM
calls it at every new source line (``OP_LINE``, present because code is compiled with
debug info and loop bodies start lines, see ``source``), every Squirrel call and every
return. The hook is C (impfactory/squirrel/_hook.c, built at install): it counts, and
calls Python (``slow_event``) only when something is to be decided; where the C part
was not built, it is a ctypes callback into Python (``_hook``), whose counting is the
same and cost ~0.6 us per event (a loop of arithmetic ran 20 times slower with it than
with no hook; with the C hook, ~1.1 times). The hook keeps the call depth
(counting calls and returns; when the count passes ``max_depth`` it is checked
against the real call stack, since tail calls reuse frames) and, every
``CHECK_EVERY`` events, compares the injected timer with the entry's
deadline::

    event --> depth > max_depth ?  --yes--> stop("overflow")
          \\-> every 32nd: timer() > deadline ?  --yes--> stop("timeout")
                         meter() > ceiling ?  --yes--> stop("memory")   (with a memory limit,
                                                                        every MEMORY_CHECK_S)

A VM with an entry growth limit (``growth``, no memory limit) is metered the same
way but not accounted: each entry's ceiling is ``growth`` above the reading at its
start, so one entry cannot allocate without bound (a string or array doubled in a
loop). What one Squirrel instruction allocates between two readings is not seen
until the next: the bound is a few times ``growth``, not ``growth`` exactly.

A native hook cannot stop the VM (the VM ignores its result), so ``stop`` records
the stack and installs the binding's *raising* closure as the VM's debug hook
(``binding``): at the very next line or call it throws a C++ exception that no
Squirrel ``try`` can catch, which unwinds to the entry (``Vm._enter``). A VM
stopped this way is dead: its frames were unwound by C++, not by Squirrel, so it
takes no more calls and must be replaced. Other VMs are not affected.

A ``KeyboardInterrupt`` (or any exception) that Python delivers while the hook
runs stops the VM the same way and is re-raised by the entry.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

from impfactory.squirrel import capi

_native: ModuleType | None
try:
    from impfactory.squirrel import _hook as _native  # type: ignore[attr-defined,no-redef]
except ImportError:  # built without a C compiler: the hook is Python (``_hook``)
    _native = None

CHECK_EVERY = 32
METERED_CHECK_EVERY = 4
"""Events between two looks at the timer in a VM with a memory or entry growth
limit. A string doubled in a loop (``while (true) s += s``) is stopped 80 MB over
a 32 MB limit when checked every 4 events, 1.3 GB over it every 8, and an agent's
over its 2 MiB limit at 2.6 GB every 32 (measured)."""
MEMORY_CHECK_S = 0.002
"""Timer seconds between two readings of the allocator inside one entry."""
MAX_FRAMES = 50  # frames kept for the report of a stopped VM, innermost first

RawFrame = tuple[bytes | None, bytes | None, int]


class Guard:
    """One VM's watchdog state; ``arm`` before each entry, ``disarm`` after."""

    __slots__ = ("arm_raiser", "ceiling", "check_every", "countdown", "deadline", "depth",
                 "grown", "growth", "interrupt", "max_depth", "meter", "native",
                 "next_reading", "stack", "stopped", "timer", "v")

    def __init__(self, timer: Callable[[], float], max_depth: int,
                 arm_raiser: Callable[[], None]) -> None:
        self.timer = timer
        self.max_depth = max_depth
        self.arm_raiser = arm_raiser
        self.deadline = math.inf
        self.meter: Callable[[], int] | None = None
        self.ceiling = math.inf  # bytes the process may have allocated (memory limit)
        self.growth = math.inf  # bytes one entry may add (entry growth limit)
        self.grown = 0  # bytes the entry had added when it was stopped for growth
        self.next_reading = 0.0  # timer reading from which the meter is read again
        self.check_every = CHECK_EVERY
        self.countdown = CHECK_EVERY
        self.depth = 0
        self.stopped: str | None = None
        self.stack: list[RawFrame] = []
        self.interrupt: BaseException | None = None
        self.v = 0  # the VM it watches (``watch``)
        self.native: ModuleType | None = None  # the C hook's module when it counts for this VM

    def arm(self, limit_s: float) -> None:
        now = self.timer()
        self.deadline = now + limit_s
        self.next_reading = now + MEMORY_CHECK_S
        self.countdown = self.check_every
        self.depth = 0
        if self.native is not None:
            self.native.arm(self.v, self.check_every)

    def disarm(self) -> None:
        self.deadline = math.inf
        self.ceiling = math.inf

    def stop(self, v: int, reason: str, line: int = 0) -> None:
        """Record the stack (``line``: the current line, when the event gave it) and
        arm the raising hook."""
        if self.stopped is not None:
            return
        self.stopped = reason
        self.stack = capture_stack(v, 0, MAX_FRAMES)
        if line > 0 and self.stack:
            # At a line event the frame's own position is ambiguous to GetLine
            # (bytecode): the event's line is exact.
            function, source, _ = self.stack[0]
            self.stack[0] = (function, source, line)
        self.arm_raiser()


def capture_stack(v: int, first_level: int, limit: int) -> list[RawFrame]:
    """Raw ``(function, source, line)`` of the VM's frames from ``first_level`` out."""
    info = capi.SQStackInfos()
    frames: list[RawFrame] = []
    level = first_level
    while len(frames) < limit and capi.sq_stackinfos(v, level, ctypes.byref(info)) >= 0:
        frames.append((_cstr(info.funcname), _cstr(info.source), info.line))
        level += 1
    return frames


def call_depth(v: int, limit: int) -> int:
    """Frames on the VM's call stack, counted up to ``limit`` (O(log limit) probes)."""
    info = capi.SQStackInfos()
    low, high = 0, limit + 1  # frames >= low; frames < high
    while low + 1 < high:
        mid = (low + high) // 2
        if capi.sq_stackinfos(v, mid - 1, ctypes.byref(info)) >= 0:
            low = mid
        else:
            high = mid
    return low


def _cstr(ptr: int | None) -> bytes | None:
    return ctypes.string_at(ptr) if ptr else None


GUARDS: dict[int, Guard] = {}


def watch(v: int, guard: Guard) -> Any:
    """Watch VM ``v`` with ``guard``; the hook to give it (``sq_setnativedebughook``):
    the C hook, or the Python one where it was not built."""
    guard.v = v
    GUARDS[v] = guard
    if _native is not None:
        guard.native = _native
        _native.watch(v, guard.max_depth, guard.check_every)
        return NATIVE_HOOK
    return DEBUG_HOOK


def forget(v: int) -> None:
    """Stop watching ``v`` (its hook is removed by its owner)."""
    guard = GUARDS.pop(v, None)
    if guard is not None and guard.native is not None:
        guard.native.forget(v)


def _decide(g: Guard, v: int, line: int) -> None:
    """Every ``check_every`` events: past the deadline, or over the memory ceiling?"""
    now = g.timer()
    if now > g.deadline:
        g.stop(v, "timeout", line)
    elif g.meter is not None and now >= g.next_reading:
        g.next_reading = now + MEMORY_CHECK_S
        used = g.meter()
        if used > g.ceiling:
            g.grown = int(used - g.ceiling + g.growth) if g.growth < math.inf else 0
            g.stop(v, "memory", line)


def _recount(g: Guard, v: int) -> bool:
    """The counted depth passed ``max_depth``: the real stack decides (tail calls reuse
    frames). True when the VM was stopped."""
    g.depth = call_depth(v, g.max_depth + 1)
    if g.native is not None:
        g.native.set_depth(v, g.depth)
    if g.depth > g.max_depth:
        g.stop(v, "overflow")
        return True
    return False


def slow_event(v: int, kind: int, line: int, overflow: int,
               _guards: dict[int, Guard] = GUARDS) -> None:
    """What the C hook asks of Python (``line`` is 0 for a call event)."""
    g = _guards.get(v)
    if g is None:
        return
    try:
        if overflow:
            _recount(g, v)
        else:
            _decide(g, v, line)
    except BaseException as exc:  # a signal (KeyboardInterrupt) delivered in the hook
        g.interrupt = exc
        g.stop(v, "interrupt", line)


def _hook(v: int, kind: int, _src: int | None, line: int, _guards: dict[int, Guard] = GUARDS,
          _call: int = capi.HOOK_CALL, _return: int = capi.HOOK_RETURN) -> None:
    g = _guards.get(v)
    if g is None:
        return
    try:
        if kind == _call:
            g.depth += 1
            if g.depth > g.max_depth and _recount(g, v):
                return
        elif kind == _return:
            g.depth -= 1
            return
        g.countdown -= 1
        if g.countdown <= 0:
            g.countdown = g.check_every
            _decide(g, v, line if kind != _call else 0)
    except BaseException as exc:  # a signal (KeyboardInterrupt) delivered in the hook
        g.interrupt = exc
        g.stop(v, "interrupt", line if kind != _call else 0)


#: Declared with the hook's first four parameters only (VM, event, source, line):
#: the C caller passes five in registers and the callee may ignore the last
#: (SysV x86-64 and AArch64 calling conventions), whose conversion would only
#: cost time.
DEBUG_HOOK = capi.SQDEBUGHOOK_SHORT(_hook)
NATIVE_HOOK: Any = None
"""The C hook's address (None where it was not built)."""
if _native is not None:
    _native.set_slow(slow_event)
    NATIVE_HOOK = ctypes.c_void_p(_native.address())
