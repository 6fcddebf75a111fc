"""The bench serial protocol: frames between a host and a bench controller.

A bench controller sits between the host (USB serial) and the boards on the
bench: an LED over a DUT's light sensor (light-out), a light sensor over a
fixture's LED (light-in), an RGB colour sensor over a DUT's status LED, a DUT
power switch, a relay on the fixture's button and the DUT's UART. This module is
the wire format only: no I/O, no clock.

Wire layout. Every frame is COBS-encoded and ends with one ``00`` byte, so a
receiver that lost sync (a dropped or corrupted byte) finds the next frame at the
next ``00``::

    on the wire:   COBS( body ) 00
    body:          VER  TYPE  SEQ  PAYLOAD...  CRC_hi CRC_lo
                   1    1     1    0..1024     2

* ``VER`` is :data:`PROTOCOL_VERSION`; a frame of another version is rejected.
* ``TYPE`` is a :class:`FrameType`; requests are 0x01..0x3F, replies and events
  have the high bit set or are ``ACK``/``ERROR``.
* ``SEQ`` is chosen by the host per request (1..255); replies echo it, so a
  retried request (same ``SEQ``) is answered from the controller's cache
  instead of being executed twice. Events a stream produces carry the ``SEQ``
  of the request that started the stream; UART bytes from the DUT carry 0.
* ``CRC`` is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, crcmod's
  ``crc-ccitt-false``) over ``VER TYPE SEQ PAYLOAD``, high byte first.

Payloads are declared with construct below, one declaration per frame type,
each ending in ``Terminated`` so trailing bytes are an error, not silence.
Multi-byte integers are big-endian. Rates travel as integer millihertz so that
60 Hz and 142.857 Hz survive exactly.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import crcmod.predefined
from construct import (
    Adapter,
    Byte,
    ConstructError,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Int32ub,
    PascalString,
    Struct,
    Terminated,
    ValidationError,
)

from impfactory.errors import ImpFactoryError

PROTOCOL_VERSION = 1
MAX_PAYLOAD = 1024
HEADER_SIZE = 3
CRC_SIZE = 2
MAX_BODY = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE
#: COBS adds at most one byte per 254, plus one; the delimiter is not counted.
MAX_ENCODED = MAX_BODY + MAX_BODY // 254 + 1
DELIMITER = b"\x00"

_crc16 = crcmod.predefined.mkPredefinedCrcFun("crc-ccitt-false")


class BenchProtocolError(ImpFactoryError, ValueError):
    """Bytes that are not a valid bench frame."""


class BenchFramingError(BenchProtocolError):
    """The COBS layer is broken: a bad code byte, a frame too short or too long."""


class BenchCrcError(BenchProtocolError):
    """The frame arrived whole but its CRC does not match its contents."""


class BenchVersionError(BenchProtocolError):
    """The frame speaks another version of this protocol."""


class BenchPayloadError(BenchProtocolError):
    """The frame type is unknown or its payload does not fit its declaration."""


class FrameType(enum.IntEnum):
    """Every frame the protocol knows. Requests go host → controller."""

    IDENTIFY = 0x01
    LIGHT_OUT = 0x02
    LIGHT_IN_START = 0x03
    STATUS_START = 0x04
    STREAM_STOP = 0x05
    POWER = 0x06
    BUTTON = 0x07
    UART_CONFIG = 0x08
    UART_TX = 0x09
    ACK = 0x40
    ERROR = 0x41
    IDENTITY = 0x81
    LIGHT_OUT_DONE = 0x82
    LIGHT_IN_SAMPLES = 0x83
    STATUS_SAMPLES = 0x84
    UART_RX = 0x89


class ErrorCode(enum.IntEnum):
    """Why a controller refused a request (carried in an ``ERROR`` frame)."""

    BAD_FRAME = 1
    """COBS or CRC failure; ``SEQ`` is 0 because it could not be trusted. Resend."""
    BAD_VERSION = 2
    UNKNOWN_TYPE = 3
    BAD_PAYLOAD = 4
    BUSY = 5
    """A light-out is already playing, or a stream is already running."""
    UNSUPPORTED = 6
    """This controller lacks the hardware (see ``Identity.capabilities``)."""
    BAD_SEQUENCE = 7
    """A light-out chunk arrived out of order (its offset is not the next symbol)."""
    RATE = 8
    """The requested rate is zero or beyond what the controller can do."""
    OVERFLOW = 9
    """The controller could not keep up; samples were lost."""


class Capability(enum.IntFlag):
    """What a controller has wired (``Identity.capabilities``)."""

    LIGHT_OUT = 0x01
    LIGHT_IN = 0x02
    STATUS_SENSE = 0x04
    POWER = 0x08
    BUTTON = 0x10
    UART = 0x20
    ALL = 0x3F


class LightOutFlag(enum.IntFlag):
    """Flags of a ``LIGHT_OUT`` chunk."""

    ACTIVE_HIGH = 0x01
    """The LED is lit when its pin is high (``BLINKUP_ACTIVEHIGH``)."""
    START = 0x02
    """First chunk of a stream: the controller discards any half-received one."""
    END = 0x04
    """Last chunk: the controller starts playing once it has this one."""


class Stream(enum.IntEnum):
    """Which sample stream a ``STREAM_STOP`` ends."""

    ALL = 0
    LIGHT_IN = 1
    STATUS = 2


class Message:
    """Base of every frame's payload; subclasses are frozen dataclasses."""

    TYPE: ClassVar[FrameType]
    FORMAT: ClassVar[Any]

    def fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


_EMPTY = Struct(Terminated)


class _U16Array(Adapter):  # type: ignore[misc]
    """Big-endian u16 samples filling the rest of the frame (struct-fast, unlike GreedyRange)."""

    def _decode(self, obj: bytes, context: Any, path: Any) -> tuple[int, ...]:
        if len(obj) % 2:
            raise ValidationError(f"{len(obj)} bytes is not a whole number of u16", path=path)
        return struct.unpack(f">{len(obj) // 2}H", obj)

    def _encode(self, obj: Any, context: Any, path: Any) -> bytes:
        try:
            return struct.pack(f">{len(obj)}H", *obj)
        except struct.error as err:
            raise ValidationError(f"samples must be 0..65535: {err}", path=path) from err


class _Triples(Adapter):  # type: ignore[misc]
    """Three-byte (R, G, B) samples filling the rest of the frame."""

    def _decode(self, obj: bytes, context: Any, path: Any) -> tuple[bytes, ...]:
        if len(obj) % 3:
            raise ValidationError(f"{len(obj)} bytes is not a whole number of RGB", path=path)
        return tuple(obj[i : i + 3] for i in range(0, len(obj), 3))

    def _encode(self, obj: Any, context: Any, path: Any) -> bytes:
        if not all(isinstance(x, bytes | bytearray) and len(x) == 3 for x in obj):
            raise ValidationError("each RGB sample must be 3 bytes", path=path)
        return b"".join(obj)


@dataclass(frozen=True)
class Identify(Message):
    """Host asks the controller who it is; answered by :class:`Identity`."""

    TYPE = FrameType.IDENTIFY
    FORMAT = _EMPTY


@dataclass(frozen=True)
class Identity(Message):
    """The controller's answer to ``IDENTIFY``."""

    TYPE = FrameType.IDENTITY
    FORMAT = Struct(
        "protocol_version" / Int8ub,
        "name" / PascalString(Int8ub, "utf8"),
        "serial" / PascalString(Int8ub, "utf8"),
        "capabilities" / Int16ub,
        "max_payload" / Int16ub,
        Terminated,
    )
    protocol_version: int
    name: str
    serial: str
    capabilities: int
    max_payload: int = MAX_PAYLOAD


@dataclass(frozen=True)
class LightOut(Message):
    """One chunk of symbols for the LED over a DUT's light sensor.

    A symbol is the LED brightness for one symbol period (0 dark .. 255 full),
    so bi-level codes use 0 and 255 and tri-level codes can use their grey.
    ``offset`` is the index of this chunk's first symbol in the whole stream.
    """

    TYPE = FrameType.LIGHT_OUT
    FORMAT = Struct(
        "rate_mhz" / Int32ub,
        "flags" / Int8ub,
        "offset" / Int32ub,
        "symbols" / GreedyBytes,
    )
    rate_mhz: int
    flags: int
    offset: int
    symbols: bytes


@dataclass(frozen=True)
class LightOutDone(Message):
    """Event: a light-out stream finished playing (``SEQ`` of its ``END`` chunk)."""

    TYPE = FrameType.LIGHT_OUT_DONE
    FORMAT = Struct("symbols" / Int32ub, Terminated)
    symbols: int


@dataclass(frozen=True)
class _StreamStart(Message):
    """A request to start a sample stream: its payload is the rate alone."""

    FORMAT = Struct("rate_mhz" / Int32ub, Terminated)
    rate_mhz: int


@dataclass(frozen=True)
class _Bytes(Message):
    """A frame whose payload is raw bytes (the UART pass-through, either way)."""

    FORMAT = Struct("data" / GreedyBytes)
    data: bytes


@dataclass(frozen=True)
class LightInStart(_StreamStart):
    """Start sampling the light sensor over a fixture's LED at ``rate_mhz``."""

    TYPE = FrameType.LIGHT_IN_START


@dataclass(frozen=True)
class LightInSamples(Message):
    """Event: light-sensor samples, 0..65535 full scale, first one at ``offset``.

    A gap between one frame's ``offset + len(samples)`` and the next frame's
    ``offset`` means a frame was lost on the wire.
    """

    TYPE = FrameType.LIGHT_IN_SAMPLES
    FORMAT = Struct("offset" / Int32ub, "samples" / _U16Array(GreedyBytes))
    offset: int
    samples: tuple[int, ...]


@dataclass(frozen=True)
class StatusStart(_StreamStart):
    """Start sampling the RGB colour sensor over a DUT's status LED at ``rate_mhz``."""

    TYPE = FrameType.STATUS_START


@dataclass(frozen=True)
class StatusSamples(Message):
    """Event: RGB samples of the status LED, three bytes (R, G, B) per sample."""

    TYPE = FrameType.STATUS_SAMPLES
    FORMAT = Struct("offset" / Int32ub, "rgb" / _Triples(GreedyBytes))
    offset: int
    rgb: tuple[bytes, ...]


@dataclass(frozen=True)
class StreamStop(Message):
    """Stop a sample stream. The ``ACK`` follows that stream's last samples."""

    TYPE = FrameType.STREAM_STOP
    FORMAT = Struct("stream" / Int8ub, Terminated)
    stream: int = Stream.ALL


@dataclass(frozen=True)
class Power(Message):
    """Switch the DUT's power."""

    TYPE = FrameType.POWER
    FORMAT = Struct("on" / Byte, Terminated)
    on: int


@dataclass(frozen=True)
class Button(Message):
    """Close the relay on the fixture's button for ``duration_ms``."""

    TYPE = FrameType.BUTTON
    FORMAT = Struct("duration_ms" / Int16ub, Terminated)
    duration_ms: int


@dataclass(frozen=True)
class UartConfig(Message):
    """Set the DUT UART pass-through's baud rate (0 disables it)."""

    TYPE = FrameType.UART_CONFIG
    FORMAT = Struct("baud" / Int32ub, Terminated)
    baud: int


@dataclass(frozen=True)
class UartTx(_Bytes):
    """Bytes for the controller to send to the DUT's UART."""

    TYPE = FrameType.UART_TX


@dataclass(frozen=True)
class UartRx(_Bytes):
    """Event: bytes the DUT sent on its UART."""

    TYPE = FrameType.UART_RX


@dataclass(frozen=True)
class Ack(Message):
    """The request with this frame's ``SEQ`` (of type ``of``) was accepted."""

    TYPE = FrameType.ACK
    FORMAT = Struct("of" / Int8ub, Terminated)
    of: int


@dataclass(frozen=True)
class Error(Message):
    """The request with this frame's ``SEQ`` was refused, and why."""

    TYPE = FrameType.ERROR
    FORMAT = Struct("code" / Int8ub, "message" / PascalString(Int8ub, "utf8"), Terminated)
    code: int
    message: str = ""


MESSAGES: dict[FrameType, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Identify,
        Identity,
        LightOut,
        LightOutDone,
        LightInStart,
        LightInSamples,
        StatusStart,
        StatusSamples,
        StreamStop,
        Power,
        Button,
        UartConfig,
        UartTx,
        UartRx,
        Ack,
        Error,
    )
}
assert set(MESSAGES) == set(FrameType), "every frame type needs a message class"


@dataclass(frozen=True)
class Packet:
    """One decoded frame: its sequence number and typed message."""

    seq: int
    message: Message


# ---------------------------------------------------------------- COBS


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: ``data`` without any ``00`` byte.

    Works on the zero-free pieces between zeros (bytes.split is C-fast): each
    piece goes out in blocks of at most 254 bytes, each block after a code byte
    that says how far the next (implied) zero is.
    """
    out = bytearray()
    parts = data.split(b"\x00")
    for k, part in enumerate(parts):
        i = 0
        while len(part) - i >= 254:
            out.append(255)
            out += part[i : i + 254]
            i += 254
        if k == len(parts) - 1 and i and i == len(part):
            break  # a run ending on a full 254-byte block needs no final code
        out.append(len(part) - i + 1)
        out += part[i:]
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Undo :func:`cobs_encode`; raises :class:`BenchFramingError` on bad input."""
    out = bytearray()
    i = 0
    n = len(data)
    if n == 0:
        raise BenchFramingError("empty COBS block")
    while i < n:
        code = data[i]
        if code == 0:
            raise BenchFramingError(f"zero byte inside a COBS block at {i}")
        end = i + code
        if end > n:
            raise BenchFramingError(f"COBS code {code} at {i} runs past the frame end ({n})")
        block = data[i + 1 : end]
        if 0 in block:
            raise BenchFramingError("zero byte inside a COBS block")
        out += block
        i = end
        if code < 255 and i < n:
            out.append(0)
    return bytes(out)


# ---------------------------------------------------------------- frames


def encode_body(seq: int, message: Message) -> bytes:
    """The un-stuffed body ``VER TYPE SEQ PAYLOAD CRC`` of one frame."""
    if not 0 <= seq <= 255:
        raise BenchPayloadError(f"sequence number {seq} is not a byte")
    try:
        payload = message.FORMAT.build(message.fields())
    except (ConstructError, ValueError, TypeError, OverflowError) as err:
        raise BenchPayloadError(f"cannot build {message.TYPE.name}: {err}") from err
    if len(payload) > MAX_PAYLOAD:
        raise BenchPayloadError(
            f"{message.TYPE.name} payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}"
        )
    head = bytes((PROTOCOL_VERSION, message.TYPE, seq)) + bytes(payload)
    crc: int = _crc16(head)
    return head + crc.to_bytes(2, "big")


def encode(seq: int, message: Message) -> bytes:
    """One frame as it goes on the wire: COBS-stuffed body and the ``00`` delimiter."""
    return cobs_encode(encode_body(seq, message)) + DELIMITER


def decode_body(body: bytes) -> Packet:
    """Parse an un-stuffed body; every failure is a :class:`BenchProtocolError`."""
    if len(body) < HEADER_SIZE + CRC_SIZE:
        raise BenchFramingError(f"frame of {len(body)} bytes is shorter than header and CRC")
    if len(body) > MAX_BODY:
        raise BenchFramingError(f"frame of {len(body)} bytes is longer than {MAX_BODY}")
    head, crc = body[:-CRC_SIZE], int.from_bytes(body[-CRC_SIZE:], "big")
    expected: int = _crc16(head)
    if expected != crc:
        raise BenchCrcError(f"CRC {crc:04x} does not match {expected:04x}")
    version, type_code, seq = head[0], head[1], head[2]
    if version != PROTOCOL_VERSION:
        raise BenchVersionError(
            f"frame speaks bench protocol version {version}, this is {PROTOCOL_VERSION}"
        )
    try:
        frame_type = FrameType(type_code)
    except ValueError as err:
        raise BenchPayloadError(f"unknown frame type 0x{type_code:02x}") from err
    cls = MESSAGES[frame_type]
    try:
        parsed = cls.FORMAT.parse(head[HEADER_SIZE:])
    except (ConstructError, UnicodeDecodeError) as err:
        raise BenchPayloadError(f"bad {frame_type.name} payload: {err}") from err
    values = {
        f.name: _freeze(parsed[f.name])
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
    }
    return Packet(seq, cls(**values))


def decode(frame: bytes) -> Packet:
    """Decode one COBS-stuffed frame (with or without its trailing delimiter)."""
    if frame.endswith(DELIMITER):
        frame = frame[:-1]
    return decode_body(cobs_decode(frame))


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


@dataclass(frozen=True)
class Fault:
    """Bytes between two delimiters that were not a valid frame, and why."""

    error: BenchProtocolError
    raw: bytes


@dataclass
class FrameDecoder:
    """Streaming decoder: feed it bytes in chunks of any size, get frames out.

    Bytes before the first delimiter, corrupted frames and over-long runs come
    out as :class:`Fault` items in stream order, so the reader can count them or
    ask for a resend; the decoder itself always resynchronises at the next
    ``00``. "Need more bytes" is the ordinary answer: an empty list.
    """

    max_encoded: int = MAX_ENCODED
    _buffer: bytearray = field(default_factory=bytearray)
    _overflow: bool = False
    frames: int = 0
    faults: int = 0

    def feed(self, data: bytes) -> list[Packet | Fault]:
        out: list[Packet | Fault] = []
        for chunk_end in _split_keep(data):
            piece, complete = chunk_end
            if not complete:
                self._buffer += piece
                if len(self._buffer) > self.max_encoded:
                    self._overflow = True
                    self._buffer.clear()
                continue
            raw = bytes(self._buffer) + piece
            overflow = self._overflow
            self._buffer.clear()
            self._overflow = False
            if overflow:
                self.faults += 1
                out.append(Fault(BenchFramingError("frame longer than the maximum"), b""))
                continue
            if not raw:
                continue  # back-to-back delimiters: idle line, not a fault
            try:
                packet = decode_body(cobs_decode(raw))
            except BenchProtocolError as err:
                self.faults += 1
                out.append(Fault(err, raw))
            else:
                self.frames += 1
                out.append(packet)
        return out

    def pending(self) -> int:
        """Bytes held waiting for a delimiter."""
        return len(self._buffer)


def _split_keep(data: bytes) -> Iterator[tuple[bytes, bool]]:
    """Yield (piece, ended_by_delimiter) for the pieces of ``data``."""
    start = 0
    while True:
        idx = data.find(0, start)
        if idx < 0:
            if start < len(data):
                yield data[start:], False
            return
        yield data[start:idx], True
        start = idx + 1


def rate_to_mhz(rate_hz: float) -> int:
    """Hz → the integer millihertz the wire carries; rejects rates that do not fit."""
    mhz = round(rate_hz * 1000)
    if not 0 < mhz < 2**32:
        raise BenchPayloadError(f"rate {rate_hz} Hz is outside the protocol's range")
    return mhz
