"""Squirrel for impfactory: the real Squirrel 3.0.5 VM, sandboxed, with a watchdog.

The glue that device and agent runtimes share (DESIGN.md: the root package): a VM
whose root table holds only what impOS offers (``sandbox``), values converted
both ways (``convert``), Python natives and host objects (``natives``), errors
with the user's files and lines (``errors``, ``source``), a watchdog that stops
runaway code (``watchdog``), and ``#require`` (``require``). The imp API itself
lives in ``firmware`` (device) and ``cloud`` (agent), built on ``Vm``.

The VM comes from the ``squirrel-lang-sq305`` binding (GPL-3.0), reached through
its pybind11 module (``binding``) and its exported C API (``capi``).
"""

from impfactory.squirrel.convert import to_plain
from impfactory.squirrel.errors import (
    ConversionError,
    Frame,
    LibraryError,
    SquirrelCompileError,
    SquirrelError,
    SquirrelMemoryError,
    SquirrelReentryError,
    SquirrelRuntimeError,
    SquirrelStackOverflow,
    SquirrelThrow,
    SquirrelTimeout,
    SquirrelVmStopped,
    format_error,
)
from impfactory.squirrel.handles import SqFunction, SqObject
from impfactory.squirrel.natives import HostClass
from impfactory.squirrel.require import Resolved, resolve
from impfactory.squirrel.source import LineMap
from impfactory.squirrel.vm import Vm, VmStats

__all__ = [
    "ConversionError",
    "Frame",
    "HostClass",
    "LibraryError",
    "LineMap",
    "Resolved",
    "SqFunction",
    "SqObject",
    "SquirrelCompileError",
    "SquirrelError",
    "SquirrelMemoryError",
    "SquirrelReentryError",
    "SquirrelRuntimeError",
    "SquirrelStackOverflow",
    "SquirrelThrow",
    "SquirrelTimeout",
    "SquirrelVmStopped",
    "Vm",
    "VmStats",
    "format_error",
    "resolve",
    "to_plain",
]
