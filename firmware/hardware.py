"""Simulated hardware around an emulated imp: pins, wiring, sensors, supply.

Device code reaches it through ``hardware.pinX`` and friends (see ``impapi``);
tests and fixtures shape it from outside, like an OpenHTF plug swapped for a
simulated one: wire two pins together (a loopback), set an analog input, set the
supply voltage, or listen to a pin that drives an LED (the fixture's BlinkUp LED).
Faults are injected here, never with ``if simulate:`` in device code.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from impfactory.firmware.errors import ImpApiError


class PinMode(enum.IntEnum):
    """``pin.configure`` modes (values are ours; code uses the names)."""

    DISABLED = 0
    DIGITAL_IN = 1
    DIGITAL_IN_PULLUP = 2
    DIGITAL_IN_PULLDOWN = 3
    DIGITAL_OUT = 4
    DIGITAL_OUT_OD = 5
    ANALOG_IN = 6
    ANALOG_OUT = 7
    DIGITAL_IN_WAKEUP = 8
    PWM_OUT = 9


PIN_NAMES = tuple(f"pin{c}" for c in "123456789ABCDEFGHJKLMNPQRSTUVWXYZ")
ANALOG_FULL_SCALE = 65535


@dataclass
class Pin:
    """One pin: its mode, the level it drives, and who listens to it."""

    name: str
    board: SimHardware
    mode: PinMode = PinMode.DISABLED
    level: float = 0.0
    listeners: list[Callable[[Pin, float], Any]] = field(default_factory=list)
    signal_listeners: list[Callable[[Any], Any]] = field(default_factory=list)
    callback: Callable[[], Any] | None = None

    def configure(self, mode: int, *args: Any) -> None:
        """Set the mode; an output may take an initial level, an input a change callback."""
        try:
            self.mode = PinMode(int(mode))
        except ValueError as err:
            raise ImpApiError(f"{self.name}.configure: unknown mode {mode!r}") from err
        self.callback = None
        if self.mode in (PinMode.DIGITAL_OUT, PinMode.DIGITAL_OUT_OD) and args:
            self._drive(float(args[0]))
        elif args and callable(args[0]):
            self.callback = args[0]

    def write(self, value: float) -> None:
        if self.mode not in (PinMode.DIGITAL_OUT, PinMode.DIGITAL_OUT_OD,
                             PinMode.ANALOG_OUT, PinMode.PWM_OUT):
            raise ImpApiError(f"{self.name}.write: pin is not configured as an output")
        self._drive(float(value))

    def read(self) -> float:
        mode = self.mode
        if mode is PinMode.DISABLED:
            raise ImpApiError(f"{self.name}.read: pin is not configured")
        if mode in (PinMode.DIGITAL_OUT, PinMode.DIGITAL_OUT_OD):
            return int(self.level > 0.5)
        if mode is PinMode.ANALOG_IN:
            fraction = self.board.input_level(self.name, default=0.0)
            return round(min(1.0, max(0.0, fraction)) * ANALOG_FULL_SCALE)
        default = 1.0 if mode is PinMode.DIGITAL_IN_PULLUP else 0.0
        return int(self.board.input_level(self.name, default=default) > 0.5)

    def show_signal(self, signal: Any) -> None:
        """The pin plays a whole waveform (a BlinkUp flash): tell its signal listeners."""
        for listener in list(self.signal_listeners):
            listener(signal)

    def _drive(self, value: float) -> None:
        self.level = value
        for listener in list(self.listeners):
            listener(self, value)


class SimHardware:
    """The board one emulated imp sits on."""

    def __init__(self, voltage: float = 3.3) -> None:
        self.supply_voltage = voltage
        self.pins: dict[str, Pin] = {}
        self.inputs: dict[str, float] = {}
        self.wires: dict[str, str] = {}
        self.light: float = 0.0
        self.dispatch: Callable[..., Any] = lambda fn, *args: fn(*args)

    def pin(self, name: str) -> Pin:
        if name not in PIN_NAMES:
            raise ImpApiError(f"no such pin: {name}")
        pin = self.pins.get(name)
        if pin is None:
            pin = self.pins[name] = Pin(name, self)
        return pin

    def wire(self, a: str, b: str) -> None:
        """Connect two pins (a loopback): each reads what the other drives."""
        self.pin(a)
        self.pin(b)
        self.wires[a] = b
        self.wires[b] = a

    def cut(self, a: str) -> None:
        """Break the wire at ``a`` (a fault for a loopback test to find)."""
        other = self.wires.pop(a, None)
        if other is not None:
            self.wires.pop(other, None)

    def set_input(self, name: str, level: float) -> None:
        """What an unwired input pin sees: 0..1 (digital threshold 0.5; analog fraction)."""
        pin = self.pin(name)
        before = self._digital(pin)
        self.inputs[name] = float(level)
        if pin.callback is not None and self._digital(pin) != before:
            self.dispatch(pin.callback)

    def _digital(self, pin: Pin) -> int | None:
        if pin.mode in (PinMode.DIGITAL_IN, PinMode.DIGITAL_IN_PULLUP,
                        PinMode.DIGITAL_IN_PULLDOWN, PinMode.DIGITAL_IN_WAKEUP):
            return int(pin.read())
        return None

    def input_level(self, name: str, default: float) -> float:
        peer = self.wires.get(name)
        if peer is not None:
            driver = self.pins[peer]
            if driver.mode in (PinMode.DIGITAL_OUT, PinMode.DIGITAL_OUT_OD,
                               PinMode.ANALOG_OUT, PinMode.PWM_OUT):
                return driver.level
        return self.inputs.get(name, default)
