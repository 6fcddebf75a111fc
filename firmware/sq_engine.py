"""Squirrel device code on the emulated imp: the real Squirrel 3.0.5 VM, one per device.

Each device's VM is a thread of its OS thread's shared Squirrel state
(``Vm(shared=True)``, ``impfactory.squirrel.shared``): the compiled firmware and the
standard library are held once for all devices; globals, constants, errors and a
watchdog stop stay the device's own.

``SquirrelEngine`` is the ``Engine`` the runtime uses for every deployment that is
not marked as Python: it resolves ``#require`` from the library folders (the
device's ``--lib`` folders, then ``IMPFACTORY_LIB_PATH``, then Electric Imp's
libraries that ship with impfactory), builds a sandboxed VM holding the imp API
(``sq_api``), compiles with file and line for every error, and runs the top level
and every later callback under the VM's watchdog. Errors reach the device log as
impOS writes them::

    ERROR: the index 'foo' does not exist
    ERROR:   in readSensor device.nut:12
    ERROR:   from main device.nut:40

The VM is closed when its code is replaced, after saving ``nv`` for the next warm
boot.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from impfactory.devicecode import library_dirs
from impfactory.firmware.errors import DeviceCodeError
from impfactory.firmware.runtime import CALLBACK_LIMIT_S, Runtime
from impfactory.firmware.sq_api import SquirrelApi
from impfactory.squirrel import (
    LibraryError,
    Resolved,
    SquirrelCompileError,
    SquirrelError,
    SquirrelMemoryError,
    SquirrelTimeout,
    Vm,
    format_error,
)
from impfactory.squirrel import require as sq_require

log = logging.getLogger(__name__)
DEVICE_FILE = "device.nut"
CALLBACK_MEMORY = 32 << 20
"""Bytes one callback may allocate (an imp has a few hundred KiB in all): one that
allocates more, a string or array doubled in a loop, is stopped like one that runs
too long (``Vm(entry_growth_limit=)``), so device code cannot take the machine's
memory."""


class SquirrelEngine:
    """One device's Squirrel code: its VM, its imp API, its library folders."""

    def __init__(self, host: Any, runtime: Runtime, lib_dirs: tuple[str, ...] | None = None,
                 time_limit_s: float = CALLBACK_LIMIT_S) -> None:
        self.host = host
        self.runtime = runtime
        extra = lib_dirs if lib_dirs is not None else getattr(host.config, "lib_dirs", ())
        self.lib_dirs = library_dirs(extra)
        self.time_limit_s = time_limit_s
        self.vm: Vm | None = None
        self.api: SquirrelApi | None = None

    def resolve(self, source: str) -> Resolved:
        """The unit to compile, every ``#require`` replaced (a test build overrides this
        to join several files)."""
        return sq_require.resolve(source, DEVICE_FILE, self.lib_dirs)

    def load(self, source: str) -> Callable[[], Any]:
        try:
            resolved = self.resolve(source)
        except LibraryError as err:
            raise DeviceCodeError(f"device code does not compile: {err}") from err
        vm = self.vm = Vm(time_limit_s=self.time_limit_s, environment="device",
                          entry_growth_limit=CALLBACK_MEMORY, shared=True)
        api = self.api = SquirrelApi(vm, self.host, self.runtime)
        api.install()
        try:
            main = vm.compile(resolved.source, DEVICE_FILE, resolved.line_map)
        except SquirrelCompileError as err:
            raise DeviceCodeError(f"device code does not compile: {err}") from err
        return lambda: vm.call(main)

    @property
    def imp_api(self) -> dict[str, Any]:
        return self.api.py if self.api is not None else {}

    @property
    def dead(self) -> bool:
        """The watchdog stopped the VM: the device runs no more of this code (until
        it restarts or gets new code)."""
        return self.vm is not None and self.vm.dead

    def error_lines(self, err: BaseException) -> list[str]:
        if isinstance(err, SquirrelTimeout | SquirrelMemoryError):
            lines = [f"ERROR: {line}" for line in format_error(err)]
            log.warning("device %s: %s", self.host.device_id, err)
            return [*lines, f"ERROR: device {self.host.device_id}: its code is stopped until "
                            "it restarts or gets new code"]
        if isinstance(err, SquirrelError):
            return [f"ERROR: {line}" for line in format_error(err)]
        return [f"ERROR: impOS: {type(err).__name__}: {err}"]

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        yield  # the VM has its own watchdog (impfactory.squirrel)

    def close(self) -> None:
        if self.api is not None:
            self.api.save_nv()
        if self.vm is not None:
            self.vm.close()
        self.vm = self.api = None
