"""The line's work protocol: a coordinator and its line workers, over the shared broker.

A line bigger than one process runs as workers (``impfactory line worker``) that
may sit on any machine reaching the broker; the coordinator (``line run``) owns
the cloud side and hands out shards. They talk only through these messages, so a
worker started by hand on another machine and one ``line run --workers K``
launched locally take exactly the same path. No I/O and no clock here:
``encode(run, worker, msg) -> (topic, payload)`` and ``decode(topic, payload)`` are
pure, every message is a frozen dataclass validated on receipt and refused with a
typed ``LineWorkError``.

Topics (``{run}`` names one line run, ``{worker}`` is a worker's 16-hex-digit ID;
``2`` is the protocol version)::

    impfactory/line/2/{run}/{worker}/up/{kind}     worker -> coordinator
    impfactory/line/2/{run}/{worker}/down/{kind}   coordinator -> worker

The coordinator subscribes ``impfactory/line/2/{run}/+/up/#``, a worker only its
own ``down`` topics. Payloads are compact UTF-8 JSON objects with ``"v": 2`` and
the message's fields; a field that is a list of records (``StageEvent``, ``Ask``,
``AgentActivity``) carries each as a JSON object of that record's fields. A
conversation::

    worker                               coordinator
      join      (repeated until answered) ->
                                          <- assign   shard w of W, config, cloud info
                                                      [, only these DUTs]
                                             (or dismiss: the run has its workers)
      adopt     device_id  (per fixture)  ->
                                          <- adopted  device_id
      progress  stages, done, asks        ->   (any number: a batch each)
                                          <- answers  activity  (for the asks)
      finished  lost_presses  | failed  error

``progress`` and ``answers`` are batches: a worker gathers what happened (stage
events, finished DUT records, questions about what a DUT's agent did) for up to
``FLUSH_S`` seconds or ``FLUSH_ITEMS`` items and sends them as one message, and the
coordinator answers the questions the same way (fixture/linebus.py ``Outbox``).
Each MQTT message costs every process on its way (the worker's client, the
broker, the coordinator's client on the cloud's event loop) about the same
whatever it carries, and a DUT makes eight such events, so one message per event
cost more CPU than the DUT's own traffic with the cloud. ``adopt`` stays a message
of its own: there is one per fixture, at the start, and each is waited for.

Everything is sent with QoS 1 (a batch may arrive twice: the coordinator keeps one
record per DUT index, and a worker takes the first answer to each question);
``join`` and ``assign`` are idempotent, so a repeated join (the coordinator was not
listening yet) gets the same shard again. The line configuration, cloud info and
DUT records travel as JSON objects whose own shape the line runner checks
(fixture/shard.py): this layer only guarantees they are objects of bounded size.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields, is_dataclass
from enum import StrEnum
from typing import Any, ClassVar, Final, get_type_hints

from impfactory.errors import ImpFactoryError
from impfactory.protocol.constraints import NO_LIMITS, Limits, limited, limits_of

VERSION: Final = 2
PREFIX: Final = f"impfactory/line/{VERSION}"
QOS: Final = 1
MAX_PAYLOAD: Final = 256 * 1024
"""A DUT record with its LED timeline is the largest item, a few kB in practice; a batch
that would be larger is sent as several (``MessageTooLarge``)."""
MAX_ITEMS: Final = 4096
"""Items (stage events, records, questions, answers) one batch may carry."""

_RUN: Final = Limits(pattern="^[a-z0-9][a-z0-9-]{0,31}$")
_WORKER: Final = Limits(pattern="^[0-9a-f]{16}$")
DEVICE: Final = "^[0-9a-f]{16}$"


class LineWorkError(ImpFactoryError, ValueError):
    """A line-work topic or message is malformed."""


class MessageTooLarge(LineWorkError):
    """A message would exceed ``MAX_PAYLOAD`` bytes (a batch: send it in parts)."""


class Direction(StrEnum):
    UP = "up"  # worker -> coordinator
    DOWN = "down"  # coordinator -> worker



@dataclass(frozen=True)
class Message:
    """Base of every line-work message (run and worker travel in the topic)."""

    KIND: ClassVar[str] = ""
    DIRECTION: ClassVar[Direction] = Direction.UP


# ---------------------------------------------------------------- records inside batches


@dataclass(frozen=True)
class StageEvent:
    """DUT ``index`` entered ``stage``."""

    index: int = limited(ge=0, le=1 << 20)
    stage: str = limited(max_length=64)


@dataclass(frozen=True)
class Ask:
    """What did this device's agent do, once it has heard ``messages`` messages?"""

    device_id: str = limited(pattern=DEVICE)
    messages: int = limited(ge=0, le=1 << 20, default=0)


@dataclass(frozen=True)
class AgentActivity:
    """The answer to an ``Ask``: the agent's activity entries."""

    device_id: str = limited(pattern=DEVICE)
    entries: list[Any] = limited(max_length=10_000)


# ---------------------------------------------------------------- worker -> coordinator


@dataclass(frozen=True)
class Join(Message):
    """A worker ready to take a shard (imports done: start-up is not line time)."""

    KIND: ClassVar[str] = "join"
    host: str = limited(max_length=255, default="")


@dataclass(frozen=True)
class Adopt(Message):
    """Put this enrolled fixture into the factory fixture group."""

    KIND: ClassVar[str] = "adopt"
    device_id: str = limited(pattern=DEVICE)


@dataclass(frozen=True)
class Progress(Message):
    """A batch, in the order things happened within each list: stage events, finished
    DUTs (each ``DutRecord.to_dict()``) and questions about agents (answered in
    ``answers``). The coordinator takes the stages first, then the records, then the
    questions: a DUT's stages precede its record."""

    KIND: ClassVar[str] = "progress"
    stages: list[StageEvent] = limited(max_length=MAX_ITEMS, default_factory=list)
    done: list[dict[str, Any]] = limited(max_length=MAX_ITEMS, default_factory=list)
    asks: list[Ask] = limited(max_length=MAX_ITEMS, default_factory=list)


@dataclass(frozen=True)
class Finished(Message):
    """The worker's shard is through (``lost_presses``: fixture presses never seen)."""

    KIND: ClassVar[str] = "finished"
    lost_presses: int = limited(ge=0, le=1 << 30, default=0)


@dataclass(frozen=True)
class Failed(Message):
    """The worker could not finish its shard."""

    KIND: ClassVar[str] = "failed"
    error: str = limited(max_length=4096)


# ---------------------------------------------------------------- coordinator -> worker


@dataclass(frozen=True)
class Assign(Message):
    """Run shard ``shard`` of ``shards`` (fixtures ``k`` with ``k % shards == shard``)."""

    KIND: ClassVar[str] = "assign"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    shard: int = limited(ge=0, le=255)
    shards: int = limited(ge=1, le=256)
    config: dict[str, Any] = limited()
    cloud: dict[str, Any] = limited()
    duts: list[Any] = limited(default_factory=list, max_length=65536)
    """Only these DUT indices of the shard (empty: all of them): what a worker cut off
    for a stuck callback left to do, given to the worker started in its place."""


@dataclass(frozen=True)
class Dismiss(Message):
    """No shard for this worker (the run has all it needs, or has ended)."""

    KIND: ClassVar[str] = "dismiss"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    reason: str = limited(max_length=1024)


@dataclass(frozen=True)
class Adopted(Message):
    KIND: ClassVar[str] = "adopted"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    device_id: str = limited(pattern=DEVICE)


@dataclass(frozen=True)
class Answers(Message):
    """A batch of answers to ``progress`` questions, one ``AgentActivity`` per ``Ask``."""

    KIND: ClassVar[str] = "answers"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    activity: list[AgentActivity] = limited(max_length=MAX_ITEMS, default_factory=list)


UP_KINDS: Final[dict[str, type[Message]]] = {
    c.KIND: c for c in (Join, Adopt, Progress, Finished, Failed)}
DOWN_KINDS: Final[dict[str, type[Message]]] = {
    c.KIND: c for c in (Assign, Dismiss, Adopted, Answers)}
_KINDS: Final = {Direction.UP: UP_KINDS, Direction.DOWN: DOWN_KINDS}


# ---------------------------------------------------------------- topics


def check_run(run: str) -> str:
    """``run`` if it can name a run (1-32 of a-z, 0-9 and -), else ``LineWorkError``."""
    if not isinstance(run, str) or not _RUN.matches(run):
        raise LineWorkError(f"bad run name {str(run)[:40]!r}: 1-32 of a-z, 0-9, '-'")
    return run


def check_worker(worker: str) -> str:
    if not isinstance(worker, str) or not _WORKER.matches(worker):
        raise LineWorkError(f"bad worker ID {str(worker)[:40]!r}: 16 hex digits")
    return worker


def coordinator_filter(run: str) -> str:
    """What the coordinator of ``run`` subscribes to: every worker's ``up`` messages."""
    return f"{PREFIX}/{check_run(run)}/+/up/#"


def worker_filter(run: str, worker: str) -> str:
    """What one worker subscribes to: its own ``down`` messages."""
    return f"{PREFIX}/{check_run(run)}/{check_worker(worker)}/down/#"


def topic(run: str, worker: str, msg: Message) -> str:
    return f"{PREFIX}/{check_run(run)}/{check_worker(worker)}/{msg.DIRECTION.value}/{msg.KIND}"


def parse_topic(name: str) -> tuple[str, str, type[Message]]:
    """(run, worker, message class) of a line-work topic, or ``LineWorkError``."""
    parts = name.split("/")
    if len(parts) != 7 or parts[0] != "impfactory" or parts[1] != "line":
        raise LineWorkError(f"not a line-work topic: {name[:120]!r}")
    if parts[2] != str(VERSION):
        raise LineWorkError(f"line-work version {parts[2][:8]!r}, expected {VERSION}")
    run, worker = check_run(parts[3]), check_worker(parts[4])
    try:
        direction = Direction(parts[5])
    except ValueError:
        raise LineWorkError(f"bad direction in topic: {parts[5][:20]!r}") from None
    cls = _KINDS[direction].get(parts[6])
    if cls is None:
        raise LineWorkError(f"unknown {direction.value} message kind: {parts[6][:40]!r}")
    return run, worker, cls


# ---------------------------------------------------------------- encode / decode


def encode(run: str, worker: str, msg: Message) -> tuple[str, bytes]:
    """Serialise ``msg`` for ``worker`` of ``run``: (topic, payload); ``MessageTooLarge``
    when it would exceed ``MAX_PAYLOAD``."""
    obj: dict[str, Any] = {"v": VERSION}
    obj.update(_fields_of(msg))
    try:
        payload = json.dumps(obj, separators=(",", ":"), allow_nan=False,
                             default=_record_fields).encode()
    except (TypeError, ValueError) as err:
        raise LineWorkError(f"{msg.KIND}: not representable as JSON: {err}") from err
    if len(payload) > MAX_PAYLOAD:
        raise MessageTooLarge(f"{msg.KIND}: {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return topic(run, worker, msg), payload


def decode(name: str, payload: bytes) -> tuple[str, str, Message]:
    """(run, worker, message) of a received line-work message, or ``LineWorkError``."""
    run, worker, cls = parse_topic(name)
    if len(payload) > MAX_PAYLOAD:
        raise LineWorkError(f"{cls.KIND}: {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:
        obj = json.loads(payload, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LineWorkError(f"{cls.KIND}: payload is not JSON: {err}") from err
    except RecursionError:
        raise LineWorkError(f"{cls.KIND}: payload nests too deeply") from None
    if not isinstance(obj, dict):
        raise LineWorkError(f"{cls.KIND}: payload is not a JSON object")
    if obj.pop("v", None) != VERSION:
        raise LineWorkError(f"{cls.KIND}: not version {VERSION}")
    return run, worker, _build(cls.KIND, cls, obj)


_Field = tuple[str, Any, Limits, bool]
"""A record field as decoding needs it: name, type, limits, whether it may be absent."""
_SHAPES: dict[type, tuple[tuple[_Field, ...], frozenset[str]]] = {}


def _shape(cls: type) -> tuple[tuple[_Field, ...], frozenset[str]]:
    """``cls``'s fields and their names (type hints resolved once per class, not once
    per message)."""
    shape = _SHAPES.get(cls)
    if shape is None:
        hints = get_type_hints(cls)
        shape = _SHAPES[cls] = (tuple(
            (f.name, hints[f.name], limits_of(f.metadata),
             f.default is not MISSING or f.default_factory is not MISSING)
            for f in fields(cls)), frozenset(f.name for f in fields(cls)))
    return shape


def _fields_of(record: Any) -> dict[str, Any]:
    return {f[0]: getattr(record, f[0]) for f in _shape(type(record))[0]}


def _record_fields(value: Any) -> dict[str, Any]:
    """``json.dumps``' hook: a record inside a batch travels as an object of its fields."""
    if isinstance(value, (StageEvent, Ask, AgentActivity)):
        return _fields_of(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _build(where: str, cls: type[Any], obj: dict[str, Any]) -> Any:
    """An instance of the dataclass ``cls`` from the JSON object ``obj``, every field
    checked against its type and limits."""
    shape, names = _shape(cls)
    unknown = obj.keys() - names
    if unknown:
        raise LineWorkError(f"{where}: unknown field(s) {sorted(unknown)[:5]}")
    values: dict[str, Any] = {}
    for name, tp, lim, optional in shape:
        if name not in obj:
            if not optional:
                raise LineWorkError(f"{where}: missing field {name!r}")
            continue
        values[name] = _check(f"{where}.{name}", tp, obj[name], lim)
    return cls(**values)


def _no_constant(name: str) -> Any:
    raise LineWorkError(f"{name} is not JSON")


def _check(where: str, tp: Any, value: Any, lim: Limits) -> Any:
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise LineWorkError(f"{where}: expected an integer")
        if not lim.in_range(value):
            raise LineWorkError(f"{where}: {value} is out of range")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise LineWorkError(f"{where}: expected a string")
        if not lim.matches(value):
            raise LineWorkError(f"{where}: {value[:40]!r} is malformed")
        if len(value) > MAX_PAYLOAD or not lim.length_ok(len(value)):
            raise LineWorkError(f"{where}: string too long")
        return value
    origin = getattr(tp, "__origin__", None)
    if origin is dict:
        if not isinstance(value, dict):
            raise LineWorkError(f"{where}: expected an object")
        return value
    if origin is list:
        if not isinstance(value, list) or not lim.length_ok(len(value)):
            raise LineWorkError(f"{where}: expected a list of at most {lim.max_length}")
        item = tp.__args__[0]
        if item is Any:
            return value
        return [_check(f"{where}[{i}]", item, v, lim.items or NO_LIMITS)
                for i, v in enumerate(value)]
    if isinstance(tp, type) and is_dataclass(tp):
        if not isinstance(value, dict):
            raise LineWorkError(f"{where}: expected an object")
        return _build(where, tp, value)
    raise LineWorkError(f"{where}: unsupported field type {tp!r}")  # pragma: no cover
