"""The BlinkUp packet: the bytes a fixture or phone flashes at an imp (IMP_FACTS §1).

Wire layout (one frame, as it is flashed)::

    +-------------+-----+---------------------------+--------+--------+
    | 00 00 00 2A | LEN | TLV TLV ...  (LEN bytes)  | CRC hi | CRC lo |
    +-------------+-----+---------------------------+--------+--------+
      preamble            TLV = type(1) len(1) value(len)
      (not in CRC)  <------------ CRC-16 (crc16.py) ------->

    type  field            value
    ----  ---------------  ------------------------------------------------------
      7   clear            empty: forget WiFi and enrolment (the packet 02 07 00)
      1   ssid             raw bytes, 1 to 32 (an empty SSID sends no WiFi TLVs at all)
      6   password         raw bytes, up to 64; always right after the SSID (06 00
                           when there is none), never without one
     11   static_network   ip, netmask, gateway, dns1 [, dns2]: 4 bytes each, BE
     13   proxy            port (2 bytes LE), len+server [, len+username [, len+password]]
                           (an empty username or password is left out)
      5   enrolment        plan ID (8 bytes) + token (8 bytes), each the 16-hex-char
                           string with its byte order reversed (little-endian)

The format is declared once, below, with construct: building rebuilds LEN, every
TLV length and the CRC, so none is computed by hand. ``encode_frame`` writes TLVs
in the order the Electric Imp SDK does (clear first, then SSID, password, static
network, proxy, enrolment); ``decode_frame`` accepts any order but rejects
duplicates. Every way a frame can be wrong raises a :class:`BlinkUpError`
subclass naming the field, so a corrupt BlinkUp is never half-applied.

Edge cases follow what Electric Imp's JavaScript SDK writes (``FlashPacket.js``):
an SSID without a password still sends the password TLV, empty (``06 00``); an
empty SSID sends neither TLV; an empty proxy username or password is left out.
:class:`BlinkUpConfig` and :class:`ProxyConfig` normalise to that form when built,
so a config equals its own round trip. A packet with no TLV at all (LEN 0, the
frame ``00 00 00 2A 00 00 00``) carries nothing: :class:`EmptyPacketError` on
decode and on encode.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from construct import (
    Adapter,
    Byte,
    Bytes,
    Checksum,
    ChecksumError,
    Const,
    ConstructError,
    GreedyBytes,
    GreedyRange,
    Int16ub,
    Int16ul,
    Optional,
    PascalString,
    Prefixed,
    RawCopy,
    Struct,
    Switch,
    Terminated,
    this,
)

from impfactory.errors import ImpFactoryError

from .crc16 import crc16

PREAMBLE = b"\x00\x00\x00\x2a"
MAGIC = 0x2A
MAX_SSID = 32
MAX_PASSWORD = 64
MAX_PACKET = 255  # LEN is one byte

TLV_SSID = 1
TLV_ENROLMENT = 5
TLV_PASSWORD = 6
TLV_CLEAR = 7
TLV_STATIC_NETWORK = 11
TLV_PROXY = 13

TLV_NAMES: dict[int, str] = {
    TLV_CLEAR: "clear",
    TLV_SSID: "ssid",
    TLV_PASSWORD: "password",
    TLV_STATIC_NETWORK: "static_network",
    TLV_PROXY: "proxy",
    TLV_ENROLMENT: "enrolment",
}


# --------------------------------------------------------------------------- errors


class BlinkUpError(ImpFactoryError, ValueError):
    """A BlinkUp packet or signal is wrong; ``field`` names the part at fault."""

    def __init__(self, message: str, field: str = "frame") -> None:
        super().__init__(message)
        self.field = field


class BadPreambleError(BlinkUpError):
    """The frame does not start with ``00 00 00 2A``."""


class BadCRCError(BlinkUpError):
    """The CRC in the frame does not match its contents."""

    def __init__(self, message: str, expected: int, received: int) -> None:
        super().__init__(message, "crc")
        self.expected = expected
        self.received = received


class BadLengthError(BlinkUpError):
    """A length (LEN, a TLV length or a fixed-size value) does not add up."""


class EmptyPacketError(BadLengthError):
    """LEN is 0: a packet with no TLV is not a BlinkUp (nothing to configure)."""


class TruncatedError(BlinkUpError):
    """The frame ends before the field it names."""


class UnknownTLVError(BlinkUpError):
    """A TLV type this protocol does not define."""

    def __init__(self, message: str, tlv_type: int) -> None:
        super().__init__(message, f"tlv {tlv_type}")
        self.tlv_type = tlv_type


class DuplicateTLVError(BlinkUpError):
    """The same TLV type appears twice, so the packet is ambiguous."""


class ValueTooLongError(BlinkUpError):
    """A value exceeds its limit (SSID 32, password 64, packet 255 bytes)."""


class BadHexFieldError(BlinkUpError):
    """A plan ID or token that is not exactly 16 hexadecimal characters."""


class BlinkUpValueError(BlinkUpError):
    """A field holds a value the packet cannot carry (bad address, port, text...)."""


# --------------------------------------------------------------------------- values


def _as_bytes(value: bytes | bytearray | str | None) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def _check_hex16(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    if len(text) != 16 or any(c not in "0123456789abcdef" for c in text):
        raise BadHexFieldError(f"{name} must be 16 hexadecimal characters, got {value!r}", name)
    return text


def _check_ipv4(name: str, value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError as err:
        raise BlinkUpValueError(f"{name} is not an IPv4 address: {value!r}", name) from err


@dataclass(frozen=True)
class StaticNetwork:
    """Static IP settings (TLV 11); addresses are dotted-quad strings."""

    ip: str
    netmask: str
    gateway: str
    dns1: str
    dns2: str | None = None

    def __post_init__(self) -> None:
        for name in ("ip", "netmask", "gateway", "dns1", "dns2"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _check_ipv4(f"static_network.{name}", value))


@dataclass(frozen=True)
class ProxyConfig:
    """HTTP proxy settings (TLV 13). A password needs a username before it on the wire."""

    server: str
    port: int
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        # the SDK leaves an empty username or password out of the TLV: say so here
        for name in ("username", "password"):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)
        if not 0 <= int(self.port) <= 0xFFFF:
            raise BlinkUpValueError(f"proxy port out of range: {self.port}", "proxy.port")
        if self.password is not None and self.username is None:
            raise BlinkUpValueError("a proxy password needs a username", "proxy.password")
        for name in ("server", "username", "password"):
            value = getattr(self, name)
            if value is not None and len(value.encode("utf-8")) > 255:
                raise ValueTooLongError(f"proxy {name} is over 255 bytes", f"proxy.{name}")


@dataclass(frozen=True)
class BlinkUpConfig:
    """What one BlinkUp carries. ``None`` means the TLV is absent.

    ``ssid`` and ``password`` are bytes (a str is stored as its UTF-8 bytes);
    ``plan_id`` and ``token`` are 16-hex-character strings, both or neither
    (stored in lowercase). As the SDK sends them, an empty SSID is no SSID
    (``None``) and an SSID without a password has the empty password ``b""``.
    """

    ssid: bytes | None = None
    password: bytes | None = None
    plan_id: str | None = None
    token: str | None = None
    static_network: StaticNetwork | None = None
    proxy: ProxyConfig | None = None
    clear: bool = False

    def __post_init__(self) -> None:
        ssid = _as_bytes(self.ssid)
        password = _as_bytes(self.password)
        if ssid == b"":
            ssid = None  # no WiFi TLVs at all
        if ssid is not None and password is None:
            password = b""  # the SDK always follows the SSID with a password TLV
        if ssid is not None and len(ssid) > MAX_SSID:
            raise ValueTooLongError(f"ssid is {len(ssid)} bytes, limit {MAX_SSID}", "ssid")
        if password is not None and len(password) > MAX_PASSWORD:
            raise ValueTooLongError(
                f"password is {len(password)} bytes, limit {MAX_PASSWORD}", "password"
            )
        if password is not None and not ssid:
            raise BlinkUpValueError("a password is sent only after a non-empty SSID", "password")
        plan_id = _check_hex16("plan_id", self.plan_id)
        token = _check_hex16("token", self.token)
        if (plan_id is None) != (token is None):
            raise BlinkUpValueError("enrolment needs both plan_id and token", "enrolment")
        object.__setattr__(self, "ssid", ssid)
        object.__setattr__(self, "password", password)
        object.__setattr__(self, "plan_id", plan_id)
        object.__setattr__(self, "token", token)
        object.__setattr__(self, "clear", bool(self.clear))

    @property
    def enrolment(self) -> tuple[str, str] | None:
        """``(plan_id, token)`` when the packet enrols the device."""
        if self.plan_id is None or self.token is None:
            return None
        return (self.plan_id, self.token)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields present (bytes as UTF-8 text when they are)."""
        out: dict[str, Any] = {}
        for name in ("ssid", "password"):
            value = getattr(self, name)
            if value is not None:
                try:
                    out[name] = value.decode("utf-8")
                except UnicodeDecodeError:
                    out[name] = None
                    out[f"{name}_hex"] = value.hex()
        if self.plan_id is not None:
            out["plan_id"] = self.plan_id
            out["token"] = self.token
        if self.static_network is not None:
            sn = self.static_network
            out["static_network"] = {
                k: getattr(sn, k)
                for k in ("ip", "netmask", "gateway", "dns1", "dns2")
                if getattr(sn, k) is not None
            }
        if self.proxy is not None:
            px = self.proxy
            out["proxy"] = {
                k: getattr(px, k)
                for k in ("server", "port", "username", "password")
                if getattr(px, k) is not None
            }
        if self.clear:
            out["clear"] = True
        return out


# --------------------------------------------------------------------------- format


class _LittleEndianHex(Adapter):  # type: ignore[misc]
    """8 wire bytes <-> the 16-hex-char string whose byte order they reverse."""

    def _decode(self, obj: bytes, context: Any, path: Any) -> str:
        return bytes(obj)[::-1].hex()

    def _encode(self, obj: str, context: Any, path: Any) -> bytes:
        return bytes.fromhex(obj)[::-1]


class _IPv4(Adapter):  # type: ignore[misc]
    """4 big-endian bytes <-> dotted quad."""

    def _decode(self, obj: bytes, context: Any, path: Any) -> str:
        return str(ipaddress.IPv4Address(bytes(obj)))

    def _encode(self, obj: str, context: Any, path: Any) -> bytes:
        return ipaddress.IPv4Address(obj).packed


_Text = PascalString(Byte, "utf8")

VALUE_FORMATS: dict[int, Any] = {
    TLV_SSID: GreedyBytes,
    TLV_PASSWORD: GreedyBytes,
    TLV_CLEAR: Struct(Terminated),
    TLV_ENROLMENT: Struct(
        "plan_id" / _LittleEndianHex(Bytes(8)),
        "token" / _LittleEndianHex(Bytes(8)),
        Terminated,
    ),
    TLV_STATIC_NETWORK: Struct(
        "ip" / _IPv4(Bytes(4)),
        "netmask" / _IPv4(Bytes(4)),
        "gateway" / _IPv4(Bytes(4)),
        "dns1" / _IPv4(Bytes(4)),
        "dns2" / Optional(_IPv4(Bytes(4))),
        Terminated,
    ),
    TLV_PROXY: Struct(
        "port" / Int16ul,
        "server" / _Text,
        "username" / Optional(_Text),
        "password" / Optional(_Text),
        Terminated,
    ),
}

TLV = Struct(
    "type" / Byte,
    "value" / Prefixed(Byte, Switch(this.type, VALUE_FORMATS, default=GreedyBytes)),
)


def _envelope(body: Any) -> Any:
    """The frame around a body: one declaration for building and for checking."""
    return Struct(
        "preamble" / Const(PREAMBLE),
        "packet" / RawCopy(Prefixed(Byte, body)),
        "crc" / Checksum(Int16ub, crc16, this.packet.data),
        Terminated,
    )


FRAME = _envelope(GreedyRange(TLV))
"""Builds a whole frame from ``{"packet": {"value": [tlv, ...]}}``."""

_CHECKED = _envelope(GreedyBytes)
"""Parses the framing and CRC, leaving the TLVs as bytes for the named-field walk."""


# --------------------------------------------------------------------------- encode


def _tlvs(cfg: BlinkUpConfig) -> list[dict[str, Any]]:
    tlvs: list[dict[str, Any]] = []
    if cfg.clear:
        tlvs.append({"type": TLV_CLEAR, "value": {}})
    if cfg.ssid is not None:
        tlvs.append({"type": TLV_SSID, "value": cfg.ssid})
        if cfg.password is not None:
            tlvs.append({"type": TLV_PASSWORD, "value": cfg.password})
    if cfg.static_network is not None:
        sn = cfg.static_network
        tlvs.append({"type": TLV_STATIC_NETWORK, "value": vars(sn).copy()})
    if cfg.proxy is not None:
        tlvs.append({"type": TLV_PROXY, "value": vars(cfg.proxy).copy()})
    if cfg.plan_id is not None:
        tlvs.append({"type": TLV_ENROLMENT, "value": {"plan_id": cfg.plan_id, "token": cfg.token}})
    return tlvs


def encode_packet(cfg: BlinkUpConfig) -> bytes:
    """Return LEN, TLVs and CRC (the frame without its preamble)."""
    return encode_frame(cfg)[len(PREAMBLE) :]


def encode_frame(cfg: BlinkUpConfig) -> bytes:
    """Return the whole frame, preamble included, as it is flashed."""
    tlvs = _tlvs(cfg)
    if not tlvs:
        raise EmptyPacketError("a BlinkUp must carry at least one field", "packet")
    size = 0
    for tlv in tlvs:
        name = TLV_NAMES[tlv["type"]]
        try:
            size += len(TLV.build(tlv))
        except ConstructError as err:
            raise ValueTooLongError(f"{name} value is over 255 bytes", name) from err
    if size > MAX_PACKET:
        raise ValueTooLongError(f"packet body is {size} bytes, limit {MAX_PACKET}", "packet")
    data: bytes = FRAME.build({"packet": {"value": tlvs}, "crc": None})
    return data


# --------------------------------------------------------------------------- decode


def _value(tlv_type: int, raw: bytes) -> Any:
    name = TLV_NAMES[tlv_type]
    try:
        return VALUE_FORMATS[tlv_type].parse(raw)
    except UnicodeDecodeError as err:
        raise BlinkUpValueError(f"{name} text is not UTF-8", name) from err
    except ConstructError as err:
        raise BadLengthError(f"{name} value has a bad length ({len(raw)} bytes)", name) from err


def decode_frame(data: bytes | bytearray | memoryview) -> BlinkUpConfig:
    """Parse a whole frame (preamble included); raise a :class:`BlinkUpError` if wrong."""
    data = bytes(data)
    if len(data) < len(PREAMBLE):
        raise TruncatedError(f"frame is {len(data)} bytes, shorter than the preamble", "preamble")
    if data[: len(PREAMBLE)] != PREAMBLE:
        raise BadPreambleError(f"frame starts {data[:4].hex()}, not {PREAMBLE.hex()}", "preamble")
    if len(data) < len(PREAMBLE) + 1:
        raise TruncatedError("frame ends before LEN", "LEN")
    length = data[len(PREAMBLE)]
    if length == 0:
        raise EmptyPacketError("LEN is 0: the packet carries no field", "LEN")
    total = len(PREAMBLE) + 1 + length + 2
    if len(data) < total - 2:
        raise TruncatedError(
            f"LEN says {length} bytes of TLVs, only {len(data) - 5} follow", "packet"
        )
    if len(data) < total:
        raise TruncatedError("frame ends inside the CRC", "crc")
    if len(data) > total:
        raise BadLengthError(
            f"frame is {len(data)} bytes, LEN {length} makes it {total}", "LEN"
        )
    try:
        checked = _CHECKED.parse(data)
    except ChecksumError as err:
        received = int.from_bytes(data[-2:], "big")
        expected = crc16(data[len(PREAMBLE) : -2])
        raise BadCRCError(
            f"CRC is {received:#06x}, contents give {expected:#06x}", expected, received
        ) from err
    except ConstructError as err:  # pragma: no cover - framing was checked above
        raise BlinkUpError(f"malformed frame: {err}") from err
    return _decode_body(bytes(checked.packet.value))


def _decode_body(body: bytes) -> BlinkUpConfig:
    values: dict[int, Any] = {}
    pos = 0
    while pos < len(body):
        if len(body) - pos < 2:
            raise BadLengthError(f"TLV header at byte {pos} runs past LEN", "LEN")
        tlv_type, tlv_len = body[pos], body[pos + 1]
        name = TLV_NAMES.get(tlv_type)
        if name is None:
            raise UnknownTLVError(f"unknown TLV type {tlv_type} at byte {pos}", tlv_type)
        if pos + 2 + tlv_len > len(body):
            raise BadLengthError(f"{name} TLV length {tlv_len} runs past LEN", name)
        if tlv_type in values:
            raise DuplicateTLVError(f"{name} TLV appears twice", name)
        values[tlv_type] = _value(tlv_type, body[pos + 2 : pos + 2 + tlv_len])
        pos += 2 + tlv_len

    def text(tlv_type: int) -> bytes | None:
        return bytes(values[tlv_type]) if tlv_type in values else None

    static = values.get(TLV_STATIC_NETWORK)
    proxy = values.get(TLV_PROXY)
    enrol = values.get(TLV_ENROLMENT)
    try:
        return BlinkUpConfig(
            ssid=text(TLV_SSID),
            password=text(TLV_PASSWORD),
            plan_id=enrol.plan_id if enrol is not None else None,
            token=enrol.token if enrol is not None else None,
            static_network=(
                StaticNetwork(static.ip, static.netmask, static.gateway, static.dns1, static.dns2)
                if static is not None
                else None
            ),
            proxy=(
                ProxyConfig(proxy.server, proxy.port, proxy.username, proxy.password)
                if proxy is not None
                else None
            ),
            clear=TLV_CLEAR in values,
        )
    except BlinkUpError:
        raise
    except ValueError as err:  # pragma: no cover - every field was validated above
        raise BlinkUpValueError(str(err)) from err
