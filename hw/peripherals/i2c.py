"""The imp's I²C bus: transactions that reach whatever model is attached at an address.

Device code sees Electric Imp's API (``hardware.i2c89``)::

    configure(CLOCK_SPEED_400_KHZ)
    read(0xBE, "\\x0F", 1)   -> b"\\xBC", or None (then readerror() says why)
    write(0xBE, "\\x20\\x80") -> 0, or an imp I²C error code
    readerror()              -> the code of the last read (0: none)
    disable()

Addresses are 8-bit, as the imp takes them (a datasheet's 7-bit address shifted
left: the HTS221's 0x5F is 0xBE). A read with a sub-address is two transactions
on the wire, which is what the model sees::

    read(addr, reg, n):  START addr+W [ACK?]  reg... [ACK?]  RESTART addr+R [ACK?]  n bytes  STOP
    write(addr, data):   START addr+W [ACK?]  data... [ACK?]  STOP

A model (``I2CTarget``) answers each phase: ``connect(read)`` is the address
phase (False: nobody ACKs, as when the sensor is missing), ``write(data)`` the
data bytes of a write (False: a byte was NACKed), ``read(n)`` the bytes it returns
(None: it failed). What it does with them (a register pointer, a one-shot
conversion) is the model's business; the bus owns only the transaction and the
error codes.

Error codes are Electric Imp's (``i2c.readerror()`` reference, -1..-13). Which one
a failure gives depends on the imp's I²C controller, so a bus is built with an
error style: ``stm32`` (imp001/002/003/004m: an address not ACKed while
transmitting is -2, while receiving -6, a data NACK -3, a failed receive -11; as
Electric Imp's forum answers describe) or ``imp005`` (its Broadcom controller
reports -9 for every NACK, per Electric Imp's "Understanding I2C Errors"). Any bus
not configured answers -13. Transactions take no time on the injected clock: the
imp blocks its Squirrel while they run, so nothing else can observe the gap.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, Protocol

from .errors import PeripheralConfigError, PeripheralUsageError
from .host import Host, to_bytes

CLOCK_SPEED_10_KHZ = 10_000
CLOCK_SPEED_50_KHZ = 50_000
CLOCK_SPEED_100_KHZ = 100_000
CLOCK_SPEED_400_KHZ = 400_000
CLOCK_SPEEDS = (CLOCK_SPEED_10_KHZ, CLOCK_SPEED_50_KHZ, CLOCK_SPEED_100_KHZ,
                CLOCK_SPEED_400_KHZ)
CONSTANTS = {
    "CLOCK_SPEED_10_KHZ": CLOCK_SPEED_10_KHZ,
    "CLOCK_SPEED_50_KHZ": CLOCK_SPEED_50_KHZ,
    "CLOCK_SPEED_100_KHZ": CLOCK_SPEED_100_KHZ,
    "CLOCK_SPEED_400_KHZ": CLOCK_SPEED_400_KHZ,
}
#: What the bus reads when no device drives SDA (the pull-ups hold it high).
IDLE_BYTE = 0xFF


class I2CError(enum.IntEnum):
    """``i2c.readerror()`` and ``i2c.write()`` codes, as Electric Imp numbers them."""

    NONE = 0
    CONTROLLER_SELECT = -1
    TRANSMIT_SELECT = -2
    TRANSMIT = -3
    BTF = -4
    STOP = -5
    ADDRESS_CLEAR = -6
    ADDRESS_RXNE = -7
    DATA_RXNE = -8
    NACK = -9
    CONTROLLER_RECEIVE_SELECT = -10
    RECEIVE = -11
    RESELECT = -12
    NOT_ENABLED = -13


# failure -> code, per controller: address NACK sending, address NACK receiving,
# data byte NACKed, receive failed.
ERROR_STYLES: dict[str, dict[str, I2CError]] = {
    "stm32": {"address_write": I2CError.TRANSMIT_SELECT,
              "address_read": I2CError.ADDRESS_CLEAR,
              "data": I2CError.TRANSMIT,
              "receive": I2CError.RECEIVE},
    "imp005": {"address_write": I2CError.NACK, "address_read": I2CError.NACK,
               "data": I2CError.NACK, "receive": I2CError.NACK},
}


class I2CTarget(Protocol):
    """A model on an I²C bus (Wokwi's contract, a transaction at a time)."""

    def connect(self, read: bool) -> bool:
        """The address phase (``read``: R/W bit set). True: the device ACKs."""
        ...

    def write(self, data: bytes) -> bool:
        """The data bytes of a write transaction. True: every byte was ACKed."""
        ...

    def read(self, n: int) -> bytes | None:
        """``n`` bytes for a read transaction (None: the transfer failed)."""
        ...


class I2C:
    """One I²C controller of the imp (``hardware.i2c89``) and the targets on its wires."""

    def __init__(self, name: str, host: Host | None = None, errors: str = "stm32",
                 speeds: Iterable[int] = CLOCK_SPEEDS) -> None:
        if errors not in ERROR_STYLES:
            raise PeripheralConfigError(
                f"{name}: unknown I2C error style {errors!r}; known: {', '.join(ERROR_STYLES)}")
        self.name = name
        self.host = host or Host()
        self.codes = ERROR_STYLES[errors]
        self.speeds = tuple(int(s) for s in speeds)
        self.targets: dict[int, I2CTarget] = {}
        self.clock_speed: int | None = None
        self._readerror = I2CError.NONE

    def __repr__(self) -> str:
        return f"I2C({self.name})"

    # --- wiring (configuration, not device code) ----------------------------------

    def attach(self, address: int, target: I2CTarget) -> None:
        """Put ``target`` on the bus at 8-bit ``address``."""
        key = _address(address, f"{self.name}.attach")
        if key in self.targets:
            raise PeripheralConfigError(f"{self.name}: address 0x{key:02X} is already taken")
        self.targets[key] = target

    def detach(self, address: int) -> I2CTarget | None:
        """Take the target at ``address`` off the bus (it NACKs from now on)."""
        return self.targets.pop(_address(address, f"{self.name}.detach"), None)

    # --- the imp API --------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.clock_speed is not None

    def configure(self, clock_speed: int) -> None:
        if clock_speed not in self.speeds:
            names = ", ".join(n for n, v in CONSTANTS.items() if v in self.speeds)
            raise PeripheralUsageError(
                f"{self.name}.configure: unsupported clock speed {clock_speed!r} (use {names})")
        self.clock_speed = int(clock_speed)

    def disable(self) -> None:
        self.clock_speed = None

    def readerror(self) -> int:
        return int(self._readerror)

    def write(self, address: int, data: Any) -> int:
        """One write transaction: 0, or the imp's error code."""
        key = _address(address, f"{self.name}.write")
        payload = to_bytes(data, f"{self.name}.write")
        return int(self._write_phase(key, payload))

    def read(self, address: int, register: Any, n: int) -> bytes | None:
        """Write the sub-address (unless empty), then read ``n`` bytes; None on error."""
        key = _address(address, f"{self.name}.read")
        sub = to_bytes(register, f"{self.name}.read")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise PeripheralUsageError(f"{self.name}.read: bad byte count {n!r}")
        code = self._write_phase(key, sub) if sub else I2CError.NONE
        data: bytes | None = None
        if code is I2CError.NONE and not self.enabled:
            code = I2CError.NOT_ENABLED
        if code is I2CError.NONE:
            target = self.targets.get(key)
            if target is None or not target.connect(True):
                code = self.codes["address_read"]
            else:
                data = target.read(n)
                if data is None:
                    code = self.codes["receive"]
                else:  # a target that stops early leaves SDA to the pull-ups
                    data = bytes(data[:n]).ljust(n, bytes([IDLE_BYTE]))
        self._readerror = code
        return data if code is I2CError.NONE else None

    def _write_phase(self, key: int, payload: bytes) -> I2CError:
        if not self.enabled:
            return I2CError.NOT_ENABLED
        target = self.targets.get(key)
        if target is None or not target.connect(False):
            return self.codes["address_write"]
        if payload and not target.write(payload):
            return self.codes["data"]
        return I2CError.NONE


def _address(address: Any, where: str) -> int:
    if isinstance(address, bool) or not isinstance(address, int) or not 0 <= address <= 0xFF:
        raise PeripheralUsageError(f"{where}: bad 8-bit I2C address {address!r}")
    return address & 0xFE
