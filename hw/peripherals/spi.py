"""The imp's SPI bus: full-duplex byte exchanges with the models whose chip select is low.

Device code sees Electric Imp's API (``hardware.spi257``)::

    configure(MSB_FIRST | CLOCK_IDLE_LOW, 7500) -> the rate it runs at, kHz
    write(data) -> bytes written      writeread(data) -> what came back (same type)
    readblob(n) / readstring(n)       clock out n zero bytes, keep what comes back
    chipselect(level)                 imp005 with USE_CS_L only
    disable()

A model (``SpiTarget``) answers ``transfer(mosi) -> miso`` (``None``: it does not
drive MISO, like an LED chain) and may define ``clocked(speed_khz, flags)`` to
learn the bus settings (a WS2812 decodes its bits from their length in time).
Chip select is a pin: a target attached with ``cs="pinD"`` takes part only while
the imp drives that pin low; one attached without ``cs`` always does. Bit order
is the wire's: with ``LSB_FIRST`` every byte is bit-reversed on its way to and
from the model, which reads MSB first as most parts do. Several targets driving
MISO at once give the AND of their bytes; nobody driving it reads 0xFF (ours).

Rates are the controller's: a bus built with a list of rates (imp001: the
peripheral clock divided by 2..256) runs at the fastest one not above the request,
or its slowest; one built with a range runs at the request, clipped. Transfers
take no time on the injected clock (the imp blocks Squirrel while they run).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import PeripheralConfigError, PeripheralUsageError
from .host import Host, as_text, to_bytes
from .pins import DIGITAL_OUT_MODES, PinBank

SIMPLEX_RX, SIMPLEX_TX, CLOCK_IDLE_HIGH, CLOCK_IDLE_LOW = 1, 2, 4, 0
CLOCK_2ND_EDGE, MSB_FIRST, LSB_FIRST, NO_SCLK, USE_CS_L = 8, 0, 16, 32, 64
CONSTANTS = {
    "SIMPLEX_RX": SIMPLEX_RX, "SIMPLEX_TX": SIMPLEX_TX, "CLOCK_IDLE_HIGH": CLOCK_IDLE_HIGH,
    "CLOCK_IDLE_LOW": CLOCK_IDLE_LOW, "CLOCK_2ND_EDGE": CLOCK_2ND_EDGE,
    "MSB_FIRST": MSB_FIRST, "LSB_FIRST": LSB_FIRST, "NO_SCLK": NO_SCLK, "USE_CS_L": USE_CS_L,
}
ALL_FLAGS = SIMPLEX_RX | SIMPLEX_TX | CLOCK_IDLE_HIGH | CLOCK_2ND_EDGE | LSB_FIRST | NO_SCLK \
    | USE_CS_L
IDLE_MISO = 0xFF
_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


class SpiTarget(Protocol):
    """A model on an SPI bus."""

    def transfer(self, data: bytes) -> bytes | None:
        """Bytes clocked in on MOSI; what the model shifts out on MISO (None: nothing)."""
        ...


@dataclass
class _Attached:
    target: SpiTarget
    cs: str | None


class SPI:
    """One SPI controller of the imp (``hardware.spi257``) and the targets on it."""

    def __init__(self, name: str, host: Host | None = None, pins: PinBank | None = None,
                 rates_khz: Iterable[float] | None = None,
                 range_khz: tuple[float, float] = (1.0, 20_000.0),
                 dedicated_cs: bool = False) -> None:
        self.name = name
        self.host = host or Host()
        self.pins = pins
        self.rates = tuple(sorted(float(r) for r in rates_khz)) if rates_khz else None
        self.range_khz = range_khz
        self.dedicated_cs = dedicated_cs
        self.targets: list[_Attached] = []
        self.speed_khz: float | None = None
        self.flags = 0
        self.cs_level = 1  # the dedicated chip select (USE_CS_L), idle high

    def __repr__(self) -> str:
        return f"SPI({self.name})"

    # --- wiring ------------------------------------------------------------------------

    def attach(self, target: SpiTarget, cs: str | None = None) -> None:
        """Put ``target`` on the bus, selected by pin ``cs`` (active low) or always."""
        if cs is not None:
            if self.pins is None:
                raise PeripheralConfigError(f"{self.name}: no pins to use {cs} as chip select")
            self.pins.pin(cs)
        self.targets.append(_Attached(target, cs))
        if self.speed_khz is not None:
            _tell(target, self.speed_khz, self.flags)

    # --- the imp API --------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.speed_khz is not None

    def configure(self, flags: int, speed_khz: float) -> float:
        where = f"{self.name}.configure"
        if isinstance(flags, bool) or not isinstance(flags, int) or flags & ~ALL_FLAGS:
            raise PeripheralUsageError(f"{where}: unknown mode flags {flags!r}")
        if flags & USE_CS_L and not self.dedicated_cs:
            raise PeripheralUsageError(f"{where}: USE_CS_L needs a bus with a chip-select pin "
                                       "(imp005 spi0)")
        if isinstance(speed_khz, bool) or not isinstance(speed_khz, (int, float)) \
                or speed_khz <= 0:
            raise PeripheralUsageError(f"{where}: bad data rate {speed_khz!r} kHz")
        if self.rates is not None:
            below = [r for r in self.rates if r <= speed_khz]
            actual = below[-1] if below else self.rates[0]
        else:
            actual = min(max(float(speed_khz), self.range_khz[0]), self.range_khz[1])
        self.speed_khz, self.flags = actual, flags
        for attached in self.targets:
            _tell(attached.target, actual, flags)
        return actual

    def disable(self) -> None:
        self.speed_khz = None

    def chipselect(self, level: int = 0) -> None:
        if not self.flags & USE_CS_L:
            raise PeripheralUsageError(f"{self.name}.chipselect: configure with USE_CS_L first")
        self.cs_level = 1 if level else 0

    def write(self, data: Any) -> int:
        payload = to_bytes(data, f"{self.name}.write")
        self._exchange(payload, "write")
        return len(payload)

    def writeread(self, data: Any) -> Any:
        """Send ``data``; what came back, a string for a string and a blob for a blob."""
        payload = to_bytes(data, f"{self.name}.writeread")
        back = self._exchange(payload, "writeread")
        return as_text(back) if isinstance(data, str) else back

    def readblob(self, n: int) -> bytes:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise PeripheralUsageError(f"{self.name}.readblob: bad byte count {n!r}")
        return self._exchange(bytes(n), "readblob")

    def readstring(self, n: int) -> str:
        return as_text(self.readblob(n))

    # --- the wire -------------------------------------------------------------------

    def _exchange(self, mosi: bytes, what: str) -> bytes:
        if not self.enabled:
            raise PeripheralUsageError(f"{self.name}.{what}: the SPI bus is not configured")
        if self.flags & SIMPLEX_RX and what in ("write", "writeread") and mosi:
            raise PeripheralUsageError(f"{self.name}.{what}: the bus is receive-only")
        lsb = bool(self.flags & LSB_FIRST)
        wire = mosi.translate(_REVERSED) if lsb else mosi
        miso = bytearray([IDLE_MISO] * len(mosi))
        for attached in self._selected():
            back = attached.target.transfer(wire)
            if back is None:
                continue
            back = bytes(back[: len(mosi)]).ljust(len(mosi), bytes([IDLE_MISO]))
            for i, byte in enumerate(back):
                miso[i] &= byte
        if self.flags & SIMPLEX_TX:
            return bytes(len(mosi))
        out = bytes(miso)
        return out.translate(_REVERSED) if lsb else out

    def _selected(self) -> list[_Attached]:
        chosen = []
        for attached in self.targets:
            if attached.cs is None:
                chosen.append(attached)
                continue
            assert self.pins is not None
            pin = self.pins.pin(attached.cs)
            if pin.mode in DIGITAL_OUT_MODES and pin.level < 0.5:
                chosen.append(attached)
        if self.flags & USE_CS_L and self.cs_level:
            return [a for a in chosen if a.cs is not None]
        return chosen


def _tell(target: SpiTarget, speed_khz: float, flags: int) -> None:
    clocked = getattr(target, "clocked", None)
    if callable(clocked):
        clocked(speed_khz, flags)
