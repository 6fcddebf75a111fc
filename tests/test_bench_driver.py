"""The bench driver against the emulated controller over a real pty.

The target behind the controller is scripted here (a status LED blinking amber
500/500, a fixture LED with a known square wave, a DUT UART that echoes), so
every assertion compares against values this file computes on its own. Faults
are injected in the controller: a dropped byte each way, a corrupted reply, and
a controller that stops answering (a timeout, never a hang).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from impfactory.clock import RealClock, ScaledClock
from impfactory.hw import bench as hb
from impfactory.hw.bench_emulated import ControllerThread, EmulatedBenchController
from impfactory.hw.serialport import SerialPortError, open_port
from impfactory.protocol import bench as bp

AMBER = np.array([255, 176, 0])


class ScriptedTarget:
    """A bench with a known DUT and fixture; records what the controller did to it."""

    def __init__(self) -> None:
        self.powered: list[bool] = []
        self.presses: list[float] = []
        self.light: list[tuple[float, np.ndarray]] = []
        self.uart_in = bytearray()
        self._uart_out = bytearray()

    def set_power(self, on: bool) -> None:
        self.powered.append(on)

    def light_to_dut(self, t0: float, levels: np.ndarray, rate_hz: float) -> None:
        self.light.append((t0, levels.copy()))

    def dut_status_rgb(self, times: np.ndarray) -> np.ndarray:
        lit = (np.floor(times / 0.5) % 2) == 0
        return np.where(lit[:, None], AMBER, 0)

    def press_button(self, seconds: float) -> None:
        self.presses.append(seconds)

    def fixture_light(self, times: np.ndarray) -> np.ndarray:
        return np.where((np.floor(times * 50) % 2) == 0, 0.75, 0.25)

    def uart_to_dut(self, data: bytes) -> None:
        self.uart_in += data
        self._uart_out += data.upper()  # the DUT answers in capitals

    def uart_from_dut(self) -> bytes:
        out, self._uart_out = bytes(self._uart_out), bytearray()
        return out

    def lit_levels(self) -> np.ndarray:
        levels = np.concatenate([lv for _, lv in self.light]) if self.light else np.zeros(0)
        return levels[levels > 0]


Bench = tuple[EmulatedBenchController, ScriptedTarget, hb.BenchDriver]


@pytest.fixture
def bench() -> Iterator[Bench]:
    target = ScriptedTarget()
    controller = EmulatedBenchController(target, RealClock())
    runner = ControllerThread(controller)
    path = runner.start()
    driver = hb.BenchDriver.open(path, timeout=0.3, retries=3)
    try:
        yield controller, target, driver
    finally:
        driver.close()
        runner.stop()


def test_identify_over_a_pty(bench: Bench) -> None:
    controller, _, driver = bench
    assert controller.path.startswith("/dev/")
    ident = driver.identify()
    assert ident.protocol_version == bp.PROTOCOL_VERSION
    assert ident.capabilities == bp.Capability.ALL
    assert driver.resends == 0


def test_power_button_and_uart(bench: Bench) -> None:
    _, target, driver = bench
    driver.power(True)
    driver.power(False)
    driver.press_button(0.25)
    driver.uart_write(b"hello imp")
    assert target.powered == [True, False]
    assert target.presses == [0.25]
    got = b""
    deadline = time.monotonic() + 3
    while len(got) < 9 and time.monotonic() < deadline:
        got += driver.uart_read(timeout=0.5)
    assert got == b"HELLO IMP"


def test_light_out_plays_every_symbol_at_its_rate() -> None:
    """1100 symbols (more than one chunk) at 500 Hz: each held for two 1 kHz sensor samples."""
    target = ScriptedTarget()
    symbols = bytes([255, 128, 64, 32] * 275)
    with (
        ControllerThread(EmulatedBenchController(target, ScaledClock(5.0))) as path,
        hb.BenchDriver.open(path, timeout=0.3) as driver,
    ):
        duration = driver.light_out(symbols, rate_hz=500.0, active_high=False)
    assert duration == pytest.approx(2.2)
    levels = np.round(target.lit_levels() * 255).astype(int)
    runs = [int(v) for i, v in enumerate(levels) if i == 0 or levels[i - 1] != v]
    assert runs == list(symbols)
    assert abs(len(levels) - 2200) <= 2


def test_status_and_light_in_streams(
    bench: Bench,
) -> None:
    _, _, driver = bench
    started = time.monotonic()
    status = driver.start_status(100.0)
    light = driver.start_light_in(1000.0)
    # 1.2 s of both streams, waited for by count (a loaded machine may take longer)
    deadline = started + 30
    while (status.count() < 120 or light.count() < 1200) and time.monotonic() < deadline:
        time.sleep(0.02)
    driver.stop()
    streamed = time.monotonic() - started  # no controller can stream faster than the wall
    rgb = status.all()
    lv = light.all()[:, 0]
    assert status.lost == 0 and light.lost == 0
    assert 120 <= len(rgb) <= 100 * streamed + 5 and 1200 <= len(lv) <= 1000 * streamed + 20
    lit = rgb[:, 0] > 0
    assert set(map(tuple, rgb[lit].astype(int))) == {tuple(AMBER)}
    assert 0.25 < lit.mean() < 0.75  # half the time lit, give or take a phase
    assert set(np.round(lv / 65535, 2)) == {0.25, 0.75}
    # nothing arrives after stop acknowledged
    n = len(lv)
    time.sleep(0.1)
    assert light.count() == n


def test_a_dropped_reply_byte_is_retried_and_the_button_pressed_once(
    bench: Bench,
) -> None:
    controller, target, driver = bench
    controller.faults.drop_reply_byte = 1
    driver.press_button(0.1)
    assert target.presses == [0.1]  # the repeat was answered from the cache
    assert driver.resends >= 1
    assert driver.decoder.faults >= 1
    assert driver.identify().protocol_version == bp.PROTOCOL_VERSION


def test_a_new_session_is_never_taken_for_a_retry(bench: Bench) -> None:
    """Two sessions that press the button with the same sequence number press it twice."""
    controller, target, driver = bench
    driver.press_button(0.1)
    seq = driver._seq
    driver.close()  # one host at a time on a port
    with hb.BenchDriver.open(controller.path, timeout=0.3) as second:
        second._seq = seq - 1  # its next request would carry the same bytes as the last one
        second.press_button(0.1)
    assert target.presses == [0.1, 0.1]


def test_a_corrupted_reply_is_retried(
    bench: Bench,
) -> None:
    controller, target, driver = bench
    controller.faults.corrupt_reply = 1
    driver.power(True)
    assert target.powered == [True]
    assert driver.resends >= 1


def test_a_dropped_request_byte_is_reported_and_resent(
    bench: Bench,
) -> None:
    controller, target, driver = bench
    controller.faults.drop_request_byte = 1
    started = time.monotonic()
    driver.power(True)
    # the controller's BAD_FRAME error makes the driver resend at once, not after a timeout
    assert time.monotonic() - started < driver.timeout
    assert target.powered == [True]
    assert driver.resends == 1


def test_a_lost_light_out_done_is_recovered_by_asking(bench: Bench) -> None:
    controller, target, driver = bench
    driver.light_out(bytes([255, 0] * 150), rate_hz=500.0, wait=False)  # 0.6 s
    controller.faults.corrupt_reply = 1  # the next frame out: LIGHT_OUT_DONE
    started = time.monotonic()
    driver.wait_light_out()
    assert driver.lost_events == 1
    assert 0.3 < time.monotonic() - started < 0.6 + 3 * driver.timeout
    assert len(target.lit_levels()) == pytest.approx(300, abs=3)
    driver.light_out(bytes([255]), rate_hz=100.0)  # and the next one plays as usual
    assert driver.lost_events == 1


def test_a_lost_sample_frame_shows_as_a_gap_not_a_shift(
    bench: Bench,
) -> None:
    controller, _, driver = bench
    light = driver.start_light_in(1000.0)
    time.sleep(0.2)
    controller.faults.corrupt_reply = 1  # the next outgoing frame: a samples frame
    time.sleep(0.3)
    driver.stop()
    data = light.all()[:, 0]
    assert light.lost > 0
    assert np.isnan(data).sum() == light.lost
    # the fixture LED is a 25 Hz square wave (40 samples a period): with the gap
    # kept, every sample equals the one a period earlier; had the samples after
    # the gap moved up to close it, the comparison across the gap would break
    # (the gap is one frame, ~10 samples, not a whole number of periods)
    gap = np.flatnonzero(np.isnan(data))
    assert gap[-1] - gap[0] + 1 == len(gap) and len(gap) % 40 != 0
    now, before = data[40:], data[:-40]
    both = ~np.isnan(now) & ~np.isnan(before)
    assert both.sum() > 300
    assert np.array_equal(now[both], before[both])


def test_a_controller_that_stops_answering_is_a_timeout_not_a_hang(
    bench: Bench,
) -> None:
    controller, _, driver = bench
    driver.identify()
    controller.faults.muted = True
    started = time.monotonic()
    with pytest.raises(hb.BenchTimeoutError, match="stopped answering"):
        driver.power(True)
    elapsed = time.monotonic() - started
    assert elapsed == pytest.approx(driver.timeout * (driver.retries + 1), abs=0.5)
    controller.faults.muted = False
    driver.identify()  # and it recovers once the controller speaks again


def test_refusals_are_typed(bench: Bench) -> None:
    _, _, driver = bench
    with pytest.raises(hb.BenchRefusedError, match="RATE"):
        driver.start_status(1e6)
    with pytest.raises(hb.BenchRefusedError, match="BAD_SEQUENCE"):
        driver.request(bp.LightOut(60_000, 0, 5, b"\xff"))
    with pytest.raises(hb.BenchRefusedError, match="UNKNOWN_TYPE"):
        driver.request(bp.Ack(1))


def test_scaled_clock_runs_the_bench_faster_than_the_wall() -> None:
    target = ScriptedTarget()
    with (
        ControllerThread(EmulatedBenchController(target, ScaledClock(10.0))) as path,
        hb.BenchDriver.open(path, timeout=0.3) as driver,
    ):
        started = time.monotonic()
        driver.light_out(bytes([255]) * 300, rate_hz=60.0)  # 5 s of symbols
        assert time.monotonic() - started < 2.5
    assert abs(len(target.lit_levels()) - 5000) <= 20


def test_unopenable_ports_are_typed_errors() -> None:
    with pytest.raises(SerialPortError, match="nosuch"):
        open_port("/dev/nosuch-bench")
    with pytest.raises(SerialPortError):
        open_port("bogus-scheme://x")
    with pytest.raises(SerialPortError):
        hb.BenchDriver.open("")


def test_loop_url_without_a_controller_times_out() -> None:
    # loop:// echoes our own request back: a frame that is not an answer
    with hb.BenchDriver.open("loop://", timeout=0.1, retries=1) as driver:
        with pytest.raises(hb.BenchTimeoutError):
            driver.identify()
        assert driver.stale >= 1 or driver.decoder.frames >= 1


def test_closed_pty_is_a_link_error_or_timeout() -> None:
    target = ScriptedTarget()
    runner = ControllerThread(EmulatedBenchController(target))
    path = runner.start()
    with hb.BenchDriver.open(path, timeout=0.2, retries=1) as driver:
        driver.identify()
        runner.stop()
        with pytest.raises((hb.BenchLinkError, hb.BenchTimeoutError)):
            driver.identify()


def test_the_bench_port_fixture_shows_a_dut_waiting_for_blinkup(bench_port: str) -> None:
    """Runs on a real bench too: IMPFACTORY_BENCH_PORT=/dev/ttyACM0 pytest -k bench_port."""
    from impfactory.protocol.bench_status import StatusDecoder

    with hb.BenchDriver.open(bench_port) as driver:
        assert driver.identify().protocol_version == bp.PROTOCOL_VERSION
        driver.power(False)
        driver.power(True)
        status = driver.start_status(100.0)
        deadline = time.monotonic() + 30
        while status.count() < 500 and time.monotonic() < deadline:  # 5 bench seconds
            time.sleep(0.05)
        driver.stop()
    readings = StatusDecoder(100.0)
    readings.feed(status.all())
    assert readings.state == "waiting_blinkup"


class _NoModemLines:
    """The pty, seen by the RFC 2217 server as a port with modem lines that are
    kept here (a pty has none to query or set)."""

    cts = dsr = ri = cd = False
    LINES = ("dtr", "rts", "break_condition")

    def __init__(self, tty: Any) -> None:
        object.__setattr__(self, "_tty", tty)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tty, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.LINES:
            object.__setattr__(self, name, value)
        else:
            setattr(self._tty, name, value)


def _tcp_bridge(pty_path: str, rfc2217: bool = False) -> tuple[int, threading.Event]:
    """A one-connection TCP server on loopback relaying to the pty (like ser2net);
    with ``rfc2217`` it speaks Telnet COM-port control through pyserial's PortManager."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    done = threading.Event()

    def relay() -> None:
        conn, _ = server.accept()
        tty = open_port(pty_path, timeout=0.02)
        conn.settimeout(0.02)
        manager = None
        if rfc2217:
            import serial.rfc2217

            class Writer:
                def write(self, data: bytes) -> None:
                    conn.sendall(data)

            manager = serial.rfc2217.PortManager(_NoModemLines(tty), Writer())
        try:
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    data = conn.recv(4096)
                    if not data:
                        break
                    tty.write(b"".join(manager.filter(data)) if manager else data)
                waiting = tty.read(tty.in_waiting or 1)
                if waiting:
                    conn.sendall(b"".join(manager.escape(waiting)) if manager else waiting)
        finally:
            tty.close()
            conn.close()
            server.close()

    threading.Thread(target=relay, daemon=True).start()
    return port, done


@pytest.mark.filterwarnings("ignore:set(Daemon|Name).. is deprecated:DeprecationWarning")
@pytest.mark.parametrize("scheme", ["socket", "rfc2217"])
def test_the_driver_over_a_network_url(scheme: str) -> None:
    """socket:// and rfc2217://: the same driver through a TCP serial bridge."""
    target = ScriptedTarget()
    with ControllerThread(EmulatedBenchController(target)) as path:
        port, done = _tcp_bridge(path, rfc2217=scheme == "rfc2217")
        try:
            with hb.BenchDriver.open(f"{scheme}://127.0.0.1:{port}", timeout=0.5) as driver:
                assert driver.identify().protocol_version == bp.PROTOCOL_VERSION
                driver.power(True)
                light = driver.start_light_in(1000.0)
                time.sleep(0.3)
                driver.stop()
            assert target.powered == [True]
            assert light.lost == 0 and 250 <= light.count() <= 500
        finally:
            done.set()
