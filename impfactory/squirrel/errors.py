"""What goes wrong in Squirrel code, with the file and line the user wrote.

Lines are always the user's: ``#require`` splices libraries into the source and
the loop instrumentation (``source``) inserts line breaks, and both keep a line
map, so an error inside a library reports ``FactoryTools.lib.nut:123`` and one in
the user's file its own line. ``format_error`` renders an error the way impOS
writes it to the device log, one entry a line, innermost frame first::

    the index 'foo' does not exist
      in readSensor device.nut:12
      from main device.nut:40
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from impfactory.errors import ImpFactoryError


@dataclass(frozen=True)
class Frame:
    """One Squirrel call frame: the function's name (``main`` for the top level,
    ``unknown`` for an anonymous function) and where it was."""

    function: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.function} {self.file}:{self.line}"


class SquirrelError(ImpFactoryError):
    """The root of every Squirrel error impfactory raises."""


class SquirrelCompileError(SquirrelError):
    """The source does not compile; ``str()`` is ``file:line:column: message``."""

    def __init__(self, file: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{file}:{line}:{column}: {message}")
        self.file = file
        self.line = line
        self.column = column
        self.message = message


class SquirrelRuntimeError(SquirrelError, RuntimeError):
    """Squirrel code threw and nothing caught it. ``message`` is the thrown value
    as Squirrel renders it; ``stack`` the call stack where it was thrown,
    innermost first."""

    def __init__(self, message: str, stack: Sequence[Frame] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.stack = list(stack)


class SquirrelStackOverflow(SquirrelRuntimeError):
    """Recursion went deeper than the VM allows. Like a timeout it stops the VM,
    which must then be replaced (``Vm.dead``)."""


class SquirrelTimeout(SquirrelError, TimeoutError):
    """The watchdog stopped code that ran longer than its time limit; ``stack`` is
    where it was stopped. The VM must then be replaced (``Vm.dead``)."""

    def __init__(self, limit_s: float, stack: Sequence[Frame] = ()) -> None:
        self.message = f"the code ran longer than its time limit of {limit_s:g} s and was stopped"
        super().__init__(self.message)
        self.limit_s = limit_s
        self.stack = list(stack)


class SquirrelMemoryError(SquirrelError, MemoryError):
    """The VM's code left more memory allocated than its limit (``Vm(memory_limit=)``,
    measured as ``memory`` says); ``stack`` is where it was stopped, when it was
    stopped while running. The VM must then be replaced (``Vm.dead``)."""

    def __init__(self, limit: int, used: int, stack: Sequence[Frame] = (), *,
                 what: str = "used") -> None:
        self.message = (f"the code {what} {used // 1024} KiB of memory, over its limit of "
                        f"{limit // 1024} KiB, and was stopped")
        super().__init__(self.message)
        self.limit = limit
        self.used = used
        self.stack = list(stack)


class SquirrelVmStopped(SquirrelError):
    """The VM was closed, or stopped by its watchdog, and takes no more calls."""


class SquirrelReentryError(SquirrelError):
    """A native tried to call into Squirrel while Squirrel was calling it; natives
    must schedule callbacks, not run them."""


class ConversionError(SquirrelError, ValueError):
    """A value cannot cross between Python and Squirrel (an unsupported type, an
    integer outside 32 bits, a container that contains itself …)."""


class LibraryError(SquirrelError):
    """A ``#require`` cannot be satisfied: no such library, or another major version."""


class SquirrelThrow(SquirrelError):
    """Raised by a native to throw ``value`` (any convertible value) in Squirrel,
    where ``try``/``catch`` receives it as it is."""

    def __init__(self, value: object) -> None:
        super().__init__(str(value))
        self.value = value


def format_error(err: BaseException) -> list[str]:
    """The device-log lines for ``err``: its message, then one line per frame,
    ``  in`` for the innermost and ``  from`` for the callers."""
    if isinstance(err, SquirrelCompileError):
        return [str(err)]
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    lines = [message]
    for i, frame in enumerate(getattr(err, "stack", ())):
        lines.append(f"  {'in' if i == 0 else 'from'} {frame}")
    return lines
