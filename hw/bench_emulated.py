"""The emulated bench controller: the Pico's own firmware, run against a simulated bench.

Like Renode: the controller's real MicroPython firmware (``hw/controller/firmware``)
runs under CPython on a simulated RP2040 (``hw/controller/sim.py``) whose pins and
buses are wired to whatever stands on the emulated bench (``hw/controller/wiring.py``),
and serves the bench protocol on a pty, so the host's driver opens it by path
exactly as it opens ``/dev/ttyACM0`` on a real bench::

    host (BenchDriver) ==pty== SimUsbLink == firmware (controller.py) == SimBoard
                                 |  Faults                 machine.PWM  -> light_to_dut
                                 |                         machine.ADC  <- fixture_light
                                 |                         machine.I2C  <- TCS34725 <- status
                                 |                         Pin, UART    -> power, button, uart

Everything runs on one asyncio loop: the pty master is read with
``loop.add_reader``, and a ticker runs the board up to the clock's now. The board
reads time only from the injected clock, so on a ``ScaledClock`` the whole bench
(light-out playback, sample streams, the DUT behind it) runs faster than the wall
while the driver's timeouts stay real.

``Faults`` injects what a real USB link does on a bad day, in the link, never in
the firmware: a dropped byte, a corrupted frame, a controller that stops answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from impfactory.clock import Clock, RealClock
from impfactory.hw.controller import FIRMWARE_DIR
from impfactory.hw.controller.sim import SimBoard, load_firmware
from impfactory.hw.controller.wiring import BenchWiring
from impfactory.loopthread import LoopThread
from impfactory.protocol import bench as bp

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
    """Damage to inject in the USB link, each counter spent one frame at a time."""

    drop_reply_byte: int = 0
    """Delete one byte from each of the next N frames sent to the host."""
    corrupt_reply: int = 0
    """Flip one byte in each of the next N frames sent to the host."""
    drop_request_byte: int = 0
    """Delete one byte from each of the next N chunks read from the host."""
    muted: bool = False
    """Read and discard everything; send nothing (a hung controller)."""


class SimUsbLink:
    """The firmware's USB serial link (``read_into``, ``write``, ``release``), in memory."""

    def __init__(self, out: Callable[[bytes], None]) -> None:
        self.inbox = bytearray()
        self._out = out

    def read_into(self, buf: bytearray) -> int:
        n = min(len(buf), len(self.inbox))
        buf[:n] = self.inbox[:n]
        del self.inbox[:n]
        return n

    def write(self, data: Any) -> None:
        self._out(bytes(data))

    def release(self) -> None:
        pass


class EmulatedBenchController:
    """Serves the bench protocol on a pty: the controller firmware for one :class:`BenchTarget`.

    ``config`` overrides the firmware's settings (``firmware/config.py``: pins, colour
    calibration, name) as a ``bench_config.json`` on a board would; ``firmware_dir``
    runs the firmware from another directory (the files a flash put on a board).
    """

    def __init__(
        self,
        target: BenchTarget,
        clock: Clock | None = None,
        *,
        name: str = "impfactory emulated bench",
        serial: str = "EMU-0001",
        config: dict[str, Any] | None = None,
        firmware_dir: Path = FIRMWARE_DIR,
        led_active_high: bool | None = None,
    ) -> None:
        self.target = target
        self.clock = clock or RealClock()
        self.faults = Faults()
        self.path = ""
        self.overflows = 0
        self.board = SimBoard(self.clock)
        self.firmware = load_firmware(self.board, firmware_dir)
        settings = {**self.firmware["config"].DEFAULTS, "name": name, **(config or {})}
        unknown = set(settings) - set(self.firmware["config"].DEFAULTS)
        if unknown:
            raise ValueError(f"unknown controller settings: {', '.join(sorted(unknown))}")
        self.wiring = BenchWiring(self.board, target, settings, led_active_high=led_active_high)
        self.link = SimUsbLink(self._outbound)
        self.controller = self.firmware["controller"].Controller(self.link, settings,
                                                                 serial=serial)
        self.name = name
        self.serial = serial
        self._master = -1
        self._slave = -1
        self._task: asyncio.Task[None] | None = None
        self._out = bytearray()
        self._writer = False

    @property
    def requests(self) -> int:
        """Requests the firmware served (retries included)."""
        return int(self.controller.requests)

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

    # ------------------------------------------------------------ the board runs

    def run(self, *, turn: bool = False) -> None:
        """Run the board (timers, the firmware's main loop) up to the clock's now."""
        until = self.board.clock_us()
        self.wiring.run_window(until)
        self.board.run_until(until, self.controller.poll, turn=turn)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.run()

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
        self.link.inbox += data
        self.run(turn=True)

    # ------------------------------------------------------------ bytes out

    def _outbound(self, frame: bytes) -> None:
        """A frame the firmware wrote to USB. Sample frames pass through a hook of their
        own (``_emit_light_in``, ``_emit_status``), so a test can stand in a controller
        whose streams emit nothing."""
        kind = frame[2] if len(frame) > 2 else 0  # COBS code, VER, then TYPE (never 00)
        if kind == bp.FrameType.LIGHT_IN_SAMPLES:
            self._emit_light_in(frame)
        elif kind == bp.FrameType.STATUS_SAMPLES:
            self._emit_status(frame)
        else:
            self._send(frame)

    def _emit_light_in(self, frame: bytes) -> None:
        self._send(frame)

    def _emit_status(self, frame: bytes) -> None:
        self._send(frame)

    def _send(self, frame: bytes) -> None:
        self._write(self._damage(frame))

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
