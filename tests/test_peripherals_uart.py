"""The UART: Electric Imp's configure/write/read API, and bytes that take their line time.

A recording peer stands at the far end. On a virtual clock, a byte written reaches
it exactly (start + data + parity + stop bits) / baud after the line was free; a
byte the peer sends can be read once its stop bit has arrived, and the receive
callback runs (through the host's dispatch) once the burst is in, with every byte
readable. Mismatched line settings garble, a full FIFO overruns, and each
misuse the imp refuses is refused by name.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impfactory.clock import VirtualClock
from impfactory.hw.peripherals import UART, Host, LineSettings, PeripheralUsageError, UartLoopback
from impfactory.hw.peripherals.uart import (
    FRAME_ERROR,
    NO_CTSRTS,
    NO_RX,
    NO_TX,
    OVERRUN_ERROR,
    PARITY_EVEN,
    PARITY_NONE,
    PARITY_ODD,
    READ_READY,
    TIMING_ENABLED,
    WRITE_DONE,
)


class Peer:
    """Records what arrives and when; ``send`` answers from the far end."""

    def __init__(self, clock: VirtualClock, line: LineSettings) -> None:
        self.clock, self.line = clock, line
        self.got: list[tuple[float, bytes]] = []
        self.send: Any = None

    def attach(self, send: Any) -> None:
        self.send = send

    def receive(self, data: bytes) -> None:
        self.got.append((self.clock.now(), data))


class Dispatch:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, fn: Any, *args: Any) -> Any:
        self.calls.append(args)
        return fn(*args)


def setup(baud: float = 19200, peer_line: LineSettings | None = None
          ) -> tuple[VirtualClock, Dispatch, UART, Peer]:
    clock, dispatch = VirtualClock(), Dispatch()
    uart = UART("uart2", Host(clock, dispatch), baud_range=(300, 4_000_000), min_fifo=20)
    peer = Peer(clock, peer_line or LineSettings(baud))
    uart.attach(peer)
    return clock, dispatch, uart, peer


def test_a_write_arrives_when_its_last_stop_bit_has_gone() -> None:
    clock, _, uart, peer = setup()
    assert uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS) == 19200
    uart.write(b"abc")
    byte_time = 10 / 19200
    clock.advance_sync(3 * byte_time - 1e-9)
    assert peer.got == []
    clock.advance_sync(2e-9)
    assert peer.got == [(pytest.approx(3 * byte_time), b"abc")]
    assert uart.sent == b"abc"


@given(baud=st.sampled_from([1200, 9600, 19200, 115200]), word=st.sampled_from([7, 8]),
       parity=st.sampled_from([PARITY_NONE, PARITY_EVEN, PARITY_ODD]),
       stop=st.sampled_from([1, 2]), sizes=st.lists(st.integers(1, 20), min_size=1, max_size=4))
def test_back_to_back_writes_queue_at_the_frame_rate(baud: int, word: int, parity: int,
                                                     stop: int, sizes: list[int]) -> None:
    line = LineSettings(baud, word, parity, stop)
    clock, _, uart, peer = setup(baud, line)
    uart.configure(baud, word, parity, stop, NO_CTSRTS)
    for size in sizes:
        uart.write(bytes(size))
    clock.advance_sync(10.0)
    frame = (1 + word + (parity != PARITY_NONE) + stop) / baud
    ends = [sum(sizes[: i + 1]) * frame for i in range(len(sizes))]
    assert [t for t, _ in peer.got] == pytest.approx(ends)


def test_bytes_from_the_peer_land_one_frame_apart_and_call_back_once() -> None:
    clock, dispatch, uart, peer = setup()
    got: list[int] = []

    def on_rx() -> None:
        while (byte := uart.read()) != -1:
            got.append(byte)

    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS, on_rx)
    peer.send(b"\x41\x00\x52\x3c")
    byte_time = 10 / 19200
    assert uart.read() == -1
    clock.advance_sync(byte_time * 1.5)
    assert uart.read() == 0x41  # the first stop bit is in; the callback has not run
    assert dispatch.calls == []
    clock.advance_sync(byte_time * 3)
    assert got == [0x00, 0x52, 0x3C]
    assert dispatch.calls == [()]


def test_a_callback_that_takes_flags_gets_them_and_write_done_is_flagged() -> None:
    clock, dispatch, uart, peer = setup()
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS, lambda flags: None,
                   callback_takes_flags=True)
    uart.write("hi")
    clock.advance_sync(0.01)
    peer.send(b"x")
    clock.advance_sync(0.01)
    assert dispatch.calls == [(WRITE_DONE,), (READ_READY,)]
    assert uart.readstring() == "x"


def test_getflags_reports_and_clears() -> None:
    clock, _, uart, peer = setup()
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS)
    peer.send(b"ok")
    clock.advance_sync(0.01)
    assert uart.getflags() & READ_READY
    assert uart.getflags() == 0
    assert uart.readblob() == b"ok"


def test_a_peer_at_another_rate_arrives_garbled_with_frame_errors() -> None:
    clock, _, uart, peer = setup(peer_line=LineSettings(9600))
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS)
    peer.send(b"\x40\x00")
    clock.advance_sync(0.01)
    assert uart.readblob() != b"\x40\x00"
    assert uart.getflags() & FRAME_ERROR
    uart.write(b"\x06\x00")
    clock.advance_sync(0.01)
    assert peer.got[-1][1] != b"\x06\x00"


def test_a_baud_within_tolerance_is_understood() -> None:
    clock, _, uart, peer = setup(peer_line=LineSettings(19200 * 1.02))
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS)
    peer.send(b"ok")
    clock.advance_sync(0.01)
    assert uart.readstring(2) == "ok" and not uart.getflags() & FRAME_ERROR


def test_a_full_fifo_overruns() -> None:
    clock, _, uart, peer = setup()
    uart.setrxfifosize(20)
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS)
    peer.send(bytes(range(25)))
    clock.advance_sync(0.1)
    assert uart.readblob() == bytes(range(20))
    assert uart.getflags() & OVERRUN_ERROR


def test_fifo_sizes_are_set_while_disabled_and_not_below_the_minimum() -> None:
    _, _, uart, _ = setup()
    with pytest.raises(PeripheralUsageError, match="at least 20"):
        uart.settxfifosize(19)
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS)
    with pytest.raises(PeripheralUsageError, match="disable the UART before resizing"):
        uart.setrxfifosize(200)
    uart.disable()
    uart.setrxfifosize(200)
    assert uart.rx_fifo_size == 200


def test_no_rx_drops_and_no_tx_refuses() -> None:
    clock, _, uart, peer = setup()
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS | NO_RX)
    peer.send(b"lost")
    clock.advance_sync(0.1)
    assert uart.read() == -1
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS | NO_TX)
    with pytest.raises(PeripheralUsageError, match="NO_TX"):
        uart.write(b"x")


def test_disable_drops_what_is_in_flight() -> None:
    clock, dispatch, uart, peer = setup()
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS, lambda: None)
    peer.send(b"abc")
    uart.disable()
    clock.advance_sync(0.1)
    assert dispatch.calls == []
    with pytest.raises(PeripheralUsageError, match="not configured"):
        uart.read()


@pytest.mark.parametrize(("args", "message"), [
    ((100, 8, PARITY_NONE, 1, 0), "baud rate 100 outside"),
    ((19200, 9, PARITY_NONE, 1, 0), "word size must be 7 or 8"),
    ((19200, 8, 9, 1, 0), "unknown parity"),
    ((19200, 8, PARITY_NONE, 3, 0), "stop bits must be 1 or 2"),
    ((19200, 8, PARITY_NONE, 1, 0x100), "unknown flags"),
    ((19200, 8, PARITY_NONE, 1, TIMING_ENABLED), "TIMING_ENABLED is not modelled"),
])
def test_bad_configurations_are_refused_by_name(args: tuple[Any, ...], message: str) -> None:
    _, _, uart, _ = setup()
    with pytest.raises(PeripheralUsageError, match=message):
        uart.configure(*args)


def test_write_takes_strings_blobs_and_integer_bytes() -> None:
    clock, _, uart, peer = setup()
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS)
    uart.write("A")
    uart.write(b"B")
    uart.write(0x43)
    clock.advance_sync(0.1)
    assert b"".join(d for _, d in peer.got) == b"ABC"
    with pytest.raises(PeripheralUsageError, match="expected a string, blob or integer"):
        uart.write(1.5)


def test_a_loopback_plug_echoes() -> None:
    clock = VirtualClock()
    uart = UART("uart57", Host(clock))
    uart.attach(UartLoopback(115200))
    uart.configure(115200, 8, PARITY_NONE, 1, NO_CTSRTS)
    uart.write("ping")
    clock.advance_sync(0.01)
    assert uart.readstring() == "ping"
