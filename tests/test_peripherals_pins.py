"""Pins and the fixture's front panel: what device code reads and what the models do.

The pin bank keeps ``firmware.hardware``'s behaviour (outputs read back, pull-ups,
``set_input`` runs a state-change callback once per change, wired loopbacks) and
adds drivers from attached models: a button to ground with a pull-up, LEDs that
record what the imp drives on the injected clock, the BlinkUp LED's flashes.
Callbacks are counted through the host's ``dispatch``, as the emulated imp runs them.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impfactory.clock import VirtualClock
from impfactory.hw.peripherals import (
    BlinkUpLed,
    Bounce,
    Button,
    Host,
    Led,
    Level,
    PeripheralConfigError,
    PeripheralUsageError,
    PinBank,
    PinMode,
    Probe,
)


class Calls:
    """A host dispatcher that records each callback and runs it."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, fn: Any, *args: Any) -> Any:
        self.calls.append((fn, args))
        return fn(*args)


def bank(names: tuple[str, ...] = ("pin1", "pin2", "pin5", "pinC", "pinE", "pinM"),
         **capabilities: list[str]) -> tuple[VirtualClock, Calls, PinBank]:
    clock, calls = VirtualClock(), Calls()
    caps = {PinMode[m]: pins for m, pins in capabilities.items()}
    return clock, calls, PinBank(names, Host(clock, calls), caps)


def test_outputs_read_back_and_inputs_float_low_or_pull_up() -> None:
    _, _, pins = bank()
    out = pins.pin("pin1")
    out.configure(PinMode.DIGITAL_OUT)  # the starting level defaults to 0
    assert out.read() == 0 and out.level == 0.0
    out.write(1)
    assert out.read() == 1
    pins.pin("pin2").configure(PinMode.DIGITAL_IN)
    pins.pin("pin5").configure(PinMode.DIGITAL_IN_PULLUP)
    assert pins.pin("pin2").read() == 0
    assert pins.pin("pin5").read() == 1


def test_set_input_runs_the_callback_once_per_change_through_dispatch() -> None:
    _, calls, pins = bank()
    seen: list[int] = []
    pin = pins.pin("pin1")
    pin.configure(PinMode.DIGITAL_IN_PULLUP, lambda: seen.append(pin.read()))
    pins.set_input("pin1", 1.0)  # already high through the pull-up: no change
    pins.set_input("pin1", 0.0)
    pins.set_input("pin1", 0.2)  # still low
    pins.set_input("pin1", 1.0)
    assert seen == [0, 1]
    assert len(calls.calls) == 2
    assert pins.inputs == {"pin1": 1.0}


def test_a_wire_carries_an_output_to_an_input_and_its_callback() -> None:
    _, _, pins = bank()
    pins.wire("pin1", "pin2")
    driver, reader = pins.pin("pin1"), pins.pin("pin2")
    changes: list[int] = []
    reader.configure(PinMode.DIGITAL_IN, lambda: changes.append(reader.read()))
    driver.configure(PinMode.DIGITAL_OUT, 0)
    driver.write(1)
    assert reader.read() == 1
    driver.write(0)
    assert changes == [1, 0]
    pins.cut("pin1")
    driver.write(1)
    assert reader.read() == 0 and changes == [1, 0]


def test_analog_input_reads_sixteen_bits_of_what_is_applied() -> None:
    _, _, pins = bank()
    pin = pins.pin("pin5")
    pin.configure(PinMode.ANALOG_IN)
    pins.set_input("pin5", 0.5)
    assert pin.read() == round(0.5 * 65535)
    pins.set_input("pin5", 1.7)  # beyond the rail: clipped
    assert pin.read() == 65535


def test_misuse_is_refused_with_the_pin_named() -> None:
    _, _, pins = bank(ANALOG_IN=["pin5"])
    with pytest.raises(PeripheralUsageError, match=r"pin1\.read: pin is not configured"):
        pins.pin("pin1").read()
    pins.pin("pin1").configure(PinMode.DIGITAL_IN)
    with pytest.raises(PeripheralUsageError, match="not configured as an output"):
        pins.pin("pin1").write(1)
    with pytest.raises(PeripheralUsageError, match="ANALOG_IN is not available"):
        pins.pin("pin2").configure(PinMode.ANALOG_IN)
    with pytest.raises(PeripheralUsageError, match="no such pin: pinZ"):
        pins.pin("pinZ")
    with pytest.raises(PeripheralUsageError, match="unknown mode"):
        pins.pin("pin1").configure(99)
    with pytest.raises(PeripheralUsageError, match="expected a number, got 'high'"):
        pins.pin("pin1").configure(PinMode.DIGITAL_OUT, "high")
    pins.pin("pin1").write(True)  # a Squirrel bool is a level
    assert pins.pin("pin1").read() == 1
    pins.pin("pin2").configure(PinMode.PWM_OUT, 0.001, 0.5)
    with pytest.raises(PeripheralUsageError, match=r"outside 0\.0\.\.1\.0"):
        pins.pin("pin2").write(1.5)


@given(duty=st.floats(min_value=0.0, max_value=1.0), period=st.floats(1e-6, 1.0))
def test_pwm_duty_and_period_are_observed(duty: float, period: float) -> None:
    clock, _, pins = bank()
    led = Led(pins, "pinE", Host(clock))
    pin = pins.pin("pinE")
    pin.configure(PinMode.PWM_OUT, period, 0.0)
    pin.write(duty)
    assert pin.period == period and pin.duty == duty
    assert led.brightness == duty


def test_led_history_is_timed_on_the_injected_clock() -> None:
    clock, _, pins = bank()
    led = Led(pins, "pinE")
    pin = pins.pin("pinE")
    pin.configure(PinMode.DIGITAL_OUT, 0)
    clock.advance_sync(1.5)
    pin.write(1)
    clock.advance_sync(2.0)
    pin.write(1)  # no change: no new entry
    pin.write(0)
    clock.advance_sync(1.0)
    pin.write(1)
    assert led.history == [(0.0, 0.0), (1.5, 1.0), (3.5, 0.0), (4.5, 1.0)]
    assert led.lit
    assert led.lit_intervals(until=5.0) == [(1.5, 3.5), (4.5, 5.0)]
    low = Led(pins, "pin1", active_high=False)
    pins.pin("pin1").configure(PinMode.DIGITAL_OUT, 0)
    assert low.lit and low.brightness == 1.0


def test_button_to_ground_with_pull_up_reads_one_at_rest_zero_pressed() -> None:
    _, calls, pins = bank()
    button = Button(pins, "pinC")
    pin = pins.pin("pinC")
    levels: list[int] = []
    pin.configure(PinMode.DIGITAL_IN, lambda: levels.append(pin.read()))  # no internal pull
    assert pin.read() == 1
    button.press()
    assert pin.read() == 0 and button.pressed
    button.release()
    assert pin.read() == 1
    button.tap(hold=0)
    assert levels == [0, 1, 0, 1]
    assert len(calls.calls) == 4 and button.presses == 2


def test_a_tap_releases_after_its_hold_time() -> None:
    clock, _, pins = bank()
    button = Button(pins, "pinC")
    pin = pins.pin("pinC")
    pin.configure(PinMode.DIGITAL_IN)
    button.tap(hold=0.1)
    assert pin.read() == 0
    clock.advance_sync(0.099)
    assert pin.read() == 0
    clock.advance_sync(0.002)
    assert pin.read() == 1


def test_a_bouncing_button_chatters_then_settles() -> None:
    clock, calls, pins = bank()
    button = Button(pins, "pinC", bounce=Bounce(edges=4, interval=0.001))
    pin = pins.pin("pinC")
    levels: list[int] = []
    pin.configure(PinMode.DIGITAL_IN, lambda: levels.append(pin.read()))
    button.press()
    assert levels == [0]  # first contact
    clock.advance_sync(0.01)
    assert levels == [0, 1, 0, 1, 0]  # four more edges, settled closed
    assert pin.read() == 0
    button.release()
    clock.advance_sync(0.01)
    assert levels[-1] == 1 and pin.read() == 1
    assert len(calls.calls) == len(levels) == 10


@pytest.mark.parametrize(("stuck", "reads"), [("pressed", 0), ("released", 1)])
def test_a_stuck_button_never_changes(stuck: str, reads: int) -> None:
    _, calls, pins = bank()
    button = Button(pins, "pinC")
    pin = pins.pin("pinC")
    pin.configure(PinMode.DIGITAL_IN, lambda: None)
    button.set_fault("stuck", stuck)
    calls.calls.clear()
    assert pin.read() == reads
    button.press()
    assert pin.read() == reads
    button.release()
    button.tap(hold=0)
    assert pin.read() == reads and calls.calls == []
    button.clear_fault()
    button.press()
    assert pin.read() == 0


def test_a_stuck_fault_with_a_bad_value_is_refused_by_name() -> None:
    _, _, pins = bank()
    with pytest.raises(PeripheralConfigError, match="fault stuck: bad value 'sideways'"):
        Button(pins, "pinC").set_fault("stuck", "sideways")
    with pytest.raises(PeripheralConfigError, match=r"unknown fault .melted.*stuck"):
        Button(pins, "pinC").set_fault("melted")


def test_blinkup_led_sees_flashes_and_leaves_other_signal_listeners_be() -> None:
    clock, _, pins = bank()
    led = BlinkUpLed(pins, "pinM")
    optical: list[Any] = []
    pin = pins.pin("pinM")
    pin.signal_listeners.append(optical.append)
    clock.advance_sync(2.0)
    pin.show_signal("flash-1")
    assert led.flashes == [(2.0, "flash-1")]
    assert optical == ["flash-1"]


def test_a_level_source_and_a_probe() -> None:
    _, _, pins = bank()
    fault = Level(pins, "pin2", 1.0)
    pin = pins.pin("pin2")
    pin.configure(PinMode.DIGITAL_IN)
    assert pin.read() == 1
    fault.set(0.0)
    assert pin.read() == 0
    probe = Probe(pins, "pin1")
    pins.pin("pin1").configure(PinMode.DIGITAL_OUT, 1)
    assert probe.level == 1.0
