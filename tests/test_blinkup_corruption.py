"""Corruption: flip random bits in many frames and count what the CRC lets through.

The BlinkUp CRC pairs a reflected table with an MSB-first update (IMP_FACTS §1), so it
is not a true polynomial CRC and does not catch every double-bit error. These tests pin
the measured figures (docs/blinkup.md; ``impfactory perf decoder --corruption N``)."""

from __future__ import annotations

from impfactory.tools.perf_decoder import crc_misses


def test_every_single_bit_error_is_caught() -> None:
    assert crc_misses(1500, 1) == 0


def test_every_triple_bit_error_is_caught() -> None:
    assert crc_misses(1500, 3) == 0


def test_double_bit_errors_slip_through_rarely() -> None:
    missed = crc_misses(3000, 2)
    assert missed < 0.02 * 3000  # measured about 0.6%
