# The bench protocol's wire format, as the controller speaks it (MicroPython).
#
# This file runs on the Raspberry Pi Pico and, unchanged, under CPython as the
# emulated controller (hw/controller/sim.py injects the modules MicroPython has).
# It is the same format as protocol/bench.py, written for a microcontroller: no
# allocation per frame, every buffer made once at boot.
#
#     on the wire:   COBS( body ) 00
#     body:          VER  TYPE  SEQ  PAYLOAD...  CRC_hi CRC_lo
#                    1    1     1    0..1024     2
#
# CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over VER TYPE SEQ PAYLOAD, high
# byte first. COBS removes every 00 from the body; 00 ends a frame.
from array import array

from micropython import const

VERSION = const(1)
MAX_PAYLOAD = const(1024)
HEADER = const(3)
MAX_BODY = const(1029)  # HEADER + MAX_PAYLOAD + 2
MAX_ENCODED = const(1035)  # MAX_BODY + MAX_BODY // 254 + 1

# frame types (protocol/bench.py FrameType)
IDENTIFY = const(0x01)
LIGHT_OUT = const(0x02)
LIGHT_IN_START = const(0x03)
STATUS_START = const(0x04)
STREAM_STOP = const(0x05)
POWER = const(0x06)
BUTTON = const(0x07)
UART_CONFIG = const(0x08)
UART_TX = const(0x09)
ACK = const(0x40)
ERROR = const(0x41)
IDENTITY = const(0x81)
LIGHT_OUT_DONE = const(0x82)
LIGHT_IN_SAMPLES = const(0x83)
STATUS_SAMPLES = const(0x84)
UART_RX = const(0x89)

# error codes (protocol/bench.py ErrorCode)
BAD_FRAME = const(1)
BAD_VERSION = const(2)
UNKNOWN_TYPE = const(3)
BAD_PAYLOAD = const(4)
BUSY = const(5)
UNSUPPORTED = const(6)
BAD_SEQUENCE = const(7)
RATE = const(8)
OVERFLOW = const(9)


def _crc_table():
    table = array("H", bytes(512))
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table[i] = crc & 0xFFFF
    return table


CRC_TABLE = _crc_table()


def crc16(buf, start, end, crc=0xFFFF):
    """CRC-16/CCITT-FALSE of buf[start:end] (check: b"123456789" -> 0x29B1)."""
    table = CRC_TABLE
    for i in range(start, end):
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ buf[i]) & 0xFF]
    return crc


def cobs_encode(src, n, dst):
    """COBS-encode src[:n] into dst and add the 00 delimiter; returns the bytes used.

    A run that ends on a full 254-byte block gets no final code byte, as
    protocol/bench.py encodes it, so both produce the same wire bytes.
    """
    code_at = 0
    out = 1
    code = 1
    for i in range(n):
        b = src[i]
        if b == 0:
            dst[code_at] = code
            code_at = out
            out += 1
            code = 1
        else:
            dst[out] = b
            out += 1
            code += 1
            if code == 0xFF and i + 1 < n:
                dst[code_at] = code
                code_at = out
                out += 1
                code = 1
    dst[code_at] = code
    dst[out] = 0
    return out + 1


def cobs_decode(src, n, dst):
    """Undo COBS on src[:n] (no 00 inside) into dst; returns the length, or -1 when broken."""
    i = 0
    out = 0
    if n == 0:
        return -1
    while i < n:
        code = src[i]
        end = i + code
        if code == 0 or end > n or out + code - 1 > len(dst):
            return -1
        i += 1
        while i < end:
            dst[out] = src[i]
            out += 1
            i += 1
        if code < 0xFF and i < n:
            if out == len(dst):
                return -1
            dst[out] = 0
            out += 1
    return out


class Receiver:
    """Bytes in, whole frame bodies out: resynchronises at every 00.

    ``feed`` takes one byte and returns 0 while a frame is incomplete, the body
    length when one is whole and valid (it is in ``body``), or a negative error:
    -1 a broken frame (COBS, CRC, too short or too long), -2 the host asking for
    MicroPython's REPL (``\\r\\x03`` at a frame start, which no frame can begin
    with: its second byte is always VER).
    """

    def __init__(self):
        self.raw = bytearray(MAX_ENCODED)
        self.body = bytearray(MAX_BODY)
        self.n = 0
        self.overflow = False

    def feed(self, b):
        if b != 0:
            if self.n < MAX_ENCODED:
                self.raw[self.n] = b
                self.n += 1
                if self.n == 2 and b == 0x03 and self.raw[0] == 0x0D:
                    self.n = 0
                    return -2
            else:
                self.overflow = True
            return 0
        n = self.n
        self.n = 0
        if self.overflow:
            self.overflow = False
            return -1
        if n == 0:
            return 0  # back-to-back delimiters: an idle line
        size = cobs_decode(self.raw, n, self.body)
        if size < HEADER + 2:
            return -1
        if crc16(self.body, 0, size - 2) != (self.body[size - 2] << 8) | self.body[size - 1]:
            return -1
        return size


class Sender:
    """Builds frames in one preallocated body and sends them through ``link.write``.

    A caller writes a payload into ``body`` from index ``HEADER`` on and calls
    ``send(type, seq, n)``.
    """

    def __init__(self, link):
        self.link = link
        self.body = bytearray(MAX_BODY)
        self.wire = bytearray(MAX_ENCODED + 1)
        self.wire_view = memoryview(self.wire)
        self.body[0] = VERSION

    def frame(self, type_, seq, n):
        """Encode the body with an ``n``-byte payload; returns the wire length."""
        body = self.body
        body[1] = type_
        body[2] = seq
        end = HEADER + n
        crc = crc16(body, 0, end)
        body[end] = crc >> 8
        body[end + 1] = crc & 0xFF
        return cobs_encode(body, end + 2, self.wire)

    def send(self, type_, seq, n):
        size = self.frame(type_, seq, n)
        self.link.write(self.wire_view[:size])
        return size


def put_u32(buf, at, value):
    buf[at] = (value >> 24) & 0xFF
    buf[at + 1] = (value >> 16) & 0xFF
    buf[at + 2] = (value >> 8) & 0xFF
    buf[at + 3] = value & 0xFF


def get_u32(buf, at):
    return (buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]


def put_text(buf, at, text):
    """A u8 length and the UTF-8 of ``text`` (cut to 200 bytes); returns the next index."""
    data = text.encode()[:200]
    buf[at] = len(data)
    buf[at + 1:at + 1 + len(data)] = data
    return at + 1 + len(data)
