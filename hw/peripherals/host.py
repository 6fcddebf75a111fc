"""What a board needs from the emulated imp around it: a clock and a way to call back.

Buses and models never run device code themselves and never read the wall clock.
A ``Host`` carries the two things they need from outside:

* ``clock``: the injected ``impfactory.clock.Clock``. Models read ``clock.now()``
  (an HTS221 conversion is complete once its measurement time has passed) and
  schedule their own events with ``clock.call_later`` (a UART byte arrives 10 bit
  times after it was sent, a button bounces).
* ``dispatch(fn, *args)``: how a device callback is run (a pin's state-change
  callback, a UART's receive callback). The emulated imp sets it to its runtime's
  ``call`` so the callback runs on the device's event loop with its error handling,
  exactly as ``SimHardware.dispatch`` does today. The default calls at once.

The host is shared by reference: a device that builds its board before its runtime
may set ``board.host.dispatch`` later, and every bus sees the change.

This module also holds the one conversion every bus needs: device code hands over
a Squirrel string (Python ``str``, one character per byte), a blob (``bytes``), or
for some calls an integer byte; buses work on ``bytes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from impfactory.clock import Clock, VirtualClock

from .errors import PeripheralUsageError

Dispatch = Callable[..., Any]


def _call_now(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


@dataclass
class Host:
    """The clock and the callback dispatcher a board's buses and models share."""

    clock: Clock = field(default_factory=VirtualClock)
    dispatch: Dispatch = _call_now


def to_bytes(data: Any, where: str, allow_int: bool = False) -> bytes:
    """Bytes from what device code may pass: ``bytes``-like, ``str`` (latin-1), or one
    integer byte where the imp takes one (``uart.write(0x41)``)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        try:
            return data.encode("latin-1")
        except UnicodeEncodeError as err:
            raise PeripheralUsageError(
                f"{where}: a string of bytes holds characters 0..255 only") from err
    if allow_int and isinstance(data, int) and not isinstance(data, bool):
        return bytes([data & 0xFF])
    raise PeripheralUsageError(
        f"{where}: expected a string, blob or integer, got {type(data).__name__}")


def as_text(data: bytes) -> str:
    """A Squirrel string from bytes: one character per byte (latin-1)."""
    return data.decode("latin-1")
