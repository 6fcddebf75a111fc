"""The hardware around one emulated imp: a peripherals board, its supply and its light.

The pins, buses and the models wired to them are ``impfactory.hw.peripherals``
(a ``Board`` described as data: the imp005 Factory BlinkUp Box, the imp001 Explorer
Kit, or a file of the user's). ``SimHardware`` adds what belongs to the imp rather
than to its board: the supply voltage, the light on its sensor, and the binding to
the device's runtime (callbacks) and clock (models run on the device's own time,
which ``imp.sleep`` moves on). Tests and fixtures shape it from outside, like an
OpenHTF plug swapped for a simulated one: wire two pins together, set an input,
press a button model, set a fault; never ``if simulate:`` in device code.

Without a board it offers every pin name of the imp001 and imp005 and no buses:
enough for code that only uses pins.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from impfactory.clock import Clock, TimerHandle, VirtualClock
from impfactory.hw.peripherals import (
    Board,
    Host,
    PeripheralUsageError,
    Pin,
    PinBank,
    PinMode,
)
from impfactory.hw.peripherals.pins import LEGACY_PIN_NAMES

PIN_NAMES = LEGACY_PIN_NAMES
ANALOG_FULL_SCALE = 65535

__all__ = ["ANALOG_FULL_SCALE", "PIN_NAMES", "ClockSlot", "Pin", "PinMode", "SimHardware",
           "load_board"]


class ClockSlot:
    """A clock that stands for another, set later: models keep the clock they were
    built with, and a board is built before the device whose time it runs on."""

    def __init__(self, target: Clock | None = None) -> None:
        self.target: Clock = target or VirtualClock()

    def now(self) -> float:
        return self.target.now()

    async def sleep(self, seconds: float) -> None:
        await self.target.sleep(seconds)

    def call_later(self, seconds: float, callback: Callable[[], Any]) -> TimerHandle:
        return self.target.call_later(seconds, callback)


def load_board(name_or_path: str | Path, unit: str = "") -> Board:
    """A board (built-in name or JSON file) whose models will run on its device's time."""
    return Board.load(name_or_path, Host(clock=ClockSlot()), unit=unit)


class SimHardware:
    """The board one emulated imp sits on, with its supply and its light sensor."""

    def __init__(self, voltage: float = 3.3, board: Board | None = None) -> None:
        self.supply_voltage = voltage
        self.light: float = 0.0
        self.board = board
        self.bank: PinBank = (board.pins if board is not None
                              else PinBank(PIN_NAMES, Host(clock=ClockSlot())))

    @property
    def imp_type(self) -> str:
        """The imp this board carries (``imp005`` when no board says otherwise)."""
        return self.board.spec.imp if self.board is not None else "imp005"

    # --- the device binds its runtime and its clock -----------------------------------

    @property
    def host(self) -> Host:
        return self.bank.host

    @property
    def dispatch(self) -> Callable[..., Any]:
        return self.bank.host.dispatch

    @dispatch.setter
    def dispatch(self, fn: Callable[..., Any]) -> None:
        self.bank.host.dispatch = fn

    def use_clock(self, clock: Clock) -> None:
        """Models run on ``clock`` (the device's own time) from now on (boards made
        by ``load_board``, and pin-only hardware; a model built on another clock
        keeps it)."""
        host = self.bank.host
        if isinstance(host.clock, ClockSlot):
            host.clock.target = clock
        else:
            host.clock = clock

    # --- what device code reaches -----------------------------------------------------

    @property
    def pins(self) -> dict[str, Pin]:
        return self.bank.pins

    def pin(self, name: str) -> Pin:
        return self.bank.pin(name)

    def lookup(self, name: str) -> Any:
        """``hardware.<name>``: a pin or a bus of this board (``KeyError``: no such thing)."""
        if self.board is not None:
            try:
                return self.board.lookup(name)
            except (KeyError, PeripheralUsageError) as err:
                raise KeyError(name) from err
        if name in PIN_NAMES:
            return self.pin(name)
        raise KeyError(name)

    def model(self, name: str) -> Any:
        """An attached model by its name on the board (``board.model``)."""
        if self.board is None:
            raise KeyError(name)
        return self.board.model(name)

    # --- the world side ---------------------------------------------------------------

    @property
    def inputs(self) -> dict[str, float]:
        return self.bank.inputs

    @property
    def wires(self) -> dict[str, str]:
        return self.bank.wires

    def wire(self, a: str, b: str) -> None:
        """Connect two pins (a loopback): each reads what the other drives."""
        self.bank.wire(a, b)

    def cut(self, a: str) -> None:
        """Break the wire at ``a`` (a fault for a loopback test to find)."""
        self.bank.cut(a)

    def set_input(self, name: str, level: float) -> None:
        """What an unwired input pin sees: 0..1 (digital threshold 0.5; analog fraction)."""
        self.bank.set_input(name, level)

    def input_level(self, name: str, default: float) -> float:
        return self.bank.input_level(name, default)

    def set_fault(self, text: str) -> None:
        """A fault on one of the board's models by name (``sensor.missing`` ...)."""
        if self.board is None:
            raise KeyError(text)
        self.board.set_fault(text)
