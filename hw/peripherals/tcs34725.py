"""The TCS34725 RGB colour sensor (ams): its register map and conversion rule.

The bench controller reads a DUT's status LED through one of these. The part is
an I²C target at 7-bit address 0x29 whose first written byte is a *command*::

    command = | 1 (CMD) | TYPE (2 bits) | ADDR (5 bits) |
    TYPE 00: repeated byte (the pointer stays), 01: auto-increment, 11: special function

    0x00 ENABLE   bit0 PON (oscillator on), bit1 AEN (RGBC integration on)
    0x01 ATIME    integration time: 256 - ATIME cycles of 2.4 ms
    0x0F CONTROL  gain: 0 1x, 1 4x, 2 16x, 3 60x
    0x12 ID       0x44 (TCS34721/TCS34725; 0x4D for the '27)
    0x13 STATUS   bit0 AVALID: an integration has completed since AEN was set
    0x14..0x1B    CDATA, RDATA, GDATA, BDATA: 16-bit counts, low byte first

Conversion: a channel's count is ``level x gain x cycles`` (``level`` is what
the light source gives, 0..255 per channel, so one count per level per cycle at
1x), saturating at ``min(65535, 1024 x cycles)``; the clear channel sees the sum
of the three. A read of the data registers gives the source at that instant (an
ideal, instant integration), which is what a controller that reads at most once
per integration time sees of a LED that holds still for longer than that.

The source is a function ``rgb_at() -> (r, g, b)``: the model owns only its
registers; what light falls on it is the bench's business. Faults: ``missing``
(not fitted: the address is not ACKed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

from .faults import Faultable, FaultSpec

ADDRESS = 0x29
PART_ID = 0x44
CMD = 0x80
TYPE_MASK = 0x60
AUTO_INCREMENT = 0x20
SPECIAL = 0x60
ENABLE, ATIME, CONTROL, ID, STATUS, CDATAL = 0x00, 0x01, 0x0F, 0x12, 0x13, 0x14
PON, AEN, AVALID = 0x01, 0x02, 0x01
GAINS = (1, 4, 16, 60)
#: Registers the part has (others read 0 and ignore writes).
REGISTERS = {ENABLE, ATIME, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0C, 0x0D, CONTROL, ID, STATUS,
             *range(CDATAL, CDATAL + 8)}
WRITABLE = {ENABLE, ATIME, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0C, 0x0D, CONTROL}

Source = Callable[[], tuple[float, float, float]]


class Tcs34725(Faultable):
    """A TCS34725 lit by ``source``; an ``I2CTarget`` (connect, write, read)."""

    FAULTS: ClassVar[Mapping[str, FaultSpec]] = {
        "missing": FaultSpec("the part is not fitted: its I2C address is not ACKed"),
    }

    def __init__(self, source: Source, part_id: int = PART_ID) -> None:
        super().__init__()
        self.source = source
        self.regs = bytearray(0x20)
        self.regs[ATIME] = 0xFF
        self.regs[ID] = part_id
        self.pointer = 0
        self.auto_increment = False
        self._latched = False

    @property
    def cycles(self) -> int:
        return 256 - self.regs[ATIME]

    @property
    def gain(self) -> int:
        return GAINS[self.regs[CONTROL] & 0x03]

    @property
    def integrating(self) -> bool:
        return self.regs[ENABLE] & (PON | AEN) == PON | AEN

    def counts(self) -> tuple[int, int, int, int]:
        """(clear, red, green, blue) as the part would report them now (0s when not on)."""
        if not self.integrating:
            return (0, 0, 0, 0)
        top = min(65535, 1024 * self.cycles)
        scale = self.gain * self.cycles
        r, g, b = (max(0.0, float(v)) for v in self.source())
        red, green, blue = (min(top, round(v * scale)) for v in (r, g, b))
        return (min(top, round((r + g + b) * scale)), red, green, blue)

    # --- I2CTarget ---------------------------------------------------------------

    def connect(self, read: bool) -> bool:
        return not self.fault("missing")

    def write(self, data: bytes) -> bool:
        if not data:
            return True
        command = data[0]
        if not command & CMD:
            return False  # a byte without the command bit is not ACKed
        if command & TYPE_MASK == SPECIAL:
            return True  # interrupt clear: this model raises no interrupts
        self.pointer = command & 0x1F
        self.auto_increment = command & TYPE_MASK == AUTO_INCREMENT
        self._latched = False
        for value in data[1:]:
            if self.pointer in WRITABLE:
                self.regs[self.pointer] = value
            self._advance()
        return True

    def read(self, n: int) -> bytes:
        out = bytearray()
        for _ in range(n):
            reg = self.pointer
            if CDATAL <= reg < CDATAL + 8 and not self._latched:
                self._latch()  # the data registers are read as one snapshot
            if reg == STATUS:
                out.append(AVALID if self.integrating else 0)
            else:
                out.append(self.regs[reg] if reg in REGISTERS else 0)
            self._advance()
        return bytes(out)

    def _latch(self) -> None:
        for i, count in enumerate(self.counts()):
            self.regs[CDATAL + 2 * i] = count & 0xFF
            self.regs[CDATAL + 2 * i + 1] = count >> 8
        self._latched = True

    def _advance(self) -> None:
        if self.auto_increment:
            self.pointer = (self.pointer + 1) & 0x1F
