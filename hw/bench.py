"""The bench-controller driver: the host side of the bench serial protocol.

One ``BenchDriver`` owns one serial port (opened by URL, see ``serialport``) and
one reader thread. The reader feeds every byte to the protocol's streaming
``FrameDecoder`` and sorts what comes out::

    port --bytes--> FrameDecoder --+-- ACK / ERROR / IDENTITY --> the waiting request
                                   +-- LIGHT_IN_SAMPLES ---------> light_in  (SampleBuffer)
                                   +-- STATUS_SAMPLES -----------> status    (SampleBuffer)
                                   +-- LIGHT_OUT_DONE -----------> light_out() returns
                                   +-- UART_RX ------------------> uart_read()
                                   +-- Fault (bad CRC, COBS) ----> resend the pending request

Requests are one at a time. Each has a sequence number; a request that gets no
answer within ``timeout`` is sent again with the *same* number, and the
controller answers a repeat from its cache instead of doing it twice (so a lost
ACK never presses the button twice). After ``retries`` resends the driver gives
up with :class:`BenchTimeoutError`, naming the port and the request: a silent
controller is an error within ``timeout * (retries + 1)`` seconds, never a hang.
A corrupted or dropped byte costs one frame; the COBS delimiter resynchronises
the stream at the next frame.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import serial

from impfactory.errors import ImpFactoryError
from impfactory.hw.serialport import DEFAULT_BAUD, open_port
from impfactory.protocol import bench as bp

LIGHT_OUT_CHUNK = bp.MAX_PAYLOAD - 9  # rate, flags and offset take 9 bytes
#: Wall seconds without a sample before a stream's reader checks on the controller.
STALL_S = 1.0


class BenchError(ImpFactoryError):
    """Something went wrong talking to a bench controller."""


class BenchTimeoutError(BenchError, TimeoutError):
    """The controller stopped answering."""


class BenchLinkError(BenchError, OSError):
    """The serial link itself failed (unplugged, pty closed)."""


class BenchRefusedError(BenchError):
    """The controller answered a request with an ``ERROR`` frame."""

    def __init__(self, request: str, code: int, message: str) -> None:
        try:
            name = bp.ErrorCode(code).name
        except ValueError:
            name = f"code {code}"
        super().__init__(f"controller refused {request}: {name} {message}".rstrip())
        self.code = code


class BenchStalledError(BenchError):
    """The controller answers but its sample stream stopped (exit status 1)."""

    exit_code = 1


@dataclass
class SampleBuffer:
    """Samples of one stream as they arrive, with gaps from lost frames made visible.

    Each sample frame says where its first sample belongs (``offset``); when a
    frame was lost the next one starts later than expected, and the missing
    samples are stored as NaN so every later sample keeps its true time. ``lost``
    counts them. ``width`` is 1 for light levels and 3 for RGB.
    """

    width: int = 1
    rate_hz: float = 0.0
    seq: int = -1
    lost: int = 0
    _chunks: list[np.ndarray] = field(default_factory=list)
    _next: int = 0
    _taken: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, rate_hz: float, seq: int = -1) -> None:
        with self._lock:
            self.rate_hz = rate_hz
            self.seq = seq
            self.lost = 0
            self._chunks = []
            self._next = 0
            self._taken = 0

    def add(self, offset: int, values: np.ndarray) -> None:
        rows = values.reshape(-1, self.width).astype(np.float64)
        with self._lock:
            if offset < self._next:  # a repeat of samples already held: drop the overlap
                rows = rows[self._next - offset :]
                offset = self._next
            if offset > self._next:
                gap = offset - self._next
                self.lost += gap
                self._chunks.append(np.full((gap, self.width), np.nan))
            if len(rows):
                self._chunks.append(rows)
            self._next = offset + len(rows)

    def count(self) -> int:
        with self._lock:
            return self._next

    def all(self) -> np.ndarray:
        """Every sample so far, shape (n, width)."""
        with self._lock:
            if not self._chunks:
                return np.zeros((0, self.width))
            merged = np.concatenate(self._chunks)
            self._chunks = [merged]
            return merged

    def take(self) -> np.ndarray:
        """The samples that arrived since the last ``take``, shape (n, width)."""
        data = self.all()
        with self._lock:
            new = data[self._taken :]
            self._taken = len(data)
        return new


class BenchDriver:
    """Talk to one bench controller. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        port: Any,
        *,
        url: str = "",
        timeout: float = 0.5,
        retries: int = 3,
    ) -> None:
        if not timeout > 0 or retries < 0:
            with contextlib.suppress(Exception):
                port.close()
            raise BenchError(f"need timeout > 0 and retries >= 0, got {timeout} and {retries}")
        self.port = port
        self.url = url or str(getattr(port, "port", "") or "serial port")
        self.timeout = timeout
        self.retries = retries
        self.decoder = bp.FrameDecoder()
        self.light_in = SampleBuffer(width=1)
        self.status = SampleBuffer(width=3)
        self.resends = 0
        self.stale = 0
        self.lost_events = 0
        self._greeted = False
        self._playing: tuple[int, int, float] | None = None
        self._seq = random.randrange(255)  # unlikely to match a previous host's streams
        self._request_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending: int | None = None
        self._reply: bp.Packet | None = None
        self._resend = False
        self._done: dict[int, int] = {}
        self._uart = bytearray()
        self._link_error: BaseException | None = None
        self._closed = threading.Event()
        with contextlib.suppress(Exception):
            port.reset_input_buffer()  # whatever waited in the port is not for us
        self._reader = threading.Thread(target=self._read_loop, name="bench-reader", daemon=True)
        self._reader.start()

    @classmethod
    def open(
        cls, url: str, *, timeout: float = 0.5, retries: int = 3, baudrate: int = DEFAULT_BAUD
    ) -> BenchDriver:
        """Open the controller at ``url`` (a path, or any pyserial URL)."""
        return cls(open_port(url, baudrate=baudrate), url=url, timeout=timeout, retries=retries)

    @property
    def greeted(self) -> bool:
        """Whether a controller answered this session's ``IDENTIFY`` (it is there)."""
        return self._greeted

    def __enter__(self) -> BenchDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the reader and close the port (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._reader.join(timeout=2.0)
        with contextlib.suppress(Exception):
            self.port.close()

    # ------------------------------------------------------------ requests

    def request(self, message: bp.Message) -> bp.Message:
        """Send ``message`` and return the controller's answer (ACK or IDENTITY).

        Raises :class:`BenchRefusedError` for an ``ERROR`` answer,
        :class:`BenchTimeoutError` when no answer came after all retries and
        :class:`BenchLinkError` when the port failed.
        """
        if not self._greeted and not isinstance(message, bp.Identify):
            # a session begins with IDENTIFY: it checks the version and replaces the
            # controller's replay cache, so a request of an earlier session that
            # happens to carry the same bytes is never taken for a retry
            self.identify()
        with self._request_lock:
            seq = self._seq = self._next_seq()
            frame = bp.encode(seq, message)
            with self._cond:
                self._pending, self._reply, self._resend = seq, None, False
            try:
                for attempt in range(self.retries + 1):
                    if attempt:
                        self.resends += 1
                    self._write(frame)
                    reply = self._wait_reply(seq)
                    if reply is not None:
                        return self._check(message, reply)
            finally:
                with self._cond:
                    self._pending = None
        raise BenchTimeoutError(
            f"bench controller on {self.url} stopped answering: no reply to "
            f"{message.TYPE.name} after {self.retries + 1} tries of {self.timeout:g} s"
        )

    def _next_seq(self) -> int:
        """The sequence number the next request will carry (1..255, never 0)."""
        return self._seq % 255 + 1

    def _wait_reply(self, seq: int) -> bp.Packet | None:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                if self._reply is not None:
                    return self._reply
                if self._link_error is not None:
                    raise BenchLinkError(
                        f"serial link to {self.url} failed: {self._link_error}"
                    ) from self._link_error
                if self._resend:
                    self._resend = False
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    @staticmethod
    def _check(request: bp.Message, reply: bp.Packet) -> bp.Message:
        msg = reply.message
        if isinstance(msg, bp.Error):
            raise BenchRefusedError(request.TYPE.name, msg.code, msg.message)
        if isinstance(msg, bp.Ack) and msg.of != request.TYPE:
            raise BenchError(f"controller acknowledged {msg.of:#04x} for {request.TYPE.name}")
        return msg

    def _write(self, frame: bytes) -> None:
        with self._write_lock:
            try:
                self.port.write(frame)
                self.port.flush()
            except (serial.SerialException, OSError) as err:
                raise BenchLinkError(f"cannot write to {self.url}: {err}") from err

    # ------------------------------------------------------------ reader

    def _read_loop(self) -> None:
        while not self._closed.is_set():
            try:
                waiting = self.port.in_waiting
                data = self.port.read(max(1, min(waiting, 4096)))
            except (serial.SerialException, OSError, TypeError, AttributeError) as err:
                if self._closed.is_set():
                    return
                with self._cond:
                    self._link_error = err
                    self._cond.notify_all()
                return
            if data:
                for item in self.decoder.feed(data):
                    self._dispatch(item)

    def _dispatch(self, item: bp.Packet | bp.Fault) -> None:
        if isinstance(item, bp.Fault):
            with self._cond:
                if self._pending is not None:
                    self._resend = True  # the lost frame may have been our answer
                    self._cond.notify_all()
            return
        msg = item.message
        if isinstance(msg, bp.Ack | bp.Error | bp.Identity):
            with self._cond:
                if isinstance(msg, bp.Error) and item.seq == 0 and self._pending is not None:
                    self._resend = True  # the controller could not read our request
                elif item.seq == self._pending and self._reply is None:
                    self._reply = item
                else:
                    self.stale += 1
                self._cond.notify_all()
        elif isinstance(msg, bp.LightInSamples):
            if item.seq != self.light_in.seq:
                self.stale += 1  # samples of a stream this host did not start
                return
            self.light_in.add(msg.offset, np.asarray(msg.samples, dtype=np.float64))
        elif isinstance(msg, bp.StatusSamples):
            if item.seq != self.status.seq:
                self.stale += 1
                return
            rgb = np.frombuffer(b"".join(msg.rgb), dtype=np.uint8)
            self.status.add(msg.offset, rgb.reshape(-1, 3))
        elif isinstance(msg, bp.LightOutDone):
            with self._cond:
                self._done[item.seq] = msg.symbols
                self._cond.notify_all()
        elif isinstance(msg, bp.UartRx):
            with self._cond:
                self._uart += msg.data
                self._cond.notify_all()
        else:
            self.stale += 1  # a request type coming our way: not for a host

    # ------------------------------------------------------------ operations

    def identify(self) -> bp.Identity:
        """Who the controller is and which protocol version it speaks."""
        reply = self.request(bp.Identify())
        if not isinstance(reply, bp.Identity):
            raise BenchError(f"controller answered IDENTIFY with {reply.TYPE.name}")
        self._greeted = True
        if reply.protocol_version != bp.PROTOCOL_VERSION:
            raise BenchError(
                f"controller speaks bench protocol {reply.protocol_version}, "
                f"this host speaks {bp.PROTOCOL_VERSION}"
            )
        return reply

    def power(self, on: bool) -> None:
        """Switch the DUT's power."""
        self.request(bp.Power(int(on)))

    def press_button(self, seconds: float = 0.2) -> None:
        """Press the fixture's button for ``seconds`` (returns once the press started)."""
        ms = round(seconds * 1000)
        if not 0 < ms <= 0xFFFF:
            raise BenchError(f"button press of {seconds} s is outside 0..65.5 s")
        self.request(bp.Button(ms))

    def light_out(
        self,
        symbols: bytes | Sequence[int],
        rate_hz: float,
        *,
        active_high: bool = True,
        wait: bool = True,
    ) -> float:
        """Play ``symbols`` (0..255 brightness each) on the bench LED at ``rate_hz``.

        Sends the stream in chunks, then (with ``wait``) blocks until the
        controller reports it played, or raises :class:`BenchTimeoutError` when
        that report does not come within the stream's length plus ``timeout``.
        Returns the stream's nominal length in seconds.
        """
        data = bytes(symbols)
        if not data:
            raise BenchError("light-out needs at least one symbol")
        rate = bp.rate_to_mhz(rate_hz)
        base = int(bp.LightOutFlag.ACTIVE_HIGH) if active_high else 0
        last_seq = 0
        for start in range(0, len(data), LIGHT_OUT_CHUNK):
            flags = base
            if start == 0:
                flags |= bp.LightOutFlag.START
            if start + LIGHT_OUT_CHUNK >= len(data):
                flags |= bp.LightOutFlag.END
            self.request(bp.LightOut(rate, flags, start, data[start : start + LIGHT_OUT_CHUNK]))
            last_seq = self._seq
        duration = len(data) / rate_hz
        self._playing = (last_seq, rate, duration)
        if wait:
            self.wait_light_out()
        return duration

    def wait_light_out(self) -> None:
        """Block until the last ``light_out`` has played.

        The controller says so with ``LIGHT_OUT_DONE``. Should that frame be
        lost, the driver asks once the stream's length (plus ``timeout``) has
        passed: an empty ``LIGHT_OUT`` chunk is refused ``BUSY`` while one is
        playing and accepted once none is. A controller still busy after twice
        the stream's length, or silent, is a :class:`BenchTimeoutError`.
        """
        if self._playing is None:
            return
        seq, rate, duration = self._playing
        started = time.monotonic()
        limit = 2 * duration + self.timeout * (self.retries + 1)
        wait = duration + self.timeout
        while True:
            if self._wait_done(seq, started + wait):
                break
            try:
                self.request(bp.LightOut(rate, int(bp.LightOutFlag.START), 0, b""))
            except BenchRefusedError as err:
                if err.code != bp.ErrorCode.BUSY:
                    raise
                if time.monotonic() - started > limit:
                    raise BenchTimeoutError(
                        f"bench controller on {self.url} is still playing a "
                        f"{duration:.1f} s light-out after {limit:.1f} s"
                    ) from err
                wait = time.monotonic() - started + self.timeout
                continue
            self.lost_events += 1  # it finished; its LIGHT_OUT_DONE was lost
            break
        self._playing = None

    def _wait_done(self, seq: int, deadline: float) -> bool:
        with self._cond:
            while seq not in self._done:
                if self._link_error is not None:
                    raise BenchLinkError(f"serial link to {self.url} failed: {self._link_error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            del self._done[seq]
            return True

    def start_light_in(self, rate_hz: float = 1000.0) -> SampleBuffer:
        """Start sampling the light sensor over the fixture's LED into ``light_in``."""
        return self._start(self.light_in, bp.LightInStart, rate_hz)

    def start_status(self, rate_hz: float = 100.0) -> SampleBuffer:
        """Start sampling the colour sensor over the DUT's status LED into ``status``."""
        return self._start(self.status, bp.StatusStart, rate_hz)

    def _start(
        self, buffer: SampleBuffer, start: type[bp.LightInStart | bp.StatusStart], rate_hz: float
    ) -> SampleBuffer:
        """Empty ``buffer`` for the new stream (its samples carry this request's SEQ), start it."""
        mhz = bp.rate_to_mhz(rate_hz)
        if not self._greeted:
            self.identify()
        buffer.reset(rate_hz, self._next_seq())
        self.request(start(mhz))
        return buffer

    def stop(self, stream: bp.Stream = bp.Stream.ALL) -> None:
        """Stop a stream; when this returns, all its samples are in its buffer."""
        self.request(bp.StreamStop(int(stream)))

    def uart_config(self, baud: int) -> None:
        self.request(bp.UartConfig(baud))

    def uart_write(self, data: bytes) -> None:
        for start in range(0, len(data), bp.MAX_PAYLOAD):
            self.request(bp.UartTx(data[start : start + bp.MAX_PAYLOAD]))

    def uart_read(self, timeout: float = 0.0) -> bytes:
        """Bytes the DUT sent; waits up to ``timeout`` for the first one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._uart and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            data = bytes(self._uart)
            self._uart.clear()
        return data


class UartLines:
    """UART bytes in, whole text lines out (CR LF or LF); a partial line waits."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> list[str]:
        *whole, self._held = (self._held + data).split(b"\n")
        return [line.rstrip(b"\r").decode("utf-8", "replace") for line in whole]

    def rest(self) -> list[str]:
        held, self._held = self._held, b""
        return [held.rstrip(b"\r").decode("utf-8", "replace")] if held.strip() else []


class StreamStall:
    """Notices a sample stream that stopped flowing, so a dead controller is an error.

    A controller sends its samples at least every few tens of milliseconds
    (docs/bench.md); after ``STALL_S`` wall seconds (or four answer timeouts, or
    three sample periods, whichever is longest) without one, the controller is
    asked who it is: a silent one is then a :class:`BenchTimeoutError` naming the
    port, one that answers but sends no samples a :class:`BenchStalledError`.
    Either way, never a hang. ``check`` may block for the IDENTIFY round trip.
    """

    def __init__(self, bench: BenchDriver, buffer: SampleBuffer) -> None:
        self.bench = bench
        self.buffer = buffer
        # a slow stream (watch --rate 1) may be silent for a few sample periods
        period = 1.0 / buffer.rate_hz if buffer.rate_hz > 0 else 0.0
        self.limit = max(STALL_S, 4 * bench.timeout, 3 * period)
        self._count = buffer.count()
        self._since = time.monotonic()

    def due(self) -> bool:
        """Whether the stream has been silent past the limit (``check`` would ask)."""
        count, now = self.buffer.count(), time.monotonic()
        if count != self._count:
            self._count, self._since = count, now
        return now - self._since > self.limit

    def check(self) -> None:
        if self.due():
            self.bench.identify()
            raise BenchStalledError(
                f"the controller on {self.bench.url} answers but sent no samples "
                f"for {time.monotonic() - self._since:.1f} s"
            )
