"""The I²C bus: Electric Imp's read/write/readerror semantics over models at 8-bit addresses.

A recording target shows the wire phases a transaction is made of; a missing part,
a NACKed data byte and a failed receive give the imp's error codes for each
controller (the imp001's STM32 numbering, the imp005's -9); an unconfigured bus
answers -13. The ST register file underneath the HTS221 is checked for its
sub-address convention: auto-increment with bit 7, the same register without it.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impfactory.hw.peripherals import (
    I2C,
    I2CError,
    PeripheralUsageError,
    StRegisterDevice,
)
from impfactory.hw.peripherals.i2c import CLOCK_SPEED_400_KHZ


class Recorder:
    """A target that ACKs as told and logs every phase it sees."""

    def __init__(self, ack_address: bool = True, ack_data: bool = True,
                 reply: bytes | None = b"\x11\x22\x33") -> None:
        self.ack_address, self.ack_data, self.reply = ack_address, ack_data, reply
        self.log: list[tuple[str, object]] = []

    def connect(self, read: bool) -> bool:
        self.log.append(("connect", "R" if read else "W"))
        return self.ack_address

    def write(self, data: bytes) -> bool:
        self.log.append(("write", data))
        return self.ack_data

    def read(self, n: int) -> bytes | None:
        self.log.append(("read", n))
        return None if self.reply is None else self.reply[:n]


def bus(errors: str = "stm32", configured: bool = True) -> I2C:
    i2c = I2C("i2c89", errors=errors)
    if configured:
        i2c.configure(CLOCK_SPEED_400_KHZ)
    return i2c


def test_a_read_writes_the_sub_address_then_restarts_to_read() -> None:
    i2c, target = bus(), Recorder()
    i2c.attach(0xBE, target)
    assert i2c.read(0xBE, "\x0f", 2) == b"\x11\x22"
    assert i2c.readerror() == 0
    assert target.log == [("connect", "W"), ("write", b"\x0f"), ("connect", "R"), ("read", 2)]


def test_an_empty_sub_address_skips_the_write_phase_and_a_write_is_one_transaction() -> None:
    i2c, target = bus(), Recorder()
    i2c.attach(0xBE, target)
    assert i2c.read(0xBE, b"", 1) == b"\x11"
    assert i2c.write(0xBE, b"\x20\x80") == 0
    assert target.log == [("connect", "R"), ("read", 1), ("connect", "W"),
                          ("write", b"\x20\x80")]


def test_addresses_are_the_imps_eight_bit_ones() -> None:
    i2c, target = bus(), Recorder()
    i2c.attach(0x5F << 1, target)
    assert i2c.read(0xBE, b"", 1) is not None
    assert i2c.read(0xBF, b"", 1) is not None  # the R/W bit is the bus's business
    assert i2c.read(0x5F, b"", 1) is None  # a 7-bit address is another device
    with pytest.raises(PeripheralUsageError, match="bad 8-bit I2C address"):
        i2c.read(0x1BE, b"", 1)


@pytest.mark.parametrize(("errors", "write_code", "sub_read_code", "bare_read_code"), [
    ("stm32", I2CError.TRANSMIT_SELECT, I2CError.TRANSMIT_SELECT, I2CError.ADDRESS_CLEAR),
    ("imp005", I2CError.NACK, I2CError.NACK, I2CError.NACK),
])
def test_nobody_at_the_address_is_a_nack_with_the_controllers_code(
        errors: str, write_code: int, sub_read_code: int, bare_read_code: int) -> None:
    i2c = bus(errors)
    assert i2c.write(0x32, b"\x20\x07") == write_code
    assert i2c.read(0x32, b"\x0f", 1) is None
    assert i2c.readerror() == sub_read_code
    assert i2c.read(0x32, b"", 1) is None
    assert i2c.readerror() == bare_read_code
    i2c.attach(0x32, Recorder(ack_address=False))  # fitted but dead: the same NACK
    assert i2c.write(0x32, b"\x00") == write_code


def test_a_nacked_data_byte_and_a_failed_receive() -> None:
    i2c = bus()
    i2c.attach(0x10, Recorder(ack_data=False))
    i2c.attach(0x20, Recorder(reply=None))
    assert i2c.write(0x10, b"\x01") == I2CError.TRANSMIT
    assert i2c.read(0x10, b"\x01", 1) is None and i2c.readerror() == I2CError.TRANSMIT
    assert i2c.read(0x20, b"\x01", 1) is None and i2c.readerror() == I2CError.RECEIVE


def test_readerror_belongs_to_reads_and_a_good_read_clears_it() -> None:
    i2c = bus()
    i2c.attach(0x10, Recorder())
    assert i2c.read(0x40, b"", 1) is None
    assert i2c.write(0x10, b"\x01") == 0
    assert i2c.readerror() == I2CError.ADDRESS_CLEAR  # the write left it alone
    assert i2c.read(0x10, b"", 1) is not None
    assert i2c.readerror() == 0


def test_a_short_answer_reads_the_idle_bus_for_the_rest() -> None:
    i2c = bus()
    i2c.attach(0x10, Recorder(reply=b"\x01"))
    assert i2c.read(0x10, b"", 3) == b"\x01\xff\xff"


def test_an_unconfigured_or_disabled_bus_answers_not_enabled() -> None:
    i2c = bus(configured=False)
    i2c.attach(0x10, Recorder())
    assert i2c.read(0x10, b"\x00", 1) is None
    assert i2c.readerror() == I2CError.NOT_ENABLED == -13
    assert i2c.write(0x10, b"\x00") == -13
    i2c.configure(CLOCK_SPEED_400_KHZ)
    assert i2c.write(0x10, b"\x00") == 0
    i2c.disable()
    assert i2c.write(0x10, b"\x00") == -13
    with pytest.raises(PeripheralUsageError, match="unsupported clock speed 123"):
        i2c.configure(123)


def test_a_detached_part_nacks() -> None:
    i2c = bus()
    i2c.attach(0x10, Recorder())
    i2c.detach(0x10)
    assert i2c.write(0x10, b"") == I2CError.TRANSMIT_SELECT


# --- the ST register file --------------------------------------------------------------


@given(start=st.integers(0, 0x7F), values=st.binary(min_size=1, max_size=20))
def test_registers_round_trip_with_auto_increment(start: int, values: bytes) -> None:
    regs = [(start + i) % 0x80 for i in range(len(values))]
    device = StRegisterDevice(writable=range(0x80))
    i2c = bus()
    i2c.attach(0xBE, device)
    assert i2c.write(0xBE, bytes([0x80 | start]) + values) == 0
    expected = dict(zip(regs, values, strict=True))  # a wrap may overwrite: last wins
    got = i2c.read(0xBE, bytes([0x80 | start]), len(values))
    assert got == bytes(expected[r] for r in regs)


@given(reg=st.integers(0, 0x7F), values=st.binary(min_size=1, max_size=8))
def test_without_bit_seven_the_pointer_stays_put(reg: int, values: bytes) -> None:
    device = StRegisterDevice(writable=[reg])
    i2c = bus()
    i2c.attach(0xBE, device)
    i2c.write(0xBE, bytes([reg]) + values)
    assert i2c.read(0xBE, bytes([reg]), 3) == bytes([values[-1]] * 3)


def test_reserved_registers_read_zero_and_read_only_ones_ignore_writes() -> None:
    device = StRegisterDevice({0x0F: 0x33, 0x20: 0x07}, writable=[0x20])
    i2c = bus()
    i2c.attach(0x32, device)
    i2c.write(0x32, b"\x0f\x99")  # WHO_AM_I is read-only
    i2c.write(0x32, b"\x10\x55")  # reserved
    assert i2c.read(0x32, b"\x8e", 3) == b"\x00\x33\x00"
    i2c.write(0x32, b"\x20\x47")
    assert i2c.read(0x32, b"\x20", 1) == b"\x47"


def test_a_missing_part_is_a_fault_flag() -> None:
    device = StRegisterDevice({0x0F: 0x33})
    i2c = bus()
    i2c.attach(0x32, device)
    device.set_fault("missing")
    assert i2c.read(0x32, b"\x0f", 1) is None
    assert i2c.readerror() == I2CError.TRANSMIT_SELECT
    device.clear_fault("missing")
    assert i2c.read(0x32, b"\x0f", 1) == b"\x33"
