"""The emulated bench controller: the bench protocol's reference implementation.

It serves the protocol on a pty, so the host's driver opens it by path exactly
as it opens ``/dev/ttyUSB0`` on a real bench, and talks through a
:class:`BenchTarget` to whatever stands on the emulated bench (an emulated imp
as DUT, an emulated fixture)::

    host (BenchDriver) ==pty== EmulatedBenchController --BenchTarget--> DUT / fixture
                                 |  LIGHT_OUT  -> light_to_dut(t0, levels, 1 kHz)
                                 |  LIGHT_IN   <- fixture_light(times)
                                 |  STATUS     <- dut_status_rgb(times)
                                 |  POWER, BUTTON, UART_TX/RX

Everything runs on one asyncio loop: the pty master is read with
``loop.add_reader``, and a ticker turns elapsed clock time into samples. The
controller reads time only from its clock, so on a ``ScaledClock`` the whole
bench (light-out playback, sample streams, the DUT behind it) runs faster than
the wall while the driver's timeouts stay real.

``Faults`` injects what a real USB link does on a bad day: a dropped byte, a
corrupted frame, a controller that stops answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from impfactory.hw.bench_lightout import LightOutPlayer
from impfactory.protocol import bench as bp

from impfactory.clock import Clock, RealClock
from impfactory.loopthread import LoopThread

#: How often the DUT's light sensor is fed (an imp samples its sensor at ~1 kHz).
DUT_SENSOR_RATE = 1000.0
MAX_STREAM_RATE = 20_000.0
MAX_STATUS_RATE = 2_000.0
LIGHT_SAMPLES_PER_FRAME = (bp.MAX_PAYLOAD - 4) // 2
RGB_SAMPLES_PER_FRAME = (bp.MAX_PAYLOAD - 4) // 3
TICK_S = 0.01
T = TypeVar("T")
#: Bytes held for a host that is not reading before frames are dropped.
OUT_BUFFER = 64 * 1024


class BenchTarget(Protocol):
    """What stands on the bench, as the controller's sensors and drivers see it.

    Times are seconds on the controller's clock, which the target shares.
    """

    def set_power(self, on: bool) -> None:
        """The DUT power switch."""
        ...

    def light_to_dut(self, t0: float, levels: np.ndarray, rate_hz: float) -> None:
        """Light from the bench LED on the DUT's sensor: 0..1, ``rate_hz`` samples from ``t0``."""
        ...

    def dut_status_rgb(self, times: np.ndarray) -> np.ndarray:
        """The colour sensor over the DUT's status LED at ``times``: shape (n, 3), 0..255."""
        ...

    def press_button(self, seconds: float) -> None:
        """The relay across the fixture's button closes for ``seconds``."""
        ...

    def fixture_light(self, times: np.ndarray) -> np.ndarray:
        """The light sensor over the fixture's LED at ``times``: 0..1 of full scale."""
        ...

    def uart_to_dut(self, data: bytes) -> None:
        """Bytes for the DUT's UART RX pin."""
        ...

    def uart_from_dut(self) -> bytes:
        """Bytes the DUT sent on its UART TX pin since the last call."""
        ...


@dataclass
class Faults:
    """Damage to inject, each counter spent one frame at a time."""

    drop_reply_byte: int = 0
    """Delete one byte from each of the next N frames sent to the host."""
    corrupt_reply: int = 0
    """Flip one byte in each of the next N frames sent to the host."""
    drop_request_byte: int = 0
    """Delete one byte from each of the next N chunks read from the host."""
    muted: bool = False
    """Read and discard everything; send nothing (a hung controller)."""


@dataclass
class _Stream:
    seq: int
    rate: float
    t0: float
    sent: int = 0


class EmulatedBenchController:
    """Serves the bench protocol on a pty for one :class:`BenchTarget`."""

    def __init__(
        self,
        target: BenchTarget,
        clock: Clock | None = None,
        *,
        name: str = "impfactory emulated bench",
        serial: str = "EMU-0001",
    ) -> None:
        self.target = target
        self.clock = clock or RealClock()
        self.name = name
        self.serial = serial
        self.faults = Faults()
        self.decoder = bp.FrameDecoder()
        self.path = ""
        self.requests = 0
        self.overflows = 0
        self._master = -1
        self._slave = -1
        self._last: tuple[bytes, list[bytes]] | None = None
        self._light_in: _Stream | None = None
        self._status: _Stream | None = None
        self.player = LightOutPlayer()
        self._fed_until: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._baud = 115200
        self._out = bytearray()
        self._writer = False

    # ------------------------------------------------------------ lifecycle

    def open(self) -> str:
        """Create the pty; returns the path a host opens (e.g. ``/dev/pts/7``)."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no newline translation: bytes pass as they are
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        return self.path

    async def start(self) -> str:
        """Open the pty (when not yet open) and start serving on the running loop."""
        if self._master < 0:
            self.open()
        loop = asyncio.get_running_loop()
        loop.add_reader(self._master, self._on_readable)
        self._fed_until = int(self.clock.now() * DUT_SENSOR_RATE)
        self._task = loop.create_task(self._tick_loop())
        return self.path

    async def stop(self) -> None:
        """Stop serving and close the pty."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._master >= 0:
            self._want_writer(False)
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # ------------------------------------------------------------ bytes in

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: no host has the pty open right now
            return
        self.receive(data)

    def receive(self, data: bytes) -> None:
        """Bytes from the host (public so a test can drive it without a pty)."""
        if self.faults.drop_request_byte and len(data) > 1:
            self.faults.drop_request_byte -= 1
            data = data[:1] + data[2:]
        if self.faults.muted:
            return
        for item in self.decoder.feed(data):
            if isinstance(item, bp.Fault):
                self._send(0, bp.Error(bp.ErrorCode.BAD_FRAME, str(item.error)[:200]))
            else:
                self._serve(item)

    def _serve(self, packet: bp.Packet) -> None:
        self.requests += 1
        body = bp.encode_body(packet.seq, packet.message)
        if self._last is not None and self._last[0] == body:
            for frame in self._last[1]:  # a retried request: answer again, do not redo
                self._write(frame)
            return
        replies = self._handle(packet.seq, packet.message)
        frames = [bp.encode(packet.seq, reply) for reply in replies]
        self._last = (body, frames)
        for frame in frames:
            self._write(self._damage(frame))

    # ------------------------------------------------------------ requests

    def _handle(self, seq: int, msg: bp.Message) -> list[bp.Message]:
        """One request → the replies to send (samples flushed by a stop come first)."""
        now = self.clock.now()
        ack = bp.Ack(msg.TYPE)
        if isinstance(msg, bp.Identify):
            return [
                bp.Identity(
                    bp.PROTOCOL_VERSION, self.name, self.serial, bp.Capability.ALL, bp.MAX_PAYLOAD
                )
            ]
        if isinstance(msg, bp.Power):
            self.target.set_power(bool(msg.on))
            return [ack]
        if isinstance(msg, bp.Button):
            if msg.duration_ms == 0:
                return [_error(bp.ErrorCode.BAD_PAYLOAD, "button press of 0 ms")]
            self.target.press_button(msg.duration_ms / 1000.0)
            return [ack]
        if isinstance(msg, bp.LightOut):
            return [self._light_out(seq, msg, now)]
        if isinstance(msg, bp.LightInStart | bp.StatusStart):
            limit = MAX_STREAM_RATE if isinstance(msg, bp.LightInStart) else MAX_STATUS_RATE
            rate = msg.rate_mhz / 1000.0
            if not 0 < rate <= limit:
                return [_error(bp.ErrorCode.RATE, f"{rate:g} Hz is outside 0..{limit:g} Hz")]
            stream = _Stream(seq, rate, now)
            if isinstance(msg, bp.LightInStart):
                self._light_in = stream
            else:
                self._status = stream
            return [ack]
        if isinstance(msg, bp.StreamStop):
            try:
                which = bp.Stream(msg.stream)
            except ValueError:
                return [_error(bp.ErrorCode.BAD_PAYLOAD, f"no stream {msg.stream}")]
            self._pump(now)  # every sample up to now goes out before the ACK
            if which in (bp.Stream.ALL, bp.Stream.LIGHT_IN):
                self._light_in = None
            if which in (bp.Stream.ALL, bp.Stream.STATUS):
                self._status = None
            return [ack]
        if isinstance(msg, bp.UartConfig):
            self._baud = msg.baud
            return [ack]
        if isinstance(msg, bp.UartTx):
            if self._baud == 0:
                return [_error(bp.ErrorCode.UNSUPPORTED, "UART pass-through is disabled")]
            self.target.uart_to_dut(msg.data)
            return [ack]
        return [_error(bp.ErrorCode.UNKNOWN_TYPE, f"{msg.TYPE.name} is not a request")]

    def _light_out(self, seq: int, msg: bp.LightOut, now: float) -> bp.Message:
        if msg.rate_mhz == 0 or msg.rate_mhz > MAX_STREAM_RATE * 1000:
            return _error(bp.ErrorCode.RATE, f"{msg.rate_mhz / 1000:g} Hz symbol rate")
        before = self.player.state
        refused = self.player.chunk(seq, msg, now)
        if refused is None:
            return bp.Ack(msg.TYPE)
        why = {
            bp.ErrorCode.BUSY: "a light-out is still playing",
            bp.ErrorCode.BAD_SEQUENCE: (
                f"chunk at offset {msg.offset} ({msg.rate_mhz} mHz) does not continue "
                f"the {before.value} stream ({len(self.player.symbols)} symbols, "
                f"{self.player.rate_mhz} mHz)"
            ),
        }
        return _error(refused, why.get(refused, refused.name))

    # ------------------------------------------------------------ time passes

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._pump(self.clock.now())

    def _pump(self, now: float) -> None:
        """Bring everything time-driven up to ``now``."""
        self._feed_dut_light(now)
        if self._light_in is not None:
            self._emit_light_in(self._light_in, now)
        if self._status is not None:
            self._emit_status(self._status, now)
        data = self.target.uart_from_dut()
        if not self._baud:
            return  # pass-through off: the DUT's bytes fall on the floor, as on a real UART
        for start in range(0, len(data), bp.MAX_PAYLOAD):
            self._send(0, bp.UartRx(data[start : start + bp.MAX_PAYLOAD]))

    def _feed_dut_light(self, now: float) -> None:
        """The bench LED as the DUT's sensor sees it, continuously, at 1 kHz."""
        index_now = int(now * DUT_SENSOR_RATE)
        if self._fed_until is None:
            self._fed_until = index_now
        start = self._fed_until
        if index_now <= start:
            return
        times = np.arange(start, index_now) / DUT_SENSOR_RATE
        levels = self.player.levels(times)
        done = self.player.finish(float(times[-1]))
        if done is not None:
            self._send(self.player.seq, done)
        self.target.light_to_dut(float(times[0]), levels, DUT_SENSOR_RATE)
        self._fed_until = index_now

    def _due(self, stream: _Stream, now: float) -> np.ndarray:
        total = int((now - stream.t0) * stream.rate)
        if total <= stream.sent:
            return np.zeros(0)
        return stream.t0 + np.arange(stream.sent, total) / stream.rate

    def _emit_light_in(self, stream: _Stream, now: float) -> None:
        times = self._due(stream, now)
        if not len(times):
            return
        levels = np.clip(np.asarray(self.target.fixture_light(times), dtype=np.float64), 0, 1)
        counts = np.round(levels * 65535).astype(int).tolist()
        for i in range(0, len(counts), LIGHT_SAMPLES_PER_FRAME):
            chunk = tuple(counts[i : i + LIGHT_SAMPLES_PER_FRAME])
            self._send(stream.seq, bp.LightInSamples(stream.sent + i, chunk))
        stream.sent += len(counts)

    def _emit_status(self, stream: _Stream, now: float) -> None:
        times = self._due(stream, now)
        if not len(times):
            return
        rgb = np.clip(np.asarray(self.target.dut_status_rgb(times)), 0, 255).astype(np.uint8)
        for i in range(0, len(rgb), RGB_SAMPLES_PER_FRAME):
            chunk = tuple(bytes(row) for row in rgb[i : i + RGB_SAMPLES_PER_FRAME])
            self._send(stream.seq, bp.StatusSamples(stream.sent + i, chunk))
        stream.sent += len(rgb)

    # ------------------------------------------------------------ bytes out

    def _send(self, seq: int, msg: bp.Message) -> None:
        self._write(self._damage(bp.encode(seq, msg)))

    def _damage(self, frame: bytes) -> bytes:
        if self.faults.drop_reply_byte and len(frame) > 2:
            self.faults.drop_reply_byte -= 1
            mid = len(frame) // 2
            return frame[:mid] + frame[mid + 1 :]
        if self.faults.corrupt_reply and len(frame) > 2:
            self.faults.corrupt_reply -= 1
            mid = len(frame) // 2
            flipped = frame[mid] ^ 0x24 or 0x01
            return frame[:mid] + bytes([flipped]) + frame[mid + 1 :]
        return frame

    def _write(self, frame: bytes) -> None:
        if self.faults.muted or self._master < 0:
            return
        if len(self._out) + len(frame) > OUT_BUFFER:
            self.overflows += 1  # nobody is reading: a real UART drops frames too
            return
        self._out += frame
        self._flush()

    def _flush(self) -> None:
        """Write what the pty takes now; the rest waits for the loop's writer callback."""
        while self._out and self._master >= 0:
            try:
                written = os.write(self._master, self._out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._out.clear()
                break
            del self._out[:written]
        self._want_writer(bool(self._out))

    def _want_writer(self, want: bool) -> None:
        if want == self._writer or self._master < 0:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if want:
            loop.add_writer(self._master, self._flush)
        else:
            loop.remove_writer(self._master)
        self._writer = want


def _error(code: bp.ErrorCode, message: str) -> bp.Error:
    return bp.Error(int(code), message[:200])


class ControllerThread(LoopThread):
    """Run an :class:`EmulatedBenchController` on its own loop in a daemon thread.

    For tests and tools that drive the bench from synchronous code: ``with
    ControllerThread(controller) as path: BenchDriver.open(path) ...``.
    """

    def __init__(self, controller: EmulatedBenchController) -> None:
        super().__init__("bench-emulator")
        self.controller = controller

    def start(self) -> str:
        self.start_loop()
        try:
            self.run(self.controller.start(), timeout=5.0)
        except TimeoutError as err:
            raise RuntimeError("emulated bench controller did not start") from err
        return self.controller.path

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 5.0,
             **kwargs: Any) -> T:
        """Run ``fn`` on the controller's loop and return its result."""
        return super().call(fn, *args, timeout=timeout, **kwargs)

    def stop(self) -> None:
        """Stop serving, close the pty and end the thread; safe to call twice."""
        if self.loop_alive:
            self.run(self.controller.stop(), timeout=5.0)
        self.stop_loop()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
