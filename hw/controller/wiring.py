"""What stands on the simulated bench: a ``BenchTarget`` wired to a ``SimBoard``'s pins.

The firmware drives pins and reads buses; this module turns those into the calls
a :class:`~impfactory.hw.bench_emulated.BenchTarget` (an emulated DUT and
fixture) understands, with the pin numbers of the firmware's configuration::

    led_pin PWM        -> light_to_dut(t0, levels, 1 kHz)   the DUT's light sensor
    ADC light_in_adc   <- fixture_light(times)              phototransistor, 12 bits
    I2C colour_addr    <- dut_status_rgb(times)             a TCS34725 model
    power_pin writes   -> set_power(on)                     every write, as a level
    button_pin 0 -> 1  -> press_button(seconds)             the relay closes
    UART uart_id       <-> uart_to_dut / uart_from_dut

The LED is wired "as declared" by default: its brightness is the duty the
firmware set before the PWM's output inversion, i.e. the LED is wired the way
each light-out's ACTIVE_HIGH flag says. ``led_active_high`` True or False wires
it one way for good (then a host that declares the other way sees inverted light,
as on a real bench).

The relay's press length: a target is told of a press when the relay closes, and
``press_button`` takes the press's length, so the wiring reads it from the one-shot
timer the firmware armed to open the relay again (the controller arms it first).

Sensors are read a timer tick at a time, but targets answer arrays of times
(numpy): a read inside a periodic timer's callback evaluates the source for the
rest of that timer's ticks up to the end of the board's current run at once, and
anything the firmware does to the bench (power, button, UART) discards what was
evaluated ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from impfactory.hw.peripherals import tcs34725
from impfactory.hw.peripherals.tcs34725 import Tcs34725

from .sim import SimBoard

#: How often the DUT's light sensor is fed (an imp samples its sensor at ~1 kHz).
DUT_SENSOR_RATE = 1000
DUT_FEED_US = 10_000
PREFETCH_MAX = 4096


class _Prefetch:
    """Values of ``source(times)`` on a timer's tick grid, evaluated ahead in one call."""

    def __init__(self, board: SimBoard, source: Callable[[np.ndarray], np.ndarray]) -> None:
        self.board = board
        self.source = source
        self.t0 = 0
        self.dt = 0
        self.values: list[Any] = []
        self.horizon = 0

    def at(self, t_us: int) -> Any:
        if self.dt:
            k, rest = divmod(t_us - self.t0, self.dt)
            if not rest and 0 <= k < len(self.values):
                return self.values[k]
        timer = self.board.firing
        dt = timer.delta_us if timer is not None and timer.periodic else 0
        n = 1
        if dt:
            n = int(min(PREFETCH_MAX, max(0, self.horizon - t_us) // dt + 1))
        times = t_us + np.arange(n, dtype=np.int64) * max(dt, 1)
        self.t0, self.dt = t_us, dt
        self.values = np.asarray(self.source(self.board.t0 + times / 1e6)).tolist()
        return self.values[0]

    def forget(self) -> None:
        self.values = []


class BenchWiring:
    """Connects ``target`` to ``board`` as the firmware ``config`` names the pins."""

    def __init__(self, board: SimBoard, target: Any, config: dict[str, Any], *,
                 led_active_high: bool | None = None) -> None:
        self.board = board
        self.target = target
        self.led_active_high = led_active_high
        self.light = _Prefetch(board, self._fixture_counts)
        self.colour = _Prefetch(board, self._status_rgb)
        self.sensor = Tcs34725(lambda: tuple(self.colour.at(board.now_us)))
        self._led_times: list[int] = [0]
        self._led_levels: list[float] = [0.0]
        self._fed_until: int | None = None
        self._led_dark_since_feed = False
        self.uart_id = config["uart_id"]
        board.pwm_listeners[config["led_pin"]] = self._pwm
        board.adc_sources[config["light_in_adc"]] = lambda: self.light.at(board.now_us)
        board.attach_i2c(config["i2c_id"], tcs34725.ADDRESS, self.sensor)
        board.pin_listeners[config["power_pin"]] = self._power
        board.pin_listeners[config["button_pin"]] = self._button
        board.uart_listeners[self.uart_id] = self._uart_tx
        board.before_turn = self.before_turn

    # --- the firmware's outputs -----------------------------------------------------

    def _pwm(self, duty: int, invert: bool) -> None:
        level = duty / 65535
        if self.led_active_high is not None:
            pin = 1 - level if invert else level
            level = pin if self.led_active_high else 1 - pin
        now = self.board.now_us
        if self._led_times[-1] == now:
            self._led_levels[-1] = level
        else:
            self._led_times.append(now)
            self._led_levels.append(level)
        if level == 0:
            self._led_dark_since_feed = True

    def _power(self, value: int) -> None:
        self._bench_changed()
        self.target.set_power(bool(value))

    def _button(self, value: int) -> None:
        if not value:
            return
        timer = self.board.last_oneshot
        hold_us = timer.due_us - self.board.now_us if timer is not None and timer.armed else 0
        self._bench_changed()
        self.target.press_button(max(0, hold_us) / 1e6)

    def _uart_tx(self, data: bytes) -> None:
        self._bench_changed()
        self.target.uart_to_dut(data)

    def _bench_changed(self) -> None:
        self.light.forget()
        self.colour.forget()

    # --- the firmware's inputs ------------------------------------------------------

    def _fixture_counts(self, times: np.ndarray) -> np.ndarray:
        level = np.clip(np.asarray(self.target.fixture_light(times), dtype=np.float64), 0, 1)
        return np.round(level * 4095).astype(np.int64)

    def _status_rgb(self, times: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(self.target.dut_status_rgb(times), dtype=np.float64), 0, 255)

    # --- every main-loop turn ---------------------------------------------------------

    def run_window(self, until_us: int) -> None:
        """The board is about to run to ``until_us``: sensors may evaluate up to there."""
        self.light.horizon = self.colour.horizon = until_us

    def before_turn(self, now_us: int) -> None:
        """Before the firmware's main loop turns: the DUT's UART and light sensor catch up."""
        uart = self.board.uarts.get(self.uart_id)
        data = self.target.uart_from_dut()
        if uart is not None and data:
            uart.deliver(data)
        if self._fed_until is None or self._led_dark_since_feed or \
                now_us - self._fed_until >= DUT_FEED_US:
            self.feed_dut(now_us)

    def feed_dut(self, now_us: int) -> None:
        """The bench LED as the DUT's sensor sees it, at 1 kHz, up to ``now_us``."""
        rate = DUT_SENSOR_RATE
        index_now = now_us * rate // 1_000_000
        if self._fed_until is None:
            self._fed_until = index_now
        start = self._fed_until
        self._led_dark_since_feed = False
        if index_now <= start:
            return
        sample_us = np.arange(start, index_now, dtype=np.int64) * (1_000_000 // rate)
        edges = np.asarray(self._led_times, dtype=np.int64)
        idx = np.searchsorted(edges, sample_us, side="right") - 1
        levels = np.asarray(self._led_levels)[np.maximum(idx, 0)]
        keep = max(0, int(idx[-1]))
        del self._led_times[:keep]
        del self._led_levels[:keep]
        self.target.light_to_dut(self.board.seconds(int(sample_us[0])), levels, float(rate))
        self._fed_until = index_now
