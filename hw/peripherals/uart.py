"""The imp's UART: bytes on a serial line, at the baud rate, on the injected clock.

Device code sees Electric Imp's API (``hardware.uart2``)::

    configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS, callback) -> actual baud
    write(data)          string, blob or one integer byte
    read() -> int        the next byte, or -1 when the receive FIFO is empty
    readstring(n) / readblob(n)
    flush(), disable(), setrxfifosize(n), settxfifosize(n), getflags()

At the other end of the line sits a model (``UartPeer``): it has its own line
settings, ``receive(data)`` is called with what the imp sent, and it sends back
through the ``send`` function the bus gives it at ``attach``. Timing is the
line's::

    frame = start bit + word_size data bits + parity bit (if any) + stop bits
    8N1: 10 bits a byte, so 19200 baud carries a byte every 520.8 us

A byte written at ``t`` reaches the peer when its last bit has gone, after those
queued before it; a byte the peer sends lands in the imp's receive FIFO when its
last bit has arrived, and the receive callback is run (through the host's
``dispatch``) once a burst has fully arrived, as an imp's callback finds every
byte that came in. ``read()`` sees any byte whose stop bit has passed. A FIFO
that is full drops what arrives (``OVERRUN_ERROR``). When the two ends disagree
on the line settings (baud more than 3 % apart, word size, parity, stop bits),
every byte arrives garbled with ``FRAME_ERROR``, as real receivers see it.

Not modelled: ``write`` never blocks (on an imp it waits while the transmit FIFO
is full; here the bytes queue and still leave at the line rate), ``flush`` does
not wait, hardware flow control, and ``TIMING_ENABLED`` (refused by name). The
imp's flag constants' values are not published, so ours are our own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import PeripheralConfigError, PeripheralUsageError
from .host import Host, as_text, to_bytes

PARITY_NONE, PARITY_EVEN, PARITY_ODD, PARITY_MARK, PARITY_SPACE = 0, 1, 2, 3, 4
NO_TX, NO_RX, NO_CTSRTS, TIMING_ENABLED = 1, 2, 4, 8
# Event flags, valued as Electric Imp's uart.getflags() reference lists them.
READ_READY, WRITE_DONE, NOISE_ERROR, FRAME_ERROR = 1, 2, 4, 8
PARITY_ERROR, OVERRUN_ERROR, LINE_IDLE, WRITE_HALF_DONE = 16, 32, 64, 128
CONSTANTS = {name: value for name, value in globals().items()
             if name.isupper() and isinstance(value, int) and not name.startswith("_")}
DEFAULT_FIFO = 80
BAUD_TOLERANCE = 0.03

SendFn = Callable[[bytes], None]


@dataclass(frozen=True)
class LineSettings:
    """Baud rate and frame format of one end of a serial line."""

    baud: float
    word_size: int = 8
    parity: int = PARITY_NONE
    stop_bits: int = 1

    @property
    def frame_bits(self) -> int:
        return 1 + self.word_size + (self.parity != PARITY_NONE) + self.stop_bits

    @property
    def byte_time(self) -> float:
        """Seconds one byte takes on the wire."""
        return self.frame_bits / self.baud

    def matches(self, other: LineSettings) -> bool:
        """Would a receiver set up as ``other`` read what this end sends?"""
        return (abs(self.baud - other.baud) <= BAUD_TOLERANCE * other.baud
                and (self.word_size, self.parity, self.stop_bits)
                == (other.word_size, other.parity, other.stop_bits))


class UartPeer(Protocol):
    """A model at the far end of a UART (Wokwi's ``rx_data`` / ``uart_write``)."""

    line: LineSettings

    def attach(self, send: SendFn) -> None:
        """The bus hands over ``send(data)``: bytes from the model towards the imp."""
        ...

    def receive(self, data: bytes) -> None:
        """Bytes from the imp have arrived (all their bits)."""
        ...


def _garble(byte: int) -> int:
    """What a receiver makes of a byte sent at the wrong rate or format (ours)."""
    return (byte ^ 0xA5) & 0xFF


class UART:
    """One UART of the imp (``hardware.uart2``) and the peer on its wires."""

    def __init__(self, name: str, host: Host | None = None,
                 baud_range: tuple[float, float] = (300, 4_000_000),
                 min_fifo: int = 20) -> None:
        self.name = name
        self.host = host or Host()
        self.baud_range = baud_range
        self.min_fifo = min_fifo
        self.peer: UartPeer | None = None
        self.line: LineSettings | None = None
        self.flags_config = 0
        self.callback: Callable[..., Any] | None = None
        self.callback_takes_flags = False
        self.rx_fifo_size = max(DEFAULT_FIFO, min_fifo)
        self.tx_fifo_size = max(DEFAULT_FIFO, min_fifo)
        self.sent = bytearray()  # every byte the imp has written (for tests and traces)
        self._rx: deque[int] = deque()
        self._in_flight: deque[tuple[float, int, int]] = deque()
        self._rx_busy = 0.0
        self._tx_busy = 0.0
        self._tx_pending = 0
        self._flags = 0
        self._generation = 0

    def __repr__(self) -> str:
        return f"UART({self.name})"

    # --- wiring (configuration, not device code) -------------------------------------

    def attach(self, peer: UartPeer) -> None:
        if self.peer is not None:
            raise PeripheralConfigError(f"{self.name}: a peer is already attached")
        self.peer = peer
        peer.attach(self._from_peer)

    # --- the imp API -----------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.line is not None

    def configure(self, baud: float, word_size: int, parity: int, stop_bits: int,
                  flags: int = 0, callback: Callable[..., Any] | None = None,
                  callback_takes_flags: bool = False) -> int:
        """Enable the UART; returns the baud rate it runs at (``callback_takes_flags``:
        the host's callback wants the event flags, as a Squirrel callback with one
        parameter does)."""
        where = f"{self.name}.configure"
        low, high = self.baud_range
        if isinstance(baud, bool) or not isinstance(baud, (int, float)) or not low <= baud <= high:
            raise PeripheralUsageError(f"{where}: baud rate {baud!r} outside {low:g}..{high:g}")
        if word_size not in (7, 8):
            raise PeripheralUsageError(f"{where}: word size must be 7 or 8, got {word_size!r}")
        if parity not in (PARITY_NONE, PARITY_EVEN, PARITY_ODD, PARITY_MARK, PARITY_SPACE):
            raise PeripheralUsageError(f"{where}: unknown parity {parity!r}")
        if stop_bits not in (1, 2):
            raise PeripheralUsageError(f"{where}: stop bits must be 1 or 2, got {stop_bits!r}")
        if not isinstance(flags, int) or flags & ~(NO_TX | NO_RX | NO_CTSRTS | TIMING_ENABLED):
            raise PeripheralUsageError(f"{where}: unknown flags {flags!r}")
        if flags & TIMING_ENABLED:
            raise PeripheralUsageError(f"{where}: TIMING_ENABLED is not modelled by the emulator")
        if callback is not None and not callable(callback):
            raise PeripheralUsageError(f"{where}: the callback must be a function")
        self.line = LineSettings(float(baud), word_size, parity, stop_bits)
        self.flags_config = flags
        self.callback = callback
        self.callback_takes_flags = callback_takes_flags
        self._rx.clear()
        self._flags = 0
        return round(baud)

    def disable(self) -> None:
        self.line = None
        self.callback = None
        self._rx.clear()
        self._in_flight.clear()
        self._generation += 1

    def setrxfifosize(self, size: int) -> None:
        self.rx_fifo_size = self._fifo_size(size, "setrxfifosize")

    def settxfifosize(self, size: int) -> None:
        self.tx_fifo_size = self._fifo_size(size, "settxfifosize")

    def write(self, data: Any) -> int:
        """Queue ``data`` for sending; returns 0 as the imp does."""
        line = self._configured("write")
        if self.flags_config & NO_TX:
            raise PeripheralUsageError(f"{self.name}.write: the UART was configured with NO_TX")
        payload = to_bytes(data, f"{self.name}.write", allow_int=True)
        if not payload:
            return 0
        self.sent += payload
        now = self.host.clock.now()
        start = max(now, self._tx_busy)
        self._tx_busy = start + len(payload) * line.byte_time
        self._tx_pending += 1
        generation = self._generation
        self.host.clock.call_later(self._tx_busy - now,
                                   lambda: self._to_peer(payload, line, generation))
        return 0

    def flush(self) -> None:
        """On an imp this waits for the transmit FIFO to empty; here bytes keep their times."""
        self._configured("flush")

    def read(self) -> int:
        self._configured("read")
        self._settle(self.host.clock.now())
        return self._rx.popleft() if self._rx else -1

    def readblob(self, n: int | None = None) -> bytes:
        self._configured("readblob")
        self._settle(self.host.clock.now())
        count = len(self._rx) if n is None else max(0, min(int(n), len(self._rx)))
        return bytes(self._rx.popleft() for _ in range(count))

    def readstring(self, n: int | None = None) -> str:
        return as_text(self.readblob(n))

    def getflags(self) -> int:
        """The event flags since the last call (then cleared)."""
        self._settle(self.host.clock.now())
        flags, self._flags = self._flags, 0
        return flags

    # --- the line ------------------------------------------------------------------

    def _configured(self, what: str) -> LineSettings:
        if self.line is None:
            raise PeripheralUsageError(f"{self.name}.{what}: the UART is not configured")
        return self.line

    def _fifo_size(self, size: int, what: str) -> int:
        if self.enabled:
            raise PeripheralUsageError(
                f"{self.name}.{what}: disable the UART before resizing its FIFO")
        if isinstance(size, bool) or not isinstance(size, int) or size < self.min_fifo:
            raise PeripheralUsageError(
                f"{self.name}.{what}: size must be an integer of at least {self.min_fifo}")
        return size

    def _to_peer(self, payload: bytes, line: LineSettings, generation: int) -> None:
        self._tx_pending -= 1
        if self.peer is not None:
            if not line.matches(self.peer.line):
                payload = bytes(_garble(b) for b in payload)
            self.peer.receive(payload)
        if self._tx_pending == 0 and generation == self._generation and self.enabled:
            self._event(WRITE_DONE)

    def _from_peer(self, data: bytes) -> None:
        """The peer sends ``data``: each byte arrives when its stop bit has."""
        if not data or self.peer is None:
            return
        now = self.host.clock.now()
        peer_line = self.peer.line
        matched = self.line is not None and peer_line.matches(self.line)
        start = max(now, self._rx_busy)
        arrival = start
        for i, byte in enumerate(data):
            arrival = start + (i + 1) * peer_line.byte_time
            if matched:
                self._in_flight.append((arrival, byte, 0))
            else:
                self._in_flight.append((arrival, _garble(byte), FRAME_ERROR))
        self._rx_busy = arrival
        generation = self._generation
        self.host.clock.call_later(arrival - now, lambda: self._arrived(arrival, generation))

    def _settle(self, upto: float) -> None:
        accept = self.enabled and not self.flags_config & NO_RX
        while self._in_flight and self._in_flight[0][0] <= upto:
            _, byte, flags = self._in_flight.popleft()
            if not accept:
                continue
            self._flags |= flags
            if len(self._rx) >= self.rx_fifo_size:
                self._flags |= OVERRUN_ERROR
            else:
                self._rx.append(byte)
                self._flags |= READ_READY

    def _arrived(self, upto: float, generation: int) -> None:
        if generation != self._generation:
            return
        self._settle(max(upto, self.host.clock.now()))
        if self._rx:
            self._event(READ_READY)

    def _event(self, flag: int) -> None:
        self._flags |= flag
        callback = self.callback
        if callback is None:
            return
        if self.callback_takes_flags:
            flags, self._flags = self._flags, 0
            self.host.dispatch(callback, flags)
        elif flag == READ_READY:
            self.host.dispatch(callback)


class UartLoopback:
    """A plug joining TX to RX: whatever the imp sends comes back.

    A peer hears a burst once it has fully arrived, so the echo starts then and
    takes its own line time: one burst later than a wire would bring it (ours).
    """

    def __init__(self, baud: float = 115200, word_size: int = 8, parity: int = PARITY_NONE,
                 stop_bits: int = 1) -> None:
        self.line = LineSettings(float(baud), word_size, parity, stop_bits)
        self._send: SendFn = lambda data: None

    def attach(self, send: SendFn) -> None:
        self._send = send

    def receive(self, data: bytes) -> None:
        self._send(data)
