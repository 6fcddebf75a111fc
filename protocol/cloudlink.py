"""The cloud link: every message an imp and the impCloud exchange over MQTT.

No I/O and no clock here: ``encode(msg) -> (topic, payload)`` and
``decode(topic, payload) -> msg`` are pure functions, one frozen dataclass per
message kind, each validated on receipt (types, ranges, hex ids, sizes) and
rejected with a typed ``CloudLinkError``.

Topics (``{id}`` is the 16-hex-digit device ID; ``1`` is the link version)::

    imp/1/d/{id}/up/{kind}      device -> cloud   (cloud subscribes imp/1/d/+/up/#)
    imp/1/d/{id}/down/{kind}    cloud -> device   (device subscribes imp/1/d/{id}/down/#)

Payloads are compact UTF-8 JSON objects carrying ``"v": 1`` and the message's
fields (the device ID lives in the topic only). The one exception is ``chunk``,
whose payload is a JSON header line, a ``\\n``, then the raw bytes of the block::

    {"v":1,"sha":"<64 hex>","index":3,"total":64,"block_sha":"<64 hex>"}\\n<raw bytes>

Every ``down`` message but ``chunk`` is sealed for its device and session (one
more line with an HMAC, protocol/linksec.py); ``decode`` takes the unsealed payload.

Requests that expect an answer carry ``req`` (a device-chosen integer); the
answer echoes it, and a request the cloud cannot honour is answered with
``error`` carrying the same ``req``. Everything is sent with QoS 1.

Device -> cloud: hello, state, log, factory_token_request, chunk_request,
bless_request, bye, agent_message.  Cloud -> device: welcome, error, assignment,
configparams, code_offer, os_offer, chunk, factory_token, bless_answer, restart,
shutdown, device_message.
See docs/cloudlink.md for the sequence of one DUT's whole life.
"""

from __future__ import annotations

import hashlib
import json
import re
import types
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, field, fields
from enum import Enum, IntEnum, StrEnum
from typing import Any, ClassVar, Final, Union, get_args, get_origin, get_type_hints

from impfactory.errors import ImpFactoryError
from impfactory.protocol.constraints import NO_LIMITS, Limits, limited, limits_of

VERSION: Final = 1
PREFIX: Final = f"imp/{VERSION}/d"
CLOUD_FILTER: Final = f"{PREFIX}/+/up/#"
QOS: Final = 1

MAX_PAYLOAD: Final = 64 * 1024
"""Largest control payload accepted (a chunk may add its data on top, up to MAX_CHUNK)."""
MAX_CHUNK: Final = 64 * 1024
DEFAULT_CHUNK_SIZE: Final = 16 * 1024
MAX_BLOCKS_PER_REQUEST: Final = 64
MAX_LOG_LENGTH: Final = 4096

# Field limits in the shared vocabulary (protocol/constraints.py), as JSON Schema writes them.
HEX16: Final = "^[0-9a-f]{16}$"
HEX12: Final = "^[0-9a-f]{12}$"
HEX32: Final = "^[0-9a-f]{32}$"
SHA256: Final = "^[0-9a-f]{64}$"
NAME: Final = "^[A-Za-z0-9_.:-]{1,64}$"
REQ_MAX: Final = 2**31 - 1
DEVICE_ID: Final = Limits(pattern=HEX16)
"""A device ID: 16 lower-case hex digits (also its broker account's name)."""


class CloudLinkError(ImpFactoryError, ValueError):
    """A cloud-link message that cannot be accepted: wrong topic, shape or value."""


class TopicError(CloudLinkError):
    """The topic is not a cloud-link topic, or names an unknown kind or direction."""


class VersionError(CloudLinkError):
    """The message speaks another version of the link."""


class SchemaError(CloudLinkError):
    """The payload is not valid JSON, misses a field, or a field has a bad value."""


class PayloadTooLargeError(CloudLinkError):
    """The payload is larger than the link allows (never parsed)."""


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"


class ShutdownReason(IntEnum):
    """``server.onshutdown`` reasons, numbered as the imp API numbers them."""

    NEWSQUIRREL = 1
    NEWFIRMWARE = 2
    OTHER = 3


class ImageKind(StrEnum):
    IMPOS = "impos"
    DEVICE = "device"
    AGENT = "agent"


class ErrorCode(StrEnum):
    """Why the cloud refused a request (``error.code``)."""

    BAD_REQUEST = "bad_request"
    NOT_FACTORY = "not_factory"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_USED = "token_used"
    ALREADY_BLESSED = "already_blessed"
    NOT_DUT = "not_dut"
    UNKNOWN_IMAGE = "unknown_image"
    NOT_FOUND = "not_found"
    INTERNAL = "internal"


class LogType(StrEnum):
    SERVER_LOG = "server.log"
    SERVER_ERROR = "server.error"
    STATUS = "status"


FACTORY_REFUSED_LOG: Final = "Factory BlinkUp request failed. This is not a factory imp."


@dataclass(frozen=True)
class ImageRef:
    """An image the device can fetch block by block: its SHA-256, size and block size.

    ``blocks_sha`` (``block_list_sha``: the SHA-256 of every block's SHA-256, in
    order) lets a device that checked each block as it came check the whole image
    from those digests, without hashing all its bytes a second time; an offer
    without it is checked by ``sha`` over the whole image. Both sit in a sealed
    offer, so either one proves the image is the cloud's.
    """

    kind: ImageKind
    sha: str = limited(pattern=SHA256)
    size: int = limited(ge=0, le=64 * 1024 * 1024)
    chunk_size: int = limited(ge=1, le=MAX_CHUNK)
    blocks_sha: str | None = limited(pattern=SHA256, default=None)

    @property
    def total(self) -> int:
        """Number of blocks (an empty image has none)."""
        return -(-self.size // self.chunk_size)


def block_list_sha(digests: Iterable[bytes]) -> str:
    """``ImageRef.blocks_sha``: the SHA-256 (hex) of the blocks' raw 32-byte SHA-256
    digests, concatenated in block order (an empty image: the SHA-256 of nothing)."""
    return hashlib.sha256(b"".join(digests)).hexdigest()


@dataclass(frozen=True)
class Message:
    """Base of every cloud-link message; ``device_id`` is carried by the topic."""

    KIND: ClassVar[str] = ""
    DIRECTION: ClassVar[Direction] = Direction.UP

    device_id: str = limited(pattern=HEX16)


# ---------------------------------------------------------------- device -> cloud


@dataclass(frozen=True)
class Hello(Message):
    """First message after every (re)connect; with ``plan_id``/``token`` it is an enrolment.

    ``token`` is the BlinkUp enrolment token (factory token for a DUT, production
    token at an end user's BlinkUp, developer token for a developer's own device).
    ``deployment`` is the deployment ID the device runs (None: no code yet).
    ``session`` is a fresh nonce per connection: the cloud seals every message of
    this session with it (protocol/linksec.py), so nothing from an earlier one is
    accepted.
    """

    KIND: ClassVar[str] = "hello"
    req: int = limited(ge=0, le=REQ_MAX, default=0)
    mac: str = limited(pattern=HEX12, default="000000000000")
    impos_version: str = limited(pattern=NAME, default="0")
    imp_type: str = limited(pattern=NAME, default="imp005")
    deployment: str | None = limited(max_length=64, default=None)
    plan_id: str | None = limited(pattern=HEX16, default=None)
    token: str | None = limited(pattern=HEX16, default=None)
    session: str | None = limited(pattern=HEX32, default=None)


@dataclass(frozen=True)
class StateReport(Message):
    """What the device is doing: connection state, LED state, impOS, deployment running."""

    KIND: ClassVar[str] = "state"
    connection: str = limited(pattern=NAME, default="SERVER_CONNECTED")
    led: str = limited(pattern=NAME, default="off")
    impos_version: str = limited(pattern=NAME, default="0")
    deployment: str | None = limited(max_length=64, default=None)


@dataclass(frozen=True)
class Log(Message):
    """``server.log`` / ``server.error`` output, or a status line from impOS."""

    KIND: ClassVar[str] = "log"
    msg: str = limited(max_length=MAX_LOG_LENGTH, default="")
    type: LogType = LogType.SERVER_LOG


@dataclass(frozen=True)
class FactoryTokenRequest(Message):
    """``server.factoryblinkup`` asking for a factory enrolment token (fixtures only)."""

    KIND: ClassVar[str] = "factory_token_request"
    req: int = limited(ge=0, le=REQ_MAX, default=0)


@dataclass(frozen=True)
class ChunkRequest(Message):
    """Ask for the listed blocks of an image (the device asks only for what it lacks)."""

    KIND: ClassVar[str] = "chunk_request"
    sha: str = limited(pattern=SHA256, default="0" * 64)
    blocks: tuple[int, ...] = limited(
        min_length=1, max_length=MAX_BLOCKS_PER_REQUEST, items=Limits(ge=0, le=REQ_MAX),
        default=(0,))


@dataclass(frozen=True)
class BlessRequest(Message):
    """``server.bless(passed, cb)``; the answer is ``bless_answer`` with the same ``req``."""

    KIND: ClassVar[str] = "bless_request"
    req: int = limited(ge=0, le=REQ_MAX, default=0)
    passed: bool = True
    attempt: str | None = limited(pattern=HEX16, default=None)
    """The device's name for this ``server.bless`` call, the same on every retry (after
    a lost link, a cloud that did not answer): the cloud answers a retry of the
    attempt that blessed the device "blessed" again, and any other "already blessed"."""


@dataclass(frozen=True)
class Bye(Message):
    """The device goes offline (sent on clean disconnect; also its MQTT last will)."""

    KIND: ClassVar[str] = "bye"
    reason: str = limited(max_length=64, default="disconnect")


@dataclass(frozen=True)
class AgentMessage(Message):
    """``agent.send(name, value)`` on the device: a message for the device's agent.

    ``value`` is any JSON value (what impOS would serialise from a Squirrel table,
    array, string or number); the whole payload is bounded by ``MAX_PAYLOAD``.
    """

    KIND: ClassVar[str] = "agent_message"
    name: str = limited(pattern=NAME, default="message")
    value: object = None


# ---------------------------------------------------------------- cloud -> device


@dataclass(frozen=True)
class Welcome(Message):
    """Answer to ``hello``: who the device is in the cloud now."""

    KIND: ClassVar[str] = "welcome"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    req: int = limited(ge=0, le=REQ_MAX, default=0)
    plan_id: str | None = limited(pattern=HEX16, default=None)
    agent_id: str | None = limited(max_length=64, default=None)
    agent_url: str | None = limited(max_length=256, default=None)
    blessed: bool = False


@dataclass(frozen=True)
class ErrorReply(Message):
    """A request (``req``) was refused; ``code`` says why in one word."""

    KIND: ClassVar[str] = "error"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    req: int | None = limited(ge=0, le=REQ_MAX, default=None)
    code: ErrorCode = ErrorCode.BAD_REQUEST
    message: str = limited(max_length=1024, default="")
    kind: str | None = limited(max_length=64, default=None)


@dataclass(frozen=True)
class Assignment(Message):
    """The device's device group (None: unassigned) and whether it is blessed."""

    KIND: ClassVar[str] = "assignment"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    group_id: str | None = limited(max_length=64, default=None)
    group_type: str | None = limited(max_length=64, default=None)
    product_id: str | None = limited(max_length=64, default=None)
    blessed: bool = False


@dataclass(frozen=True)
class ConfigParams(Message):
    """``imp.configparams`` (device side) and the agent's view of them."""

    KIND: ClassVar[str] = "configparams"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    params: dict[str, str | bool] = limited(max_length=64, default_factory=dict)


@dataclass(frozen=True)
class CodeOffer(Message):
    """Run this deployment: fetch ``device`` (and ``agent``) block by block, then run it.

    Sent after ``hello`` when the device should run other code than it reports,
    and at once when an online device is moved to another group. The device stops
    whatever code it runs, fetches the images, checks their SHA-256 and runs them,
    then reports ``state`` with ``deployment`` set. (Polite deployment is a
    ``shutdown`` notice, not an offer: the device restarts when ready and gets
    this offer after its next ``hello``.)
    """

    KIND: ClassVar[str] = "code_offer"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    deployment: str = limited(max_length=64, default="")
    sha: str = limited(pattern=SHA256, default="0" * 64)
    device: ImageRef = field(default_factory=lambda: ImageRef(ImageKind.DEVICE, "0" * 64, 0, 1))
    agent: ImageRef | None = None


@dataclass(frozen=True)
class OsOffer(Message):
    """Install this impOS first: fetch it, install, restart, hello again."""

    KIND: ClassVar[str] = "os_offer"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    version: str = limited(pattern=NAME, default="0")
    image: ImageRef = field(default_factory=lambda: ImageRef(ImageKind.IMPOS, "0" * 64, 0, 1))


@dataclass(frozen=True)
class Chunk(Message):
    """One block of an image; on the wire a JSON header line then the raw bytes.

    ``block_sha`` is the SHA-256 of this block's bytes as the cloud holds them: a
    block damaged or cut short on the way fails it and is asked for again.
    ``decode`` gives ``data`` as a read-only view into the received payload (a block
    is kept until its image is whole: no copy of every block on the way in).
    """

    KIND: ClassVar[str] = "chunk"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    sha: str = limited(pattern=SHA256, default="0" * 64)
    index: int = limited(ge=0, le=REQ_MAX, default=0)
    total: int = limited(ge=1, le=2**31, default=1)
    block_sha: str = limited(pattern=SHA256, default="0" * 64)
    data: bytes | memoryview = b""

    @property
    def intact(self) -> bool:
        """True when ``data`` matches ``block_sha``."""
        return hashlib.sha256(self.data).hexdigest() == self.block_sha


@dataclass(frozen=True)
class FactoryToken(Message):
    """The answer to ``factory_token_request``: what the fixture flashes into a DUT."""

    KIND: ClassVar[str] = "factory_token"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    req: int = limited(ge=0, le=REQ_MAX, default=0)
    plan_id: str = limited(pattern=HEX16, default="0" * 16)
    token: str = limited(pattern=HEX16, default="0" * 16)
    expires_in: float = limited(ge=0, le=7 * 86400, default=600.0)


@dataclass(frozen=True)
class BlessAnswer(Message):
    """The server's verdict for ``bless_request``: the callback's ``blessed`` argument."""

    KIND: ClassVar[str] = "bless_answer"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    req: int = limited(ge=0, le=REQ_MAX, default=0)
    blessed: bool = False
    reason: str = limited(max_length=256, default="")


@dataclass(frozen=True)
class Restart(Message):
    """Restart now (forced restart, new group, or an older deployment on a conditional one)."""

    KIND: ClassVar[str] = "restart"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    reason: str = limited(max_length=64, default="restart")


@dataclass(frozen=True)
class ShutdownNotice(Message):
    """Polite deployment: call ``server.onshutdown(reason)``; the device restarts when ready."""

    KIND: ClassVar[str] = "shutdown"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    reason: ShutdownReason = ShutdownReason.NEWSQUIRREL


@dataclass(frozen=True)
class DeviceMessage(Message):
    """The agent's ``device.send(name, value)``: for the device's ``agent.on(name, cb)``."""

    KIND: ClassVar[str] = "device_message"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    name: str = limited(pattern=NAME, default="message")
    value: object = None


UP_KINDS: Final[dict[str, type[Message]]] = {
    c.KIND: c
    for c in (Hello, StateReport, Log, FactoryTokenRequest, ChunkRequest, BlessRequest, Bye,
              AgentMessage)
}
DOWN_KINDS: Final[dict[str, type[Message]]] = {
    c.KIND: c
    for c in (
        Welcome,
        ErrorReply,
        Assignment,
        ConfigParams,
        CodeOffer,
        OsOffer,
        Chunk,
        FactoryToken,
        BlessAnswer,
        Restart,
        ShutdownNotice,
        DeviceMessage,
    )
}
_KINDS: Final = {Direction.UP: UP_KINDS, Direction.DOWN: DOWN_KINDS}


# ---------------------------------------------------------------- topics


def topic(device_id: str, direction: Direction, kind: str) -> str:
    """The topic of one message kind for one device."""
    return f"{PREFIX}/{device_id}/{direction.value}/{kind}"


def device_filter(device_id: str) -> str:
    """The subscription a device makes to hear everything the cloud sends it."""
    return f"{PREFIX}/{device_id}/down/#"


def parse_topic(topic_name: str) -> tuple[str, Direction, type[Message]]:
    """Split a topic into (device ID, direction, message class) or raise ``TopicError``."""
    parts = topic_name.split("/")
    if len(parts) != 6 or parts[0] != "imp" or parts[2] != "d":
        raise TopicError(f"not a cloud-link topic: {topic_name[:120]!r}")
    if parts[1] != str(VERSION):
        raise VersionError(f"cloud-link version {parts[1][:8]!r} on topic, expected {VERSION}")
    device_id, direction, kind = parts[3], parts[4], parts[5]
    if not DEVICE_ID.matches(device_id):
        raise TopicError(f"bad device ID in topic: {device_id[:40]!r}")
    try:
        d = Direction(direction)
    except ValueError:
        raise TopicError(f"bad direction in topic: {direction[:20]!r}") from None
    cls = _KINDS[d].get(kind)
    if cls is None:
        raise TopicError(f"unknown {d.value} message kind: {kind[:40]!r}")
    return device_id, d, cls


# ---------------------------------------------------------------- encode / decode


def encode(msg: Message) -> tuple[str, bytes]:
    """Serialise a message to its (topic, payload)."""
    obj: dict[str, Any] = {"v": VERSION}
    for f in fields(msg):
        if f.name in ("device_id", "data"):
            continue
        obj[f.name] = _to_json(getattr(msg, f.name))
    try:
        body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as err:  # a value (agent messages) that is not JSON
        raise SchemaError(f"{msg.KIND}: not representable as JSON: {err}") from err
    if isinstance(msg, Chunk):
        body = body + b"\n" + msg.data
    return topic(msg.device_id, msg.DIRECTION, msg.KIND), body


def decode(topic_name: str, payload: bytes) -> Message:
    """Parse and validate a received message; any fault raises a ``CloudLinkError``."""
    device_id, _direction, cls = parse_topic(topic_name)
    if cls is Chunk:
        return decode_chunk(device_id, payload)
    return _decode(cls, device_id, payload)


_CHUNK_HEAD: Final = re.compile(
    rb'\{"v":1,"sha":"([0-9a-f]{64})","index":(0|[1-9][0-9]{0,9}),'
    rb'"total":([1-9][0-9]{0,9}),"block_sha":"([0-9a-f]{64})"\}\Z')
"""A chunk header exactly as ``encode`` writes it (compact JSON, fields in order)."""


def decode_chunk(device_id: str, payload: bytes) -> Chunk:
    """``decode`` for a ``chunk`` on device ``device_id``'s topic, by the same rules.

    The one message that comes by the thousand (every block of every image), so a
    header written as ``encode`` writes it is read by one regular expression; any
    other header goes through the general validation, whose answer (value or
    error) is the same (tests/test_cloudlink.py proves the two agree)."""
    if not DEVICE_ID.matches(device_id):
        raise TopicError(f"bad device ID in topic: {device_id[:40]!r}")
    end = payload.find(b"\n")
    if end < 0:
        raise SchemaError("chunk payload lacks its header line")
    head, data = payload[:end], memoryview(payload)[end + 1:]
    if len(data) > MAX_CHUNK:
        raise PayloadTooLargeError(f"chunk of {len(data)} bytes exceeds {MAX_CHUNK}")
    m = _CHUNK_HEAD.match(head)
    if m is not None:
        index, total = int(m[2]), int(m[3])
        if index < total <= 2**31:
            return Chunk(device_id=device_id, sha=m[1].decode(), index=index, total=total,
                         block_sha=m[4].decode(), data=data)
    return _decode(Chunk, device_id, head, data)  # type: ignore[return-value]


def _decode(cls: type[Message], device_id: str, payload: bytes,
            data: bytes | memoryview = b"") -> Message:
    if len(payload) > MAX_PAYLOAD:
        raise PayloadTooLargeError(f"{cls.KIND} payload of {len(payload)} bytes exceeds limit")
    try:
        obj = json.loads(payload, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SchemaError(f"{cls.KIND}: payload is not JSON: {err}") from err
    except RecursionError:  # "[[[[...": well-formed, small, and too deep for the parser
        raise SchemaError(f"{cls.KIND}: payload nests too deeply") from None
    if not isinstance(obj, dict):
        raise SchemaError(f"{cls.KIND}: payload is not a JSON object")
    version = obj.pop("v", None)
    if version != VERSION:
        raise VersionError(f"{cls.KIND}: link version {version!r}, expected {VERSION}")
    values = _fields_from_json(cls, obj)
    values["device_id"] = device_id
    if cls is Chunk:
        values["data"] = data
    msg = cls(**values)
    if isinstance(msg, Chunk) and msg.index >= msg.total:  # (a field left out has its default)
        raise SchemaError(f"chunk index {msg.index} >= total {msg.total}")
    return msg


def _no_constant(name: str) -> Any:
    raise SchemaError(f"{name} is not JSON")


def describe_error(err: CloudLinkError) -> str:
    """One line for a log, never longer than a log line may be."""
    return f"{type(err).__name__}: {err}"[:MAX_LOG_LENGTH]


# ---------------------------------------------------------------- validation


def _to_json(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, ImageRef):
        return {f.name: _to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return list(value)
    return value


_Plan = tuple[frozenset[str], tuple[tuple[str, Any, Limits, bool], ...]]
_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    """The JSON fields of ``cls`` and, per field, (name, type, limits, required): worked
    out once per class, since decoding is on the line's hot path."""
    plan = _PLANS.get(cls)
    if plan is None:
        hints = get_type_hints(cls)
        entries = tuple(
            (f.name, hints[f.name], limits_of(f.metadata),
             f.default is MISSING and f.default_factory is MISSING)
            for f in fields(cls) if f.name not in ("device_id", "data"))
        plan = _PLANS[cls] = (frozenset(e[0] for e in entries), entries)
    return plan


def _fields_from_json(cls: type, obj: dict[str, Any]) -> dict[str, Any]:
    known, entries = _plan(cls)
    if not known.issuperset(obj):
        raise SchemaError(f"{cls.__name__}: unknown field(s) {sorted(set(obj) - known)[:5]}")
    values: dict[str, Any] = {}
    for name, tp, lim, required in entries:
        if name not in obj:
            if required:
                raise SchemaError(f"{cls.__name__}: missing field {name!r}")
            continue
        values[name] = _check(f"{cls.__name__}.{name}", tp, obj[name], lim)
    return values


def _check(where: str, tp: Any, value: Any, lim: Limits) -> Any:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _check(where, args[0], value, lim)
    if origin is tuple:
        if not isinstance(value, list):
            raise SchemaError(f"{where}: expected a list")
        if not lim.length_ok(len(value)):
            raise SchemaError(f"{where}: {len(value)} items is out of range")
        item = lim.items or NO_LIMITS
        return tuple(_check(where, get_args(tp)[0], v, item) for v in value)
    if origin is dict:
        if not isinstance(value, dict) or not lim.length_ok(len(value)):
            raise SchemaError(f"{where}: expected an object of at most {lim.max_length}")
        value_type = get_args(tp)[1]
        allowed = (get_args(value_type) if get_origin(value_type) in (Union, types.UnionType)
                   else (value_type,))
        for k, v in value.items():
            if (not isinstance(v, allowed) or len(k) > 64
                    or (isinstance(v, str) and len(v) > 1024)):
                raise SchemaError(f"{where}: entries must be short strings")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            raise SchemaError(f"{where}: {value!r} is not one of the allowed values") from None
    if tp is object:
        return value  # any JSON value: json.loads made it, and the payload's size was checked
    if tp is ImageRef:
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected an image object")
        return ImageRef(**_fields_from_json(ImageRef, value))
    if tp is bool:
        if not isinstance(value, bool):
            raise SchemaError(f"{where}: expected true or false")
        return value
    if tp is int or tp is float:
        ok = isinstance(value, int) if tp is int else isinstance(value, (int, float))
        if not ok or isinstance(value, bool):
            raise SchemaError(f"{where}: expected a number")
        if not lim.in_range(value):
            raise SchemaError(f"{where}: {value} is out of range")
        return tp(value)
    if tp is str:
        if not isinstance(value, str):
            raise SchemaError(f"{where}: expected a string")
        if not lim.matches(value):
            raise SchemaError(f"{where}: {value[:40]!r} is malformed")
        if len(value) > MAX_PAYLOAD or not lim.length_ok(len(value)):
            raise SchemaError(f"{where}: string too long")
        return value
    raise SchemaError(f"{where}: unsupported field type {tp!r}")  # pragma: no cover


def validate(msg: Message) -> Message:
    """Check a message built in code by the same rules ``decode`` applies; return it."""
    return decode(*encode(msg))
