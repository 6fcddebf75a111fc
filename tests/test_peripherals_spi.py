"""The SPI bus and the WS2812B LED the Explorer Kit drives over it.

The bus exchanges bytes with the targets whose chip-select pin the imp holds low
(or that have none), runs at the controller's nearest rate, reverses bits for
LSB_FIRST and returns a string for a string. The WS2812 frames here are built the
way Electric Imp's WS2812 library builds them (one SPI byte per LED bit: 0xC0 for
0, 0xF8 for 1, green-red-blue), not with the model's code.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impfactory.hw.peripherals import SPI, Host, PeripheralUsageError, PinBank, PinMode, Ws2812
from impfactory.hw.peripherals.spi import LSB_FIRST, MSB_FIRST, SIMPLEX_RX, USE_CS_L

IMP001_SPI257 = [30000, 15000, 7500, 3750, 1875, 937.5, 468.75, 234.375]


class Echo:
    """Returns what it was sent, shifted by ``offset``; logs every transfer."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset
        self.seen: list[bytes] = []

    def transfer(self, data: bytes) -> bytes:
        self.seen.append(data)
        return bytes((b + self.offset) & 0xFF for b in data)


def spi(**kwargs: object) -> tuple[PinBank, SPI]:
    pins = PinBank(("pin1", "pin2", "pin5", "pin7", "pin8"), Host())
    return pins, SPI("spi257", pins.host, pins, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("asked", "runs"), [(7500, 7500), (7000, 3750), (50000, 30000),
                                             (100, 234.375)])
def test_a_listed_controller_runs_at_the_fastest_rate_not_above_the_request(
        asked: float, runs: float) -> None:
    _, bus = spi(rates_khz=IMP001_SPI257)
    assert bus.configure(MSB_FIRST, asked) == runs


def test_a_ranged_controller_clips() -> None:
    _, bus = spi(range_khz=(1.0, 22800.0))
    assert bus.configure(MSB_FIRST, 6400) == 6400
    assert bus.configure(MSB_FIRST, 99999) == 22800


def test_write_writeread_and_reads() -> None:
    _, bus = spi()
    target = Echo(offset=1)
    bus.attach(target)
    with pytest.raises(PeripheralUsageError, match="not configured"):
        bus.write(b"x")
    bus.configure(MSB_FIRST, 1000)
    assert bus.write("abc") == 3
    assert bus.writeread("abc") == "bcd"
    assert bus.writeread(b"\x00\xff") == b"\x01\x00"
    assert bus.readblob(2) == b"\x01\x01"  # clocks out zeros
    assert bus.readstring(1) == "\x01"
    assert target.seen[0] == b"abc" and target.seen[-1] == b"\x00"


def test_chip_select_pins_choose_who_takes_part() -> None:
    pins, bus = spi()
    a, b = Echo(1), Echo(2)
    bus.attach(a, cs="pin1")
    bus.attach(b, cs="pin8")
    bus.configure(MSB_FIRST, 1000)
    cs_a, cs_b = pins.pin("pin1"), pins.pin("pin8")
    cs_a.configure(PinMode.DIGITAL_OUT, 1)
    cs_b.configure(PinMode.DIGITAL_OUT, 1)
    assert bus.writeread(b"\x10") == b"\xff"  # nobody selected: MISO idles high
    cs_a.write(0)
    assert bus.writeread(b"\x10") == b"\x11"
    cs_b.write(0)
    assert bus.writeread(b"\x10") == bytes([0x11 & 0x12])  # both drive: wired AND
    assert len(a.seen) == 2 and len(b.seen) == 1


@given(st.binary(max_size=16))
def test_lsb_first_reverses_bits_on_the_wire_both_ways(data: bytes) -> None:
    _, bus = spi()
    target = Echo()
    bus.attach(target)
    bus.configure(LSB_FIRST, 1000)
    assert bus.writeread(data) == data
    assert target.seen[-1] == bytes(int(f"{b:08b}"[::-1], 2) for b in data)


def test_modes_the_bus_refuses() -> None:
    _, bus = spi()
    with pytest.raises(PeripheralUsageError, match="USE_CS_L needs"):
        bus.configure(USE_CS_L, 1000)
    with pytest.raises(PeripheralUsageError, match="unknown mode flags"):
        bus.configure(0x400, 1000)
    bus.configure(SIMPLEX_RX, 1000)
    with pytest.raises(PeripheralUsageError, match="receive-only"):
        bus.write(b"x")
    with pytest.raises(PeripheralUsageError, match="chipselect"):
        bus.chipselect(0)


def test_the_dedicated_chip_select_of_an_imp005() -> None:
    _, bus = spi(dedicated_cs=True)
    target = Echo(1)
    bus.attach(target)
    bus.configure(USE_CS_L, 1000)
    assert bus.writeread(b"\x00") == b"\xff"  # CS idles high
    bus.chipselect(0)
    assert bus.writeread(b"\x00") == b"\x01"


# --- WS2812B -------------------------------------------------------------------------------


def library_frame(colors: list[tuple[int, int, int]]) -> bytes:
    """WS2812.class.nut's encoding: GRB, MSB first, one SPI byte per bit."""
    out = bytearray()
    for r, g, b in colors:
        for value in (g, r, b):
            out += bytes(0xF8 if value >> bit & 1 else 0xC0 for bit in range(7, -1, -1))
    return bytes(out)


@pytest.mark.parametrize("rate", [7500, 6400])
@given(colors=st.lists(st.tuples(*[st.integers(0, 255)] * 3), min_size=1, max_size=3))
def test_a_ws2812_chain_shows_the_librarys_frame(rate: float,
                                                 colors: list[tuple[int, int, int]]) -> None:
    _, bus = spi(range_khz=(1.0, 22800.0))
    leds = Ws2812(count=3)
    bus.attach(leds)
    bus.configure(MSB_FIRST, rate)
    bus.write(library_frame(colors))
    assert leds.colors[: len(colors)] == colors
    assert leds.frames == 1


def test_a_ws2812_clocked_too_slowly_sees_only_ones() -> None:
    _, bus = spi(rates_khz=IMP001_SPI257)
    leds = Ws2812()
    bus.attach(leds)
    bus.configure(MSB_FIRST, 900)  # runs at 468.75 kHz: even 0xC0 is a long pulse
    bus.write(library_frame([(255, 0, 0)]))
    assert leds.colors == [(255, 255, 255)]


def test_the_explorer_kit_led_is_dark_until_pin1_powers_it() -> None:
    pins, bus = spi(rates_khz=IMP001_SPI257)
    leds = Ws2812(pins=pins, power_pin="pin1")
    bus.attach(leds)
    bus.configure(MSB_FIRST, 7500)
    bus.write(library_frame([(0, 0, 255)]))
    assert leds.colors == [(0, 0, 0)] and leds.frames == 0
    pins.pin("pin1").configure(PinMode.DIGITAL_OUT, 1)
    bus.write(library_frame([(0, 0, 255)]))
    assert leds.colors == [(0, 0, 255)]
