"""The Factory BlinkUp Box's front panel: buttons, footswitch, LEDs, and plain pin probes.

Each model sits on one pin of a ``PinBank`` and touches it only as the hardware
would:

* ``Button``: a switch to ground with an external pull-up (active low), as the
  box's green button and footswitch are wired, so the imp reads 1 at rest and 0
  while pressed even with a plain ``DIGITAL_IN``. ``bounce`` makes a press or
  release chatter (``edges`` extra transitions ``interval`` apart on the injected
  clock) before it settles; without it the contact is clean. Fault ``stuck``:
  ``pressed`` (always pressed) or ``released`` (never changes).
* ``Probe``: watches what the imp drives on a pin, with a time-stamped history.
* ``Led``: a probe that knows which level lights it (``lit``, ``brightness`` for
  PWM).
* ``BlinkUpLed``: the LED ``server.factoryblinkup`` flashes; it records each flash
  it is shown through the pin's signal listeners, the path the optical channel
  already uses, which it leaves untouched.
* ``Level``: a fixed input level (the box's ``USB_FAULT_L`` line at rest), settable.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .faults import Faultable, FaultSpec, choice
from .host import Host
from .pins import Pin, PinBank


@dataclass(frozen=True)
class Bounce:
    """Contact chatter: ``edges`` extra transitions, ``interval`` seconds apart."""

    edges: int = 4
    interval: float = 0.0005


class Button(Faultable):
    """A push switch on ``pin``: pressed pulls it to the active level."""

    FAULTS: ClassVar[Mapping[str, FaultSpec]] = {
        "stuck": FaultSpec("the switch never moves: 'pressed' (always) or 'released' (never)",
                           choice("pressed", "released"), "pressed"),
    }

    def __init__(self, pins: PinBank, pin: str, host: Host | None = None,
                 active_low: bool = True, pull: bool = True,
                 bounce: Bounce | None = None) -> None:
        super().__init__()
        self.pins, self.pin_name = pins, pin
        self.host = host or pins.host
        self.active_low = active_low
        self.bounce = bounce
        self.source = f"button:{pin}"
        self.pressed = False
        self.presses = 0
        self._pending: list[Any] = []
        if pull:  # the resistor that holds the line at its idle level
            pins.drive(pin, f"{self.source}:pull", 0.0 if not active_low else 1.0, weak=True)
        else:
            pins.pin(pin)

    @property
    def active_level(self) -> float:
        return 0.0 if self.active_low else 1.0

    def press(self) -> None:
        """Press (and hold) the button."""
        if self.fault("stuck") is None:
            self.pressed = True
            self.presses += 1
            self._move(True)

    def release(self) -> None:
        if self.fault("stuck") is None:
            self.pressed = False
            self._move(False)

    def tap(self, hold: float = 0.05) -> None:
        """Press, and release ``hold`` seconds later on the clock (0: at once)."""
        self.press()
        if hold <= 0:
            self.release()
        else:
            self._pending.append(self.host.clock.call_later(hold, self.release))

    def _move(self, closed: bool) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        if self.bounce is None or self.bounce.edges <= 0:
            self._contact(closed)
            return
        state = closed
        for i in range(self.bounce.edges + 1):
            at = i * self.bounce.interval
            level = state if (self.bounce.edges - i) % 2 == 0 else not state
            if at == 0:
                self._contact(level)
            else:
                self._pending.append(self.host.clock.call_later(
                    at, functools.partial(self._contact, level)))

    def _contact(self, closed: bool) -> None:
        self.pins.drive(self.pin_name, self.source, self.active_level if closed else None)

    def _faults_changed(self) -> None:
        stuck = self.fault("stuck")
        if stuck is not None:
            for handle in self._pending:
                handle.cancel()
            self._pending.clear()
            self.pressed = stuck == "pressed"
            self._contact(self.pressed)


class Probe:
    """Records what the imp drives on ``pin``: ``history`` of ``(time, level)``."""

    def __init__(self, pins: PinBank, pin: str, host: Host | None = None) -> None:
        self.pins, self.pin_name = pins, pin
        self.host = host or pins.host
        self.history: list[tuple[float, float]] = []
        pins.pin(pin).listeners.append(self._seen)

    def _seen(self, pin: Pin, level: float) -> None:
        if not self.history or self.history[-1][1] != level:
            self.history.append((self.host.clock.now(), level))

    @property
    def level(self) -> float:
        return self.history[-1][1] if self.history else 0.0


class Led(Probe):
    """An LED on ``pin``, lit by a high level (``active_high``) or a low one."""

    def __init__(self, pins: PinBank, pin: str, host: Host | None = None,
                 active_high: bool = True) -> None:
        super().__init__(pins, pin, host)
        self.active_high = active_high

    @property
    def brightness(self) -> float:
        """0..1: the driven level (a PWM duty cycle), inverted for an active-low LED."""
        if not self.history:
            return 0.0
        return self.level if self.active_high else 1.0 - self.level

    @property
    def lit(self) -> bool:
        return self.brightness > 0.5

    def lit_intervals(self, until: float | None = None) -> list[tuple[float, float]]:
        """``(on, off)`` times the LED was lit (``off`` = ``until`` or now if still lit)."""
        end = self.host.clock.now() if until is None else until
        spans, start = [], None
        for t, level in self.history:
            on = (level > 0.5) == self.active_high
            if on and start is None:
                start = t
            elif not on and start is not None:
                spans.append((start, t))
                start = None
        if start is not None:
            spans.append((start, end))
        return spans


class BlinkUpLed(Led):
    """The LED that ``server.factoryblinkup`` flashes: ``flashes`` lists ``(time, signal)``."""

    def __init__(self, pins: PinBank, pin: str, host: Host | None = None,
                 active_high: bool = True) -> None:
        super().__init__(pins, pin, host, active_high)
        self.flashes: list[tuple[float, Any]] = []
        pins.pin(pin).signal_listeners.append(self._flash)

    def _flash(self, signal: Any) -> None:
        self.flashes.append((self.host.clock.now(), signal))


class Level:
    """An input held at ``level`` by the board (``set`` changes it)."""

    def __init__(self, pins: PinBank, pin: str, level: float = 1.0) -> None:
        self.pins, self.pin_name = pins, pin
        self.source = f"level:{pin}"
        self.set(level)

    def set(self, level: float) -> None:
        self.level = float(level)
        self.pins.drive(self.pin_name, self.source, self.level)
