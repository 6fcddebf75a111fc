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
``1`` is the protocol version)::

    impfactory/line/1/{run}/{worker}/up/{kind}     worker -> coordinator
    impfactory/line/1/{run}/{worker}/down/{kind}   coordinator -> worker

The coordinator subscribes ``impfactory/line/1/{run}/+/up/#``, a worker only its
own ``down`` topics. Payloads are compact UTF-8 JSON objects with ``"v": 1`` and
the message's fields. A conversation::

    worker                               coordinator
      join      (repeated until answered) ->
                                          <- assign   shard w of W, config, cloud info
                                                      [, only these DUTs]
                                             (or dismiss: the run has its workers)
      adopt     device_id                 ->
                                          <- adopted  device_id
      activity_request device_id, messages ->
                                          <- activity device_id, entries
      stage     index, stage              ->   (progress, any number)
      done      record                    ->   (one per DUT)
      finished  lost_presses  | failed  error

Everything is sent with QoS 1; ``join`` and ``assign`` are idempotent, so a
repeated join (the coordinator was not listening yet) gets the same shard again.
The line configuration, cloud info and DUT records travel as JSON objects whose
own shape the line runner checks (fixture/shard.py): this layer only guarantees
they are objects of bounded size.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar, Final, get_type_hints

from impfactory.errors import ImpFactoryError
from impfactory.protocol.constraints import Limits, limited, limits_of

VERSION: Final = 1
PREFIX: Final = f"impfactory/line/{VERSION}"
QOS: Final = 1
MAX_PAYLOAD: Final = 256 * 1024
"""A DUT record with its LED timeline is the largest message; a few kB in practice."""

_RUN: Final = Limits(pattern="^[a-z0-9][a-z0-9-]{0,31}$")
_WORKER: Final = Limits(pattern="^[0-9a-f]{16}$")
DEVICE: Final = "^[0-9a-f]{16}$"


class LineWorkError(ImpFactoryError, ValueError):
    """A line-work topic or message is malformed."""


class Direction(StrEnum):
    UP = "up"  # worker -> coordinator
    DOWN = "down"  # coordinator -> worker



@dataclass(frozen=True)
class Message:
    """Base of every line-work message (run and worker travel in the topic)."""

    KIND: ClassVar[str] = ""
    DIRECTION: ClassVar[Direction] = Direction.UP


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
class ActivityRequest(Message):
    """What did this device's agent do, once it has heard ``messages`` messages?"""

    KIND: ClassVar[str] = "activity_request"
    device_id: str = limited(pattern=DEVICE)
    messages: int = limited(ge=0, le=1 << 20, default=0)


@dataclass(frozen=True)
class Stage(Message):
    """Progress: DUT ``index`` entered ``stage``."""

    KIND: ClassVar[str] = "stage"
    index: int = limited(ge=0, le=1 << 20)
    stage: str = limited(max_length=64)


@dataclass(frozen=True)
class Done(Message):
    """One DUT finished; ``record`` is its ``DutRecord.to_dict()``."""

    KIND: ClassVar[str] = "done"
    record: dict[str, Any] = limited()


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
class Activity(Message):
    """The answer to ``activity_request``: the agent's activity entries."""

    KIND: ClassVar[str] = "activity"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    device_id: str = limited(pattern=DEVICE)
    entries: list[Any] = limited(max_length=10_000)


UP_KINDS: Final[dict[str, type[Message]]] = {
    c.KIND: c for c in (Join, Adopt, ActivityRequest, Stage, Done, Finished, Failed)}
DOWN_KINDS: Final[dict[str, type[Message]]] = {
    c.KIND: c for c in (Assign, Dismiss, Adopted, Activity)}
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
    """Serialise ``msg`` for ``worker`` of ``run``: (topic, payload)."""
    obj: dict[str, Any] = {"v": VERSION}
    obj.update({f.name: getattr(msg, f.name) for f in fields(msg)})
    try:
        payload = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as err:
        raise LineWorkError(f"{msg.KIND}: not representable as JSON: {err}") from err
    if len(payload) > MAX_PAYLOAD:
        raise LineWorkError(f"{msg.KIND}: {len(payload)} bytes exceeds {MAX_PAYLOAD}")
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
    known, entries = _plan(cls)
    if not known.issuperset(obj):
        raise LineWorkError(f"{cls.KIND}: unknown field(s) {sorted(set(obj) - known)[:5]}")
    values: dict[str, Any] = {}
    for name_, tp, lim, required in entries:
        if name_ not in obj:
            if required:
                raise LineWorkError(f"{cls.KIND}: missing field {name_!r}")
            continue
        values[name_] = _check(f"{cls.KIND}.{name_}", tp, obj[name_], lim)
    return run, worker, cls(**values)


_Plan = tuple[frozenset[str], tuple[tuple[str, Any, Limits, bool], ...]]
_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    """The fields of ``cls`` and, per field, (name, type, limits, required), worked out once."""
    plan = _PLANS.get(cls)
    if plan is None:
        hints = get_type_hints(cls)
        entries = tuple((f.name, hints[f.name], limits_of(f.metadata),
                         f.default is MISSING and f.default_factory is MISSING)
                        for f in fields(cls))
        plan = _PLANS[cls] = (frozenset(e[0] for e in entries), entries)
    return plan


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
    if getattr(tp, "__origin__", None) is dict:
        if not isinstance(value, dict):
            raise LineWorkError(f"{where}: expected an object")
        return value
    if getattr(tp, "__origin__", None) is list:
        if not isinstance(value, list) or not lim.length_ok(len(value)):
            raise LineWorkError(f"{where}: expected a list of at most {lim.max_length}")
        return value
    raise LineWorkError(f"{where}: unsupported field type {tp!r}")  # pragma: no cover
