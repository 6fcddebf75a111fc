"""WS2812B RGB LEDs driven over SPI, as Electric Imp's WS2812 library and the Explorer Kit do.

The WS2812's one-wire code is timing: every data bit is a high pulse, short for
0 (about 0.4 us) and long for 1 (about 0.8 us), in a 1.25 us slot. The imp makes
it with SPI at 7.5 MHz (6.4 MHz on an imp005), one SPI byte per LED bit, MOSI only:
Electric Imp's library sends 0xC0 for a 0 and 0xF8 for a 1. The model decodes
what it is clocked exactly so: the high time of each byte (its leading ones at the
bus rate) against the datasheet's 0.55 us threshold, 24 bits a pixel in G, R, B
order, and each SPI write as one frame followed by the reset gap. An LED's colour
is what the last frame set.

On the Explorer Kit the LED's power is switched by pin1 (``power_pin``): while that
pin is not driven high the LED stays dark and ignores frames.
"""

from __future__ import annotations

from .pins import DIGITAL_OUT_MODES, PinBank

HIGH_THRESHOLD_US = 0.55
Color = tuple[int, int, int]


class Ws2812:
    """A chain of ``count`` WS2812B pixels on an SPI bus (MOSI only)."""

    def __init__(self, count: int = 1, pins: PinBank | None = None,
                 power_pin: str | None = None) -> None:
        self.count = count
        self.pins = pins
        self.power_pin = power_pin
        self.colors: list[Color] = [(0, 0, 0)] * count
        self.frames = 0
        self.speed_khz: float | None = None

    def clocked(self, speed_khz: float, flags: int) -> None:
        self.speed_khz = speed_khz

    @property
    def powered(self) -> bool:
        if self.power_pin is None or self.pins is None:
            return True
        pin = self.pins.pin(self.power_pin)
        return pin.mode in DIGITAL_OUT_MODES and pin.level > 0.5

    def transfer(self, data: bytes) -> bytes | None:
        if not self.powered or self.speed_khz is None:
            return None
        bit_us = 1000.0 / self.speed_khz
        bits = [int(_leading_ones(b) * bit_us > HIGH_THRESHOLD_US) for b in data]
        colors = list(self.colors)
        for i in range(min(self.count, len(bits) // 24)):
            g, r, b = (int("".join(map(str, bits[i * 24 + k * 8:i * 24 + k * 8 + 8])), 2)
                       for k in range(3))
            colors[i] = (r, g, b)
        self.colors = colors
        self.frames += 1
        return None


def _leading_ones(byte: int) -> int:
    count = 0
    for bit in range(7, -1, -1):
        if not byte >> bit & 1:
            break
        count += 1
    return count
