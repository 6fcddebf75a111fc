"""The simulated RP2040 and bench wiring the controller firmware runs on, tested alone.

Timers keep board time from the injected clock (a VirtualClock here, so every
expectation is exact); the TCS34725 model is its register map and conversion
rule; pins, PWM, ADC and UART behave as MicroPython's rp2 port documents. The
last tests drive the firmware on a board with no pty: its streams count exactly,
and a main loop that falls behind shows lost samples as a gap, never a shift.
"""

from __future__ import annotations

import errno
from typing import Any

import numpy as np
import pytest
from bench_targets import DarkBench

from impfactory.clock import VirtualClock
from impfactory.hw.bench_emulated import EmulatedBenchController
from impfactory.hw.controller.sim import TICKS_PERIOD, SimBoard
from impfactory.hw.peripherals import tcs34725 as tcs
from impfactory.protocol import bench as bp


def machine(board: SimBoard) -> Any:
    return board.modules["machine"]


# ---------------------------------------------------------------- timers and time


def test_a_periodic_timer_fires_on_the_board_clock() -> None:
    board = SimBoard(VirtualClock())
    seen: list[int] = []
    ticks = board.modules["time"].ticks_us
    timer = machine(board).Timer(freq=142.857, callback=lambda t: seen.append(ticks()))
    assert timer.delta_us == 7000  # rp2: 1e6 / freq, truncated to whole microseconds
    board.run_until(70_000, lambda: None)
    assert seen == [7000 * k for k in range(1, 11)]
    timer.deinit()
    board.run_until(140_000, lambda: None)
    assert len(seen) == 10


def test_one_shot_timers_and_re_arming_from_a_callback() -> None:
    board = SimBoard(VirtualClock())
    m = machine(board)
    fired: list[int] = []
    m.Timer(mode=m.Timer.ONE_SHOT, period=25, callback=lambda t: fired.append(board.now_us))
    clock_timer = m.Timer()

    def again(t: Any) -> None:
        fired.append(-board.now_us)
        if len(fired) < 4:
            t.init(mode=m.Timer.ONE_SHOT, period=3, callback=again)

    clock_timer.init(mode=m.Timer.ONE_SHOT, period=10, callback=again)
    board.run_until(100_000, lambda: None)
    assert fired == [-10_000, -13_000, -16_000, -19_000, 25_000]


def test_the_main_loop_turns_often_while_timers_fire_and_rarely_when_idle() -> None:
    board = SimBoard(VirtualClock())
    turns: list[int] = []
    board.run_until(50_000, lambda: turns.append(board.now_us))
    assert turns == [10_000, 20_000, 30_000, 40_000, 50_000]
    machine(board).Timer(freq=1000, callback=lambda t: None)
    turns.clear()
    board.run_until(65_000, lambda: turns.append(board.now_us))
    assert turns == [60_000, *range(61_000, 65_001, 1000)]


def test_ticks_wrap_as_micropythons_do() -> None:
    board = SimBoard(VirtualClock())
    t = board.modules["time"]
    board.now_us = TICKS_PERIOD - 5
    before = t.ticks_us()
    board.now_us = TICKS_PERIOD + 5
    after = t.ticks_us()
    assert after == 5 and t.ticks_diff(after, before) == 10 and t.ticks_diff(before, after) == -10
    assert t.ticks_add(before, 10) == after


def test_board_time_follows_the_injected_clock() -> None:
    clock = VirtualClock(start=100.0)
    board = SimBoard(clock)
    clock.advance_sync(0.25)
    assert board.clock_us() == 250_000
    assert board.seconds(250_000) == pytest.approx(100.25)


# ---------------------------------------------------------------- peripherals


def test_pins_pwm_adc_and_uart_reach_their_listeners() -> None:
    board = SimBoard(VirtualClock())
    m = machine(board)
    writes: list[int] = []
    board.pin_listeners[16] = writes.append
    pin = m.Pin(16, m.Pin.OUT, value=1)  # configuration is not a write
    pin.value(0)
    pin.value(0)
    assert writes == [0, 0] and pin.value() == 0
    pwm_seen: list[tuple[int, bool]] = []
    board.pwm_listeners[15] = lambda duty, inv: pwm_seen.append((duty, inv))
    pwm = m.PWM(m.Pin(15), freq=50_000, duty_u16=0)
    pwm.init(duty_u16=65535, invert=1)
    assert pwm_seen == [(0, False), (65535, True)]
    board.adc_sources[0] = lambda: 0xABC
    assert m.ADC(0).read_u16() == (0xABC << 4) | 0xA == m.ADC(m.Pin(26)).read_u16()
    board.adc_sources[0] = lambda: 9999  # a source beyond full scale reads full scale
    assert m.ADC(0).read_u16() == 0xFFFF
    sent: list[bytes] = []
    board.uart_listeners[1] = sent.append
    uart = m.UART(1, baudrate=115200, rxbuf=8)
    uart.write(b"hi")
    uart.deliver(b"0123456789")
    assert sent == [b"hi"] and uart.any() == 8 and uart.dropped == 2
    buf = bytearray(5)
    assert uart.readinto(buf) == 5 and bytes(buf) == b"01234"
    uart.deinit()
    uart.deliver(b"lost")
    assert uart.any() == 0
    with pytest.raises(OSError):
        uart.write(b"x")


def lit(rgb: tuple[float, float, float]) -> tcs.Tcs34725:
    return tcs.Tcs34725(lambda: rgb)


def i2c(board: SimBoard, sensor: tcs.Tcs34725) -> Any:
    board.attach_i2c(0, tcs.ADDRESS, sensor)
    m = machine(board)
    return m.I2C(0, sda=m.Pin(4), scl=m.Pin(5), freq=400_000)


def test_tcs34725_registers_and_conversion() -> None:
    board = SimBoard(VirtualClock())
    sensor = lit((255, 176, 0))
    bus = i2c(board, sensor)
    assert bus.scan() == [tcs.ADDRESS]
    assert bus.readfrom_mem(tcs.ADDRESS, 0x80 | tcs.ID, 1) == b"\x44"
    # not yet enabled: no data, no AVALID
    assert bus.readfrom_mem(tcs.ADDRESS, 0xA0 | tcs.CDATAL, 8) == bytes(8)
    bus.writeto_mem(tcs.ADDRESS, 0x80 | tcs.ATIME, b"\xfc")  # 4 cycles
    bus.writeto_mem(tcs.ADDRESS, 0x80 | tcs.CONTROL, b"\x01")  # 4x
    bus.writeto_mem(tcs.ADDRESS, 0x80 | tcs.ENABLE, b"\x03")
    assert bus.readfrom_mem(tcs.ADDRESS, 0x80 | tcs.STATUS, 1) == b"\x01"
    data = bus.readfrom_mem(tcs.ADDRESS, 0xA0 | tcs.CDATAL, 8)  # auto-increment
    c, r, g, b = (int.from_bytes(data[i:i + 2], "little") for i in range(0, 8, 2))
    assert (r, g, b) == (255 * 16, 176 * 16, 0)
    assert c == 4096  # the clear channel saturates at 1024 x cycles
    # repeated-byte reads stay on one register
    assert bus.readfrom_mem(tcs.ADDRESS, 0x80 | tcs.ID, 3) == b"\x44" * 3


def test_tcs34725_gain_integration_and_saturation() -> None:
    sensor = lit((100, 10, 1))
    sensor.regs[tcs.ENABLE] = tcs.PON | tcs.AEN
    for atime, gain, expect in ((0xFF, 0, (100, 10, 1)), (0xF6, 2, (10240, 1600, 160)),
                                (0x00, 3, (65535, 65535, 15360))):
        sensor.regs[tcs.ATIME], sensor.regs[tcs.CONTROL] = atime, gain
        assert sensor.counts()[1:] == expect


def test_a_missing_or_confused_tcs34725() -> None:
    board = SimBoard(VirtualClock())
    sensor = lit((1, 2, 3))
    bus = i2c(board, sensor)
    assert not sensor.write(b"\x12")  # no command bit: NACK
    sensor.set_fault("missing")
    with pytest.raises(OSError) as err:
        bus.readfrom_mem(tcs.ADDRESS, 0x92, 1)
    assert err.value.errno == errno.EIO
    assert bus.scan() == []


# ---------------------------------------------------------------- the firmware on a board


class Ramp(DarkBench):
    def __init__(self) -> None:
        self.presses: list[float] = []
        self.light: list[np.ndarray] = []

    def fixture_light(self, times: np.ndarray) -> np.ndarray:
        return np.asarray(times % 1.0)

    def press_button(self, seconds: float) -> None:
        self.presses.append(seconds)

    def light_to_dut(self, t0: float, levels: np.ndarray, rate_hz: float) -> None:
        self.light.append(levels)


def serve(target: Any, **kwargs: Any) -> tuple[EmulatedBenchController, VirtualClock,
                                                bp.FrameDecoder, list[bp.Packet]]:
    clock = VirtualClock()
    controller = EmulatedBenchController(target, clock, **kwargs)
    decoder, got = bp.FrameDecoder(), []

    def out(frame: bytes) -> None:
        got.extend(p for p in decoder.feed(frame) if isinstance(p, bp.Packet))

    controller._write = out  # type: ignore[method-assign]
    return controller, clock, decoder, got


def advance(controller: EmulatedBenchController, clock: VirtualClock, seconds: float) -> None:
    for _ in range(round(seconds / 0.01)):
        clock.advance_sync(0.01)
        controller.run()


def test_a_stream_counts_exactly_on_the_boards_timer() -> None:
    controller, clock, _, got = serve(Ramp())
    controller.receive(bp.encode(1, bp.LightInStart(bp.rate_to_mhz(2000.0))))
    advance(controller, clock, 1.5)
    controller.receive(bp.encode(2, bp.StreamStop(bp.Stream.ALL)))
    frames = [p.message for p in got if isinstance(p.message, bp.LightInSamples)]
    samples = [s for f in frames for s in f.samples]
    assert len(samples) == 3000  # 1.5 s at 2 kHz, the first at one period
    assert [f.offset for f in frames] == list(itertools_accumulate(len(f.samples)
                                                                   for f in frames))
    expected = np.round((np.arange(1, 3001) * 500 / 1e6 % 1.0) * 4095).astype(int)
    assert np.abs((np.asarray(samples) >> 4) - expected).max() <= 1  # 12 bits, read as u16
    assert isinstance(got[-1].message, bp.Ack) and got[-1].seq == 2


def itertools_accumulate(sizes: Any) -> list[int]:
    out, total = [], 0
    for n in sizes:
        out.append(total)
        total += n
    return out


def test_a_main_loop_that_falls_behind_loses_samples_as_a_gap() -> None:
    """Timers fire 4096 + 904 times between two turns of the main loop: the ring holds
    4096; the rest are lost, and the host sees them as a jump in offset plus OVERFLOW."""
    controller, clock, _, got = serve(Ramp())
    controller.receive(bp.encode(1, bp.LightInStart(bp.rate_to_mhz(20_000.0))))
    board = controller.board
    board.fire_until(board.now_us + 5000 * 50)  # 0.25 s of ticks, no turn in between
    controller.controller.poll()
    clock.advance_sync(0.26)
    controller.run(turn=True)
    frames = [p.message for p in got if isinstance(p.message, bp.LightInSamples)]
    errors = [p.message for p in got if isinstance(p.message, bp.Error)]
    assert sum(len(f.samples) for f in frames if f.offset < 4096) == 4096
    after = [f for f in frames if f.offset >= 4096]
    assert after[0].offset == 5000  # 904 lost, then samples at their true index
    assert [e.code for e in errors] == [bp.ErrorCode.OVERFLOW] and "904" in errors[0].message
    first_after = after[0].samples[0] >> 4
    assert first_after == round(((5001 * 50e-6) % 1.0) * 4095)


def test_the_button_is_held_as_long_as_asked() -> None:
    target = Ramp()
    controller, clock, _, _got = serve(target)
    controller.receive(bp.encode(1, bp.Button(250)))
    assert target.presses == [0.25]
    assert controller.board.pins[17] == 1
    advance(controller, clock, 0.3)
    assert controller.board.pins[17] == 0


@pytest.mark.parametrize(("wiring", "flag", "lit"), [
    (None, 0, 1.0), (None, 1, 1.0), (True, 1, 1.0), (True, 0, 0.0), (False, 0, 1.0),
])
def test_the_led_is_wired_as_declared_or_as_configured(wiring: bool | None, flag: int,
                                                         lit: float) -> None:
    target = Ramp()
    controller, clock, _, _got = serve(target, led_active_high=wiring)
    controller.receive(bp.encode(1, bp.LightOut(100_000, START_END | flag, 0, b"\xff" * 20)))
    advance(controller, clock, 0.1)
    levels = np.concatenate(target.light)
    assert levels.max() == lit or levels.min() == 1 - lit
    assert levels[5] == lit  # 50 ms in: the LED shows the symbol, through its wiring


START_END = int(bp.LightOutFlag.START | bp.LightOutFlag.END)


def test_a_board_without_its_colour_sensor_says_so() -> None:
    controller, _clock, _, got = serve(DarkBench(), config={"colour_addr": 0x39})
    controller.receive(bp.encode(1, bp.Identify()))
    controller.receive(bp.encode(2, bp.StatusStart(bp.rate_to_mhz(100.0))))
    ident, refused = got[0].message, got[1].message
    assert isinstance(ident, bp.Identity)
    assert ident.capabilities == bp.Capability.ALL & ~bp.Capability.STATUS_SENSE
    assert isinstance(refused, bp.Error) and refused.code == bp.ErrorCode.UNSUPPORTED
