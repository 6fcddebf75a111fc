"""Pins: what device code drives and reads, and what the world attached to them does.

The imp side keeps today's ``firmware.hardware`` behaviour (``configure``,
``write``, ``read``, state-change callbacks, ``show_signal`` for a BlinkUp flash,
``listeners`` told of every level the imp drives) so ``SimHardware`` can become a
thin user of ``PinBank``. The world side is new: models attached to a pin *drive*
it, each as a named source:

* a strong drive (a pressed button pulling the line to ground, a wire from another
  pin, a test's ``set_input``),
* a weak drive (an external pull-up resistor, as the Factory BlinkUp Box has on its
  button and footswitch lines).

What an input reads is resolved in that order: the pin wired to it when that pin is
an output, else the strong drives (several at once: the lowest wins, like
open-drain lines), else the weak ones, else the imp's own pull (``DIGITAL_IN_PULLUP``
reads 1, ``DIGITAL_IN_PULLDOWN`` 0) and a floating input reads 0, as before.
Whenever a change of any drive flips an input's digital level, that pin's
state-change callback is run through the host's ``dispatch``.

A pin model observes the imp's outputs through ``pin.listeners`` (each called with
``(pin, level)`` on every write; PWM reports its duty cycle) and a BlinkUp flash
through ``pin.signal_listeners``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import PeripheralUsageError
from .host import Dispatch, Host


class PinMode(enum.IntEnum):
    """``pin.configure`` modes (values are ours, as in ``firmware.hardware``)."""

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


INPUT_MODES = frozenset({PinMode.DIGITAL_IN, PinMode.DIGITAL_IN_PULLUP,
                         PinMode.DIGITAL_IN_PULLDOWN, PinMode.DIGITAL_IN_WAKEUP})
DIGITAL_OUT_MODES = frozenset({PinMode.DIGITAL_OUT, PinMode.DIGITAL_OUT_OD})
OUTPUT_MODES = DIGITAL_OUT_MODES | {PinMode.ANALOG_OUT, PinMode.PWM_OUT}
ANALOG_FULL_SCALE = 65535
#: Every pin name any imp in the emulator uses (today's ``firmware.hardware.PIN_NAMES``).
LEGACY_PIN_NAMES = tuple(f"pin{c}" for c in "123456789ABCDEFGHJKLMNPQRSTUVWXYZ")
#: The drive source name ``set_input`` uses.
TEST_INPUT = "input"

PinListener = Callable[["Pin", float], Any]


class Pin:
    """One pin: its mode, the level it drives, and who listens to it."""

    def __init__(self, name: str, board: PinBank) -> None:
        self.name = name
        self.board = board
        self.mode = PinMode.DISABLED
        self.level = 0.0
        self.period = 0.0  # PWM period (s) while PWM_OUT
        self.listeners: list[PinListener] = []
        self.signal_listeners: list[Callable[[Any], Any]] = []
        self.callback: Callable[..., Any] | None = None

    def __repr__(self) -> str:
        return f"Pin({self.name}, {self.mode.name}, level={self.level})"

    def configure(self, mode: int, *args: Any) -> None:
        """Set the mode. An output takes an optional starting level (default 0), an
        input an optional state-change callback, PWM ``(period_s, duty)``."""
        try:
            new = PinMode(int(mode))
        except (TypeError, ValueError) as err:
            raise PeripheralUsageError(f"{self.name}.configure: unknown mode {mode!r}") from err
        allowed = self.board.capabilities.get(new)
        if allowed is not None and self.name not in allowed:
            raise PeripheralUsageError(
                f"{self.name}.configure: {new.name} is not available on this pin")
        watched = self.board.snapshot(self.board.peer(self))
        self.mode = new
        self.callback = None
        if new in DIGITAL_OUT_MODES:
            self._drive(_number(args[0], f"{self.name}.configure") if args else 0.0)
        elif new is PinMode.PWM_OUT:
            if len(args) < 2:
                raise PeripheralUsageError(f"{self.name}.configure: PWM_OUT needs a period "
                                           "and a duty cycle")
            self.period = _number(args[0], f"{self.name}.configure period")
            if self.period <= 0:
                raise PeripheralUsageError(f"{self.name}.configure: PWM period must be > 0")
            self._drive(_duty(args[1], self.name))
        elif new is PinMode.ANALOG_OUT:
            self._drive(_duty(args[0], self.name) if args else 0.0)
        elif new in INPUT_MODES and args:
            if not callable(args[0]):
                raise PeripheralUsageError(
                    f"{self.name}.configure: the state-change callback must be a function")
            self.callback = args[0]
        self.board.settle(watched)

    def write(self, value: float) -> None:
        """Drive a digital level, an analog fraction or a PWM duty cycle."""
        if self.mode not in OUTPUT_MODES:
            raise PeripheralUsageError(f"{self.name}.write: pin is not configured as an output")
        watched = self.board.snapshot(self.board.peer(self))
        if self.mode in DIGITAL_OUT_MODES:
            self._drive(_number(value, f"{self.name}.write"))
        else:
            self._drive(_duty(value, self.name))
        self.board.settle(watched)

    def read(self) -> float:
        """Digital 0/1, or 0..65535 for ``ANALOG_IN``; an output reads what it drives."""
        mode = self.mode
        if mode is PinMode.DISABLED:
            raise PeripheralUsageError(f"{self.name}.read: pin is not configured")
        if mode in DIGITAL_OUT_MODES:
            return int(self.level > 0.5)
        if mode is PinMode.ANALOG_IN:
            fraction = self.board.input_level(self.name, default=0.0)
            return round(min(1.0, max(0.0, fraction)) * ANALOG_FULL_SCALE)
        if mode in (PinMode.ANALOG_OUT, PinMode.PWM_OUT):
            raise PeripheralUsageError(f"{self.name}.read: pin is an analog or PWM output")
        digital = self.board.digital_input(self)
        return 0 if digital is None else digital

    @property
    def duty(self) -> float:
        """The PWM duty cycle (or analog output fraction) the pin drives."""
        return self.level

    def show_signal(self, signal: Any) -> None:
        """The pin plays a whole waveform (a BlinkUp flash): tell its signal listeners."""
        for listener in list(self.signal_listeners):
            listener(signal)

    def _drive(self, value: float) -> None:
        self.level = value
        for listener in list(self.listeners):
            listener(self, value)


def _number(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)):  # a bool is a number here, as in Squirrel
        raise PeripheralUsageError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _duty(value: Any, name: str) -> float:
    duty = _number(value, f"{name}.write")
    if not 0.0 <= duty <= 1.0:
        raise PeripheralUsageError(f"{name}.write: {duty} is outside 0.0..1.0")
    return duty


class PinBank:
    """The pins of one board, the wires between them, and what drives them from outside.

    ``names`` are the pins this board has (``hardware.pinX`` for any other name is
    an error); ``capabilities`` restricts modes to pins (``{PinMode.ANALOG_IN:
    {"pin1", ...}}``; a mode not listed is allowed on every pin).
    """

    def __init__(self, names: Iterable[str] = LEGACY_PIN_NAMES, host: Host | None = None,
                 capabilities: Mapping[PinMode, Iterable[str]] | None = None) -> None:
        self.names = tuple(names)
        self.host = host or Host()
        self.capabilities = {PinMode(m): frozenset(p) for m, p in (capabilities or {}).items()}
        self.pins: dict[str, Pin] = {}
        self.wires: dict[str, str] = {}
        self._strong: dict[str, dict[str, float]] = {}
        self._weak: dict[str, dict[str, float]] = {}

    # --- the imp side -----------------------------------------------------------

    @property
    def dispatch(self) -> Dispatch:
        return self.host.dispatch

    @dispatch.setter
    def dispatch(self, fn: Dispatch) -> None:
        self.host.dispatch = fn

    @property
    def inputs(self) -> dict[str, float]:
        """What tests set with ``set_input`` (today's ``SimHardware.inputs``)."""
        return {name: d[TEST_INPUT] for name, d in self._strong.items() if TEST_INPUT in d}

    def pin(self, name: str) -> Pin:
        if name not in self.names:
            raise PeripheralUsageError(f"no such pin: {name}")
        pin = self.pins.get(name)
        if pin is None:
            pin = self.pins[name] = Pin(name, self)
        return pin

    # --- the world side -----------------------------------------------------------

    def wire(self, a: str, b: str) -> None:
        """Connect two pins (a loopback): each reads what the other drives."""
        watched = self.snapshot(self.pin(a), self.pin(b))
        self.wires[a] = b
        self.wires[b] = a
        self.settle(watched)

    def cut(self, a: str) -> None:
        """Break the wire at ``a`` (a fault for a loopback test to find)."""
        other = self.wires.get(a)
        if other is None:
            return
        watched = self.snapshot(self.pin(a), self.pin(other))
        self.wires.pop(a, None)
        self.wires.pop(other, None)
        self.settle(watched)

    def set_input(self, name: str, level: float) -> None:
        """What an unwired input pin sees: 0..1 (digital threshold 0.5; analog fraction)."""
        self.drive(name, TEST_INPUT, float(level))

    def drive(self, name: str, source: str, level: float | None, weak: bool = False) -> None:
        """Source ``source`` drives pin ``name`` to ``level`` (``None``: lets go of it)."""
        watched = self.snapshot(self.pin(name))
        table = (self._weak if weak else self._strong).setdefault(name, {})
        if level is None:
            table.pop(source, None)
        else:
            table[source] = float(level)
        self.settle(watched)

    def input_level(self, name: str, default: float) -> float:
        """The level pin ``name`` sees from outside; ``default`` when nothing drives it."""
        peer = self.wires.get(name)
        if peer is not None:
            driver = self.pins[peer]
            if driver.mode in OUTPUT_MODES:
                return driver.level
        strong = self._strong.get(name)
        if strong:
            return min(strong.values())
        weak = self._weak.get(name)
        if weak:
            return min(weak.values())
        return default

    def digital_input(self, pin: Pin) -> int | None:
        """The digital level an input pin reads now (``None`` when it is no input)."""
        if pin.mode not in INPUT_MODES:
            return None
        default = 1.0 if pin.mode is PinMode.DIGITAL_IN_PULLUP else 0.0
        return int(self.input_level(pin.name, default=default) > 0.5)

    def notify_input(self, pin: Pin, before: int | None) -> None:
        """Run ``pin``'s state-change callback when its digital input changed."""
        now = self.digital_input(pin)
        if pin.callback is not None and None not in (before, now) and now != before:
            self.host.dispatch(pin.callback)

    def peer(self, pin: Pin) -> Pin | None:
        """The pin wired to ``pin``, if any."""
        other = self.wires.get(pin.name)
        return None if other is None else self.pin(other)

    def snapshot(self, *pins: Pin | None) -> list[tuple[Pin, int | None]]:
        """The digital inputs of ``pins`` now, for ``settle`` after a change."""
        return [(p, self.digital_input(p)) for p in pins if p is not None]

    def settle(self, snapshot: list[tuple[Pin, int | None]]) -> None:
        """Run the state-change callback of every pin in ``snapshot`` whose input changed."""
        for pin, before in snapshot:
            self.notify_input(pin, before)
