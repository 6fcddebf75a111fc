"""``impfactory bench uart``: the DUT's UART through the bench, as a console.

The DUT here answers each line it receives with a line of its own ("> TEXT"
in capitals) and has a boot banner waiting, so every assertion compares what
the command printed with what this file's DUT could have said, through the
emulated controller on a real pty and the real CLI entry point.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from bench_targets import DarkBench

from impfactory.clock import RealClock
from impfactory.hw.bench import BenchDriver, UartLines
from impfactory.hw.bench_emulated import ControllerThread, EmulatedBenchController
from impfactory.tools import cli

#: Bytes the DUT's UART gets out per controller tick: lines arrive in pieces.
BYTES_PER_TICK = 5


class ConsoleDut(DarkBench):
    """A bench whose DUT only has a (slow) UART: one answer per line received."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.out = bytearray()
        self.lock = threading.Lock()
        self._line = bytearray()

    def uart_to_dut(self, data: bytes) -> None:
        self.received += data
        for byte in data:
            if byte == ord("\n"):
                with self.lock:
                    self.out += b"> " + bytes(self._line).strip().upper() + b"\r\n"
                self._line.clear()
            else:
                self._line.append(byte)

    def uart_from_dut(self) -> bytes:
        with self.lock:
            piece = bytes(self.out[:BYTES_PER_TICK])
            del self.out[:BYTES_PER_TICK]
        return piece



@pytest.fixture
def console() -> Iterator[tuple[str, ConsoleDut, EmulatedBenchController]]:
    dut = ConsoleDut()
    controller = EmulatedBenchController(dut, RealClock())
    runner = ControllerThread(controller)
    path = runner.start()
    try:
        yield path, dut, controller
    finally:
        runner.stop()


def test_uart_sends_lines_and_prints_the_duts_answers(
    console: tuple[str, ConsoleDut, EmulatedBenchController],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, dut, _ = console
    code = cli.main(["bench", "uart", "--port", path, "--send", "hello imp", "--send", "again",
                     "--seconds", "1.5"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert bytes(dut.received) == b"hello imp\r\nagain\r\n"
    # each answer crossed several frames; the command printed whole lines only
    assert out == ["> HELLO IMP", "> AGAIN"]


def test_uart_with_the_pass_through_off_is_refused_in_one_line(
    console: tuple[str, ConsoleDut, EmulatedBenchController],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, dut, _ = console
    code = cli.main(["bench", "uart", "--port", path, "--baud", "0", "--send", "x"])
    err = capsys.readouterr().err
    assert code == 2 and dut.received == b""
    assert err.startswith("impfactory: error:") and "UNSUPPORTED" in err


def test_a_disabled_pass_through_forwards_nothing_from_the_dut(
    console: tuple[str, ConsoleDut, EmulatedBenchController],
) -> None:
    path, dut, _ = console
    with BenchDriver.open(path) as bench:
        bench.uart_config(0)
        with dut.lock:
            dut.out += b"lost while off\r\n"
        deadline = time.monotonic() + 5
        while dut.out and time.monotonic() < deadline:
            time.sleep(0.02)  # the controller drains the DUT's UART even when off
        assert not dut.out
        bench.uart_config(115200)
        bench.uart_write(b"on\n")
        got = b""
        while b"> ON\r\n" not in got and time.monotonic() < deadline:
            got += bench.uart_read(0.2)
        assert got == b"> ON\r\n"


@pytest.mark.parametrize(
    "option", [["--baud", "-1"], ["--baud", "fast"], ["--seconds", "-2"], ["--seconds", "inf"]]
)
def test_uart_bad_options_are_usage_errors(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "uart", "--port", "loop://", *option])
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_lines_hold_a_partial_line_until_its_end() -> None:
    lines = UartLines()
    assert lines.feed(b"abc") == []
    assert lines.feed(b"def\r\nxy\n\nz") == ["abcdef", "xy", ""]
    assert lines.feed(b"\xff\r") == []
    assert lines.rest() == ["z\ufffd"]
    assert lines.rest() == []
