"""An I²C device with ST's register convention: a sub-address pointer that may auto-increment.

ST's sensors (HTS221, LIS3DH, LPS22HB ...) share one scheme, which this model
implements once::

    write:  SUB  [data data ...]     SUB sets the pointer; data bytes are stored at it
    read:   (after a write of SUB)   bytes come from the pointer

    SUB = | AI | register address (7 bits) |
    AI = 1: the pointer moves on after each byte (multi-byte reads and writes)
    AI = 0: it stays put (the same register again and again)

A register the device does not list reads 0 and ignores writes, as reserved
registers do. Subclasses give registers behaviour by overriding ``load`` and
``store`` (the HTS221 clears its data-ready bits when the outputs are read);
plain uses are data: ``StRegisterDevice({0x0F: 0x33})`` is a LIS3DH that answers
its WHO_AM_I and nothing more, enough for a test that only checks the part is
fitted.

The one fault every I²C model has: ``missing`` (the part is not fitted, or not
soldered: its address is not ACKed, so ``i2c.read`` returns null and
``readerror()`` says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from .errors import PeripheralConfigError
from .faults import Faultable, FaultSpec

AUTO_INCREMENT = 0x80
REGISTER_SPACE = 0x80


class StRegisterDevice(Faultable):
    """A bank of 8-bit registers behind an auto-incrementing sub-address pointer."""

    FAULTS: ClassVar[Mapping[str, FaultSpec]] = {
        "missing": FaultSpec("the part is not fitted: its I2C address is not ACKed"),
    }

    def __init__(self, registers: Mapping[int, int] | None = None,
                 writable: Iterable[int] = ()) -> None:
        super().__init__()
        self.regs = bytearray(REGISTER_SPACE)
        self.known = set()
        for reg, value in (registers or {}).items():
            if not 0 <= reg < REGISTER_SPACE or not 0 <= value <= 0xFF:
                raise PeripheralConfigError(
                    f"{type(self).__name__}: register 0x{reg:02X}=0x{value:X} out of range")
            self.regs[reg] = value
            self.known.add(reg)
        self.writable = set(writable)
        self.known |= self.writable
        self.pointer = 0
        self.auto_increment = False

    # --- I2CTarget --------------------------------------------------------------

    def connect(self, read: bool) -> bool:
        return not self.fault("missing")

    def write(self, data: bytes) -> bool:
        if not data:
            return True
        self.pointer = data[0] & (REGISTER_SPACE - 1)
        self.auto_increment = bool(data[0] & AUTO_INCREMENT)
        for value in data[1:]:
            if self.pointer in self.writable:
                self.store(self.pointer, value)
            self._advance()
        return True

    def read(self, n: int) -> bytes | None:
        out = bytearray()
        for _ in range(n):
            out.append(self.load(self.pointer) if self.pointer in self.known else 0)
            self._advance()
        return bytes(out)

    # --- register behaviour (override) -------------------------------------------

    def load(self, reg: int) -> int:
        """The value register ``reg`` reads."""
        return self.regs[reg]

    def store(self, reg: int, value: int) -> None:
        """Device code wrote ``value`` to writable register ``reg``."""
        self.regs[reg] = value & 0xFF

    def _advance(self) -> None:
        if self.auto_increment:
            self.pointer = (self.pointer + 1) % REGISTER_SPACE
