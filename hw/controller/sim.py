"""The RP2040 as the controller firmware sees it, simulated under CPython.

The firmware (``firmware/*.py``) imports ``machine``, ``time`` and ``micropython``
as it does on a Pico. Here each import is answered by a :class:`SimBoard`'s own
modules, injected into the firmware's namespace only (its modules get a
``__builtins__`` whose ``__import__`` knows the board; nothing lands in
``sys.modules``), so two controllers in one process are two boards. A module the
RP2040's MicroPython lacks is an ``ImportError``, as it would be on the board.

Time. The board's microsecond counter is the injected clock's, and the board
runs only when :meth:`SimBoard.run_until` is called::

    run_until(t):  timers due by the next main-loop turn fire in deadline order,
                   each seeing ticks_us() == its own deadline, then the firmware's
                   main loop turns once (poll()), every TURN_BUSY_US while timers
                   fire, every TURN_IDLE_US otherwise; repeat until t.

So the firmware's timers keep exact time on any clock (a ScaledClock runs the
bench faster than the wall), and its main loop sees what a Pico's would: the
rings filled by callbacks since the last turn. ``time.sleep_ms`` returns at once
(only the controller's boot sleeps, to power its colour sensor up).

Peripherals follow MicroPython's API for the rp2 port (``machine.Pin``, ``PWM``
with ``invert``, 12-bit ``ADC`` read as u16, ``I2C`` with ``readfrom_mem_into`` &c.,
``UART`` with an rx buffer that drops bytes when full, soft ``Timer`` with
``freq`` truncated to whole microseconds as rp2 does). What is on the other side
of a pin or bus is a listener the wiring (``wiring.py``) attaches.
"""

from __future__ import annotations

import builtins
import errno
import heapq
import importlib
import itertools
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from impfactory.clock import Clock
from impfactory.errors import ImpFactoryError
from impfactory.hw.peripherals.i2c import I2CTarget

from . import FIRMWARE_DIR

TICKS_PERIOD = 1 << 30
TURN_BUSY_US = 1_000
TURN_IDLE_US = 10_000
#: Standard modules MicroPython on the RP2040 has too (the firmware may import these).
MICROPYTHON_STDLIB = frozenset({"array", "json", "struct", "gc", "errno", "collections"})
FIRMWARE_MODULES = ("wire", "lightout", "config", "controller")


class FirmwareLoadError(ImpFactoryError, ImportError):
    """The controller firmware could not be loaded under the simulation."""


# ---------------------------------------------------------------- the board


class SimBoard:
    """One simulated RP2040: its clock, timers, pins and buses, and its modules."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.t0 = clock.now()
        self.now_us = 0
        self.timers: list[tuple[int, int, SimTimer, int]] = []
        self._order = itertools.count()
        self.firing: SimTimer | None = None
        self.fired = 0
        self.busy = False
        self.last_turn = 0
        self.pins: dict[int, int] = {}
        self.pin_listeners: dict[int, Callable[[int], None]] = {}
        self.pwm_listeners: dict[int, Callable[[int, bool], None]] = {}
        self.adc_sources: dict[int, Callable[[], int]] = {}
        self.i2c_buses: dict[int, dict[int, I2CTarget]] = {}
        self.uarts: dict[int, Any] = {}
        self.uart_listeners: dict[int, Callable[[bytes], None]] = {}
        self.before_turn: Callable[[int], None] | None = None
        self.last_oneshot: SimTimer | None = None
        self.modules = {
            "machine": _machine_module(self),
            "time": _time_module(self),
            "micropython": _micropython_module(),
            "rp2": _rp2_module(),
        }

    # --- time --------------------------------------------------------------------

    def seconds(self, us: int) -> float:
        """Board microseconds -> seconds on the injected clock."""
        return self.t0 + us / 1e6

    def clock_us(self) -> int:
        return max(self.now_us, round((self.clock.now() - self.t0) * 1e6))

    def schedule(self, timer: SimTimer, due_us: int) -> None:
        heapq.heappush(self.timers, (due_us, next(self._order), timer, timer.generation))

    def next_due(self) -> int | None:
        while self.timers and self.timers[0][2].generation != self.timers[0][3]:
            heapq.heappop(self.timers)
        return self.timers[0][0] if self.timers else None

    def fire_until(self, until_us: int) -> None:
        """Fire every timer due by ``until_us``, in deadline order.

        A periodic timer fires again without a trip through the heap for as long as
        no other timer is due before its next tick (a 20 kHz stream is a tight loop).
        """
        timers = self.timers
        while timers and timers[0][0] <= until_us:
            due, _, timer, generation = heapq.heappop(timers)
            if timer.generation != generation:
                continue  # cancelled or re-armed since
            callback = timer.callback
            self.firing = timer
            try:
                while True:
                    self.now_us = due
                    if not timer.periodic:
                        timer.generation += 1
                    if callback is not None:
                        callback(timer)
                    self.fired += 1
                    if not timer.periodic or timer.generation != generation:
                        break  # one shot, or the callback stopped or re-armed it
                    due += timer.delta_us
                    if due > until_us or (timers and due >= timers[0][0]):
                        heapq.heappush(timers, (due, next(self._order), timer, generation))
                        break
            finally:
                self.firing = None

    def run_until(self, until_us: int, main: Callable[[], Any], *, turn: bool = False) -> None:
        """Run the board to ``until_us``: timers and main-loop turns, interleaved."""
        while True:
            step = TURN_BUSY_US if self.busy or self.fired else TURN_IDLE_US
            next_turn = self.last_turn + step
            stop = min(next_turn, until_us)
            if stop > self.now_us or stop == until_us:
                self.fire_until(stop)
                self.now_us = max(self.now_us, stop)
            if stop == next_turn or (turn and stop == until_us):
                self._turn(main)
            if stop >= until_us:
                return

    def _turn(self, main: Callable[[], Any]) -> None:
        if self.before_turn is not None:
            self.before_turn(self.now_us)
        self.busy = self.fired > 0
        self.fired = 0
        self.last_turn = self.now_us
        main()

    # --- pins and buses ------------------------------------------------------------

    def write_pin(self, pin: int, value: int) -> None:
        self.pins[pin] = value
        listener = self.pin_listeners.get(pin)
        if listener is not None:
            listener(value)

    def attach_i2c(self, bus: int, address: int, target: I2CTarget) -> None:
        """Put ``target`` on I²C bus ``bus`` at 7-bit ``address``."""
        self.i2c_buses.setdefault(bus, {})[address] = target


# ---------------------------------------------------------------- machine


class SimTimer:
    """``machine.Timer`` of the rp2 port: soft, periodic or one shot, µs resolution."""

    ONE_SHOT = 0
    PERIODIC = 1
    board: SimBoard

    def __init__(self, id: int = -1, **kwargs: Any) -> None:
        if id != -1:
            raise ValueError("Timer doesn't exist")
        self.generation = 0
        self.periodic = True
        self.delta_us = 0
        self.due_us = 0
        self.callback: Callable[[SimTimer], Any] | None = None
        if kwargs:
            self.init(**kwargs)

    def init(self, *, mode: int = PERIODIC, callback: Any = None, period: int = 0xFFFFFFFF,
             tick_hz: int = 1000, freq: float | None = None) -> None:
        self.generation += 1
        if freq is not None:
            delta = int(1_000_000.0 / float(freq))
        else:
            delta = int(period) * 1_000_000 // int(tick_hz)
        self.delta_us = max(1, delta)
        self.periodic = mode == self.PERIODIC
        self.callback = callback
        self.due_us = self.board.now_us + self.delta_us
        if not self.periodic:
            self.board.last_oneshot = self
        self.board.schedule(self, self.due_us)

    def deinit(self) -> None:
        self.generation += 1

    @property
    def armed(self) -> bool:
        """Whether the next scheduled entry of this timer is still live."""
        return any(t is self and g == self.generation for _, _, t, g in self.board.timers)


class SimPin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    board: SimBoard

    def __init__(self, id: int, mode: int = -1, pull: int = -1, *, value: int | None = None)\
            -> None:
        if not isinstance(id, int) or not 0 <= id <= 29:
            raise ValueError(f"invalid pin {id!r}")
        self.id = id
        self.mode = mode
        if value is not None:
            self.board.pins[id] = 1 if value else 0  # configuration, not an edge

    def value(self, v: int | None = None) -> int | None:
        if v is None:
            return self.board.pins.get(self.id, 0)
        self.board.write_pin(self.id, 1 if v else 0)
        return None

    def on(self) -> None:
        self.value(1)

    def off(self) -> None:
        self.value(0)

    def init(self, mode: int = -1, pull: int = -1, *, value: int | None = None) -> None:
        self.mode = mode
        if value is not None:
            self.value(value)


class SimPWM:
    board: SimBoard

    def __init__(self, pin: SimPin, **kwargs: Any) -> None:
        self.pin = pin.id
        self.freq_hz = 0
        self.duty = 0
        self.invert = False
        self.init(**kwargs)

    def init(self, freq: int | None = None, *, duty_u16: int | None = None,
             duty_ns: int | None = None, invert: int | None = None) -> None:
        if freq is not None:
            self.freq_hz = int(freq)
        if invert is not None:
            self.invert = bool(invert)
        if duty_u16 is not None:
            self.duty_u16(duty_u16)
        elif invert is not None:
            self._changed()

    def duty_u16(self, value: int | None = None) -> int | None:
        if value is None:
            return self.duty
        if not 0 <= value <= 65535:
            raise ValueError("duty_u16 must be 0..65535")
        self.duty = value
        self._changed()
        return None

    def freq(self, value: int | None = None) -> int | None:
        if value is None:
            return self.freq_hz
        self.freq_hz = int(value)
        return None

    def deinit(self) -> None:
        self.duty = 0
        self._changed()

    def _changed(self) -> None:
        listener = self.board.pwm_listeners.get(self.pin)
        if listener is not None:
            listener(self.duty, self.invert)


class SimADC:
    """The RP2040's 12-bit ADC; ``read_u16`` scales a reading to 16 bits as rp2 does."""

    board: SimBoard

    def __init__(self, id: Any) -> None:
        channel = id.id - 26 if isinstance(id, SimPin) else int(id)
        if not 0 <= channel <= 4:
            raise ValueError(f"no ADC channel {id!r}")
        self.channel = channel

    def read_u16(self) -> int:
        source = self.board.adc_sources.get(self.channel)
        raw = source() if source is not None else 0
        if not 0 <= raw <= 4095:
            raw = 4095 if raw > 0 else 0
        return (raw << 4) | (raw >> 8)


class SimI2C:
    board: SimBoard

    def __init__(self, id: int, *, scl: Any = None, sda: Any = None, freq: int = 400_000,
                 timeout: int = 50_000) -> None:
        self.id = id
        self.freq = freq

    def _target(self, addr: int) -> I2CTarget:
        target = self.board.i2c_buses.get(self.id, {}).get(addr)
        if target is None or not target.connect(False):
            raise OSError(errno.EIO, "I2C address not acknowledged")
        return target

    def scan(self) -> list[int]:
        return sorted(a for a, t in self.board.i2c_buses.get(self.id, {}).items()
                      if t.connect(False))

    def writeto(self, addr: int, buf: Any, stop: bool = True) -> int:
        if not self._target(addr).write(bytes(buf)):
            raise OSError(errno.EIO, "I2C data not acknowledged")
        return len(buf)

    def writeto_mem(self, addr: int, memaddr: int, buf: Any, *, addrsize: int = 8) -> None:
        self.writeto(addr, bytes([memaddr & 0xFF]) + bytes(buf))

    def readfrom_into(self, addr: int, buf: Any) -> None:
        target = self._target(addr)
        if not target.connect(True):
            raise OSError(errno.EIO, "I2C address not acknowledged")
        data = target.read(len(buf))
        if data is None:
            raise OSError(errno.EIO, "I2C read failed")
        buf[: len(buf)] = bytes(data[: len(buf)]).ljust(len(buf), b"\xff")

    def readfrom(self, addr: int, n: int) -> bytes:
        buf = bytearray(n)
        self.readfrom_into(addr, buf)
        return bytes(buf)

    def readfrom_mem_into(self, addr: int, memaddr: int, buf: Any, *, addrsize: int = 8) -> None:
        self.writeto(addr, bytes([memaddr & 0xFF]))
        self.readfrom_into(addr, buf)

    def readfrom_mem(self, addr: int, memaddr: int, n: int, *, addrsize: int = 8) -> bytes:
        buf = bytearray(n)
        self.readfrom_mem_into(addr, memaddr, buf)
        return bytes(buf)


class SimUART:
    """A UART whose TX reaches a listener and whose RX buffer drops bytes when full."""

    board: SimBoard

    def __init__(self, id: int, baudrate: int = 115200, **kwargs: Any) -> None:
        self.id = id
        self.rx = bytearray()
        self.rxbuf = 256
        self.enabled = False
        self.dropped = 0
        self.board.uarts[id] = self
        self.init(baudrate=baudrate, **kwargs)

    def init(self, baudrate: int = 115200, bits: int = 8, parity: Any = None, stop: int = 1,
             *, tx: Any = None, rx: Any = None, rxbuf: int | None = None, **_: Any) -> None:
        self.baudrate = int(baudrate)
        if rxbuf is not None:
            self.rxbuf = int(rxbuf)
        self.enabled = True

    def deinit(self) -> None:
        self.enabled = False
        self.rx.clear()

    def deliver(self, data: bytes) -> None:
        """Bytes on the RX pin (from the wiring): buffered while enabled and not full."""
        if not self.enabled:
            return
        room = self.rxbuf - len(self.rx)
        self.rx += data[:room]
        self.dropped += max(0, len(data) - room)

    def any(self) -> int:
        return len(self.rx)

    def readinto(self, buf: Any, nbytes: int | None = None) -> int | None:
        n = min(len(buf) if nbytes is None else nbytes, len(self.rx))
        if not n:
            return None
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n

    def read(self, nbytes: int | None = None) -> bytes | None:
        n = len(self.rx) if nbytes is None else min(nbytes, len(self.rx))
        if not n:
            return None
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def write(self, buf: Any) -> int | None:
        if not self.enabled:
            raise OSError(errno.EPERM, "UART is not initialised")
        data = bytes(buf)
        listener = self.board.uart_listeners.get(self.id)
        if listener is not None:
            listener(data)
        return len(data)


def _bound(cls: type, board: SimBoard) -> type:
    """``cls`` with ``board`` as a class attribute: a peripheral class of this board."""
    return type(cls.__name__[3:], (cls,), {"board": board})


def _machine_module(board: SimBoard) -> types.ModuleType:
    m = types.ModuleType("machine")
    m.Pin = _bound(SimPin, board)  # type: ignore[attr-defined]
    m.PWM = _bound(SimPWM, board)  # type: ignore[attr-defined]
    m.ADC = _bound(SimADC, board)  # type: ignore[attr-defined]
    m.I2C = _bound(SimI2C, board)  # type: ignore[attr-defined]
    m.UART = _bound(SimUART, board)  # type: ignore[attr-defined]
    m.Timer = _bound(SimTimer, board)  # type: ignore[attr-defined]
    m.disable_irq = lambda: 0  # type: ignore[attr-defined]  # callbacks never preempt here
    m.enable_irq = lambda state=0: None  # type: ignore[attr-defined]
    m.idle = lambda: None  # type: ignore[attr-defined]
    m.freq = lambda *a: 125_000_000  # type: ignore[attr-defined]
    m.unique_id = lambda: bytes.fromhex("e6614c311b5e7f2a")  # type: ignore[attr-defined]
    return m


def _time_module(board: SimBoard) -> types.ModuleType:
    t = types.ModuleType("time")
    half = TICKS_PERIOD // 2
    t.ticks_us = lambda: board.now_us % TICKS_PERIOD  # type: ignore[attr-defined]
    t.ticks_ms = lambda: (board.now_us // 1000) % TICKS_PERIOD  # type: ignore[attr-defined]
    t.ticks_add = lambda a, b: (a + b) % TICKS_PERIOD  # type: ignore[attr-defined]
    t.ticks_diff = (  # type: ignore[attr-defined]
        lambda a, b: ((a - b + half) % TICKS_PERIOD) - half)
    t.sleep_ms = t.sleep_us = t.sleep = lambda n: None  # type: ignore[attr-defined]
    t.time = lambda: int(board.seconds(board.now_us))  # type: ignore[attr-defined]
    return t


def _micropython_module() -> types.ModuleType:
    mp = types.ModuleType("micropython")
    mp.const = lambda x: x  # type: ignore[attr-defined]
    mp.kbd_intr = lambda c: None  # type: ignore[attr-defined]
    mp.schedule = lambda f, a: f(a)  # type: ignore[attr-defined]
    mp.alloc_emergency_exception_buf = lambda n: None  # type: ignore[attr-defined]
    mp.native = mp.viper = lambda f: f  # type: ignore[attr-defined]
    return mp


def _rp2_module() -> types.ModuleType:
    rp2 = types.ModuleType("rp2")
    rp2.bootsel_button = lambda: 0  # type: ignore[attr-defined]
    return rp2


# ---------------------------------------------------------------- loading the firmware

_CODE: dict[tuple[Path, float], types.CodeType] = {}


def load_firmware(board: SimBoard, directory: Path = FIRMWARE_DIR) -> dict[str, types.ModuleType]:
    """The firmware's modules, loaded for ``board`` (fresh module objects per board)."""
    loaded: dict[str, types.ModuleType] = {}

    def importer(name: str, globals: Any = None, locals: Any = None,
                 fromlist: Any = (), level: int = 0) -> types.ModuleType:
        if name in board.modules:
            return board.modules[name]
        if name in loaded:
            return loaded[name]
        if (directory / f"{name}.py").is_file() and name != "main":
            return load(name)
        if name in MICROPYTHON_STDLIB:
            return importlib.import_module(name)
        raise ImportError(f"the controller firmware imports {name!r}, which the simulated "
                          "RP2040 does not offer")

    def load(name: str) -> types.ModuleType:
        path = directory / f"{name}.py"
        module = types.ModuleType(f"bench_firmware.{name}")
        module.__file__ = str(path)
        module.__dict__["__builtins__"] = {**builtins.__dict__, "__import__": importer}
        loaded[name] = module
        exec(_compiled(path), module.__dict__)
        return module

    try:
        for name in FIRMWARE_MODULES:
            importer(name)
    except (OSError, SyntaxError, ImportError) as err:
        raise FirmwareLoadError(f"cannot load the controller firmware from {directory}: "
                                f"{err}") from err
    return loaded


def _compiled(path: Path) -> types.CodeType:
    key = (path, path.stat().st_mtime)
    code = _CODE.get(key)
    if code is None:
        code = _CODE[key] = compile(path.read_text(), str(path), "exec")
    return code
