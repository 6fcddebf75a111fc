"""The CRC-16 that guards a BlinkUp packet (IMP_FACTS §1).

BlinkUp pairs the *reflected* CRC-16 table for polynomial 0xA001 with an
*MSB-first* update::

    crc = ((crc << 8) & 0xFFFF) ^ T[((crc >> 8) ^ b) & 0xFF]     start crc = 0

That is not a textbook CRC (neither CRC-16/ARC nor XMODEM), so no library
preset computes it; it is copied here exactly. It covers LEN and the TLVs, not
the preamble, and is sent high byte first. Check value: ``02 07 00`` -> 0x1D41.
"""

from __future__ import annotations

from collections.abc import Iterable


def _make_table() -> tuple[int, ...]:
    """T[i] is i shifted right 8 times, xor 0xA001 whenever the low bit was 1."""
    table = []
    for i in range(256):
        value = i
        for _ in range(8):
            value = (value >> 1) ^ 0xA001 if value & 1 else value >> 1
        table.append(value)
    return tuple(table)


TABLE: tuple[int, ...] = _make_table()


def crc16(data: bytes | bytearray | memoryview | Iterable[int], crc: int = 0) -> int:
    """Return the BlinkUp CRC of ``data``, continuing from ``crc`` (0 for a new packet)."""
    table = TABLE
    for b in bytes(data):
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ b) & 0xFF]
    return crc
