"""The line-work wire format (protocol/linework.py): every kind round-trips, every
fault is a typed error, and what travels inside (line config, cloud info, DUT
records) comes back as the same objects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import warnings
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import NonInteractiveExampleWarning

from impfactory.errors import ImpFactoryError
from impfactory.fixture.line import LineConfig
from impfactory.fixture.linebus import LineBus, LineBusError, Outbox
from impfactory.fixture.linepipe import CLOSED, PipeHub, WorkerPipe, frame, unframe
from impfactory.fixture.record import DutRecord, Stage
from impfactory.fixture.shard import (
    CloudInfo,
    Report,
    ShardError,
    config_from_dict,
    config_to_dict,
    pack_progress,
)
from impfactory.hw.optical import OpticalConfig
from impfactory.protocol import linework as lw

hex16 = st.text("0123456789abcdef", min_size=16, max_size=16)
runs = st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)

BUILDERS = (
    st.builds(lw.Join, host=st.text(max_size=255)),
    st.builds(lw.Adopt, device_id=hex16),
    st.builds(lw.Progress,
              stages=st.lists(st.builds(lw.StageEvent, index=st.integers(0, 1 << 20),
                                        stage=st.text(max_size=64)), max_size=5),
              done=st.lists(objects, max_size=3),
              asks=st.lists(st.builds(lw.Ask, device_id=hex16,
                                      messages=st.integers(0, 1 << 20)), max_size=5)),
    st.builds(lw.Finished, lost_presses=st.integers(0, 1 << 30)),
    st.builds(lw.Failed, error=st.text(max_size=4096)),
    st.builds(lw.Assign, shard=st.integers(0, 255), shards=st.integers(1, 256), config=objects,
              cloud=objects, duts=st.lists(st.integers(0, 65535), max_size=5)),
    st.builds(lw.Dismiss, reason=st.text(max_size=1024)),
    st.builds(lw.Adopted, device_id=hex16),
    st.builds(lw.Answers, activity=st.lists(
        st.builds(lw.AgentActivity, device_id=hex16, entries=st.lists(objects, max_size=5)),
        max_size=4)),
)
MESSAGES = st.one_of(*BUILDERS)


@given(runs, hex16, MESSAGES)
def test_every_message_round_trips(run: str, worker: str, msg: lw.Message) -> None:
    topic, payload = lw.encode(run, worker, msg)
    assert lw.decode(topic, payload) == (run, worker, msg)
    assert topic == f"impfactory/line/2/{run}/{worker}/{msg.DIRECTION.value}/{msg.KIND}"


def test_every_kind_is_covered_by_the_strategy() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        built = {type(b.example()) for b in BUILDERS}
    assert built == {*lw.UP_KINDS.values(), *lw.DOWN_KINDS.values()}


def test_filters_match_exactly_their_side() -> None:
    up = lw.topic("r1", "0123456789abcdef", lw.Join())
    down = lw.topic("r1", "0123456789abcdef", lw.Dismiss(reason="x"))
    assert lw.coordinator_filter("r1") == "impfactory/line/2/r1/+/up/#"
    assert lw.worker_filter("r1", "0123456789abcdef") == \
        "impfactory/line/2/r1/0123456789abcdef/down/#"
    assert up.split("/")[5] == "up" and down.split("/")[5] == "down"


W = "0123456789abcdef"
UP = f"impfactory/line/2/r/{W}/up"
DOWN = f"impfactory/line/2/r/{W}/down"
ASK = '{"device_id":"0123456789abcdef","messages":1}'


@pytest.mark.parametrize(("topic", "payload"), [
    ("imp/1/d/0123456789abcdef/up/hello", b'{"v":2}'),  # not ours
    (f"impfactory/line/1/r/{W}/up/join", b'{"v":2}'),  # another version
    (f"impfactory/line/2/R/{W}/up/join", b'{"v":2}'),  # bad run name
    ("impfactory/line/2/r/0123/up/join", b'{"v":2}'),  # bad worker ID
    (f"impfactory/line/2/r/{W}/sideways/join", b'{"v":2}'),
    (f"{UP}/assign", b'{"v":2}'),  # a down kind sent up
    (f"{UP}/stage", b'{"v":2,"index":1,"stage":"x"}'),  # version 1's kinds are gone
    (f"{UP}/join", b'{"v":1}'),
    (f"{UP}/join", b"[1]"),
    (f"{UP}/join", b"\xff"),
    (f"{UP}/join", b'{"v":2,"host":1}'),
    (f"{UP}/join", b'{"v":2,"extra":1}'),
    (f"{UP}/progress", b'{"v":2,"stages":[{"index":-1,"stage":"x"}]}'),
    (f"{UP}/progress", b'{"v":2,"stages":[{"index":true,"stage":"x"}]}'),
    (f"{UP}/progress", b'{"v":2,"stages":[{"stage":"x"}]}'),  # missing index
    (f"{UP}/progress", b'{"v":2,"stages":[{"index":1,"stage":"x","extra":1}]}'),
    (f"{UP}/progress", b'{"v":2,"stages":[[1,"x"]]}'),  # an event is an object
    (f"{UP}/progress", b'{"v":2,"stages":{"index":1}}'),  # a list, not one event
    (f"{UP}/progress", b'{"v":2,"done":[[]]}'),  # a record is an object
    (f"{UP}/progress", b'{"v":2,"done":[{}, 3]}'),
    (f"{UP}/progress", b'{"v":2,"asks":[{"device_id":"XYZ","messages":1}]}'),
    (f"{UP}/progress", b'{"v":2,"asks":[{"device_id":"0123456789abcdef","messages":-2}]}'),
    (f"{UP}/progress", ('{"v":2,"asks":[' + ",".join([ASK] * (lw.MAX_ITEMS + 1))
                        + "]}").encode()),  # too many items
    (f"{DOWN}/answers", b'{"v":2,"activity":[{"device_id":"0123456789abcdef"}]}'),
    (f"{DOWN}/answers", b'{"v":2,"activity":[{"device_id":"0123456789abcdef",'
                        b'"entries":{}}]}'),
    (f"{DOWN}/answers", b'{"v":2,"activity":[null]}'),
    (f"{UP}/adopt", b'{"v":2,"device_id":"XYZ"}'),
    (f"{UP}/finished", b'{"v":2,"lost_presses":NaN}'),
    (f"{UP}/join", b"[" * 100_000),
    (f"{UP}/join", b" " * (lw.MAX_PAYLOAD + 1)),
])
def test_bad_input_is_a_typed_error(topic: str, payload: bytes) -> None:
    with pytest.raises(lw.LineWorkError):
        lw.decode(topic, payload)


@given(st.sampled_from(sorted({**lw.UP_KINDS, **lw.DOWN_KINDS})), st.binary(max_size=200))
def test_garbage_never_escapes_as_anything_but_lineworkerror(kind: str, payload: bytes) -> None:
    direction = "up" if kind in lw.UP_KINDS else "down"
    with contextlib.suppress(lw.LineWorkError):
        lw.decode(f"impfactory/line/2/r/{W}/{direction}/{kind}", payload)


@given(st.sampled_from(sorted({**lw.UP_KINDS, **lw.DOWN_KINDS})), objects)
def test_hostile_json_objects(kind: str, obj: dict[str, object]) -> None:
    direction = "up" if kind in lw.UP_KINDS else "down"
    payload = json.dumps({"v": 2, **obj}).encode()
    with contextlib.suppress(lw.LineWorkError):
        lw.decode(f"impfactory/line/2/r/{W}/{direction}/{kind}", payload)


def test_a_message_json_cannot_carry_is_refused_when_sent() -> None:
    with pytest.raises(lw.LineWorkError):
        lw.encode("r", W, lw.Progress(done=[{"x": float("nan")}]))
    with pytest.raises(lw.MessageTooLarge):
        lw.encode("r", W, lw.Progress(done=[{"x": "y" * lw.MAX_PAYLOAD}]))


# ---------------------------------------------------------------- what travels inside


configs = st.builds(
    LineConfig, fixtures=st.integers(1, 256), duts=st.integers(1, 65536),
    seed=st.integers(0, 2**31), faults=st.dictionaries(
        st.sampled_from(["misplaced", "wrong_wifi", "test_fail", "link_drop"]),
        st.floats(0, 1), max_size=4),
    outdated_impos=st.floats(0, 1), clock_scale=st.floats(0.01, 1e4),
    optical=st.builds(OpticalConfig, distance_mm=st.floats(0.5, 20), noise_rms=st.floats(0, 0.1)))


@given(configs)
def test_line_config_travels_whole(config: LineConfig) -> None:
    sent = json.loads(json.dumps(config_to_dict(config)))
    assert config_from_dict(sent) == config


@pytest.mark.parametrize("change", [
    {"fixtures": 0}, {"duts": "many"}, {"faults": {"gremlins": 0.5}}, {"clock_scale": -1},
    {"optical": {"distance_mm": -1}}, {"optical": 3}, {"unknown": 1}, {"clock_scale": 1e400},
])
def test_bad_line_config_is_a_typed_error(change: dict[str, object]) -> None:
    data = config_to_dict(LineConfig()) | change
    with pytest.raises(ShardError):
        config_from_dict(data)


def test_cloud_info_and_records_travel_whole() -> None:
    info = CloudInfo("mqtt://h:1", "ssid", "pw", "43.1.0", "42.0.0", (("a" * 16, "b" * 16),),
                     7)
    assert CloudInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    with pytest.raises(ShardError):
        CloudInfo.from_dict({"broker_url": "x"})
    record = DutRecord("0c2a69000001", "0c2a69f00000", 3, "blessed",
                       stages=[Stage("blinkup", 0.0, 1.5)])
    assert DutRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert issubclass(lw.LineWorkError, ImpFactoryError)


@given(st.sampled_from([("up", "progress", "stages"), ("up", "progress", "done"),
                        ("up", "progress", "asks"), ("down", "answers", "activity")]),
       st.lists(json_values | objects, max_size=4))
def test_hostile_batch_items(where: tuple[str, str, str], items: list[object]) -> None:
    direction, kind, name = where
    payload = json.dumps({"v": 2, name: items}).encode()
    with contextlib.suppress(lw.LineWorkError):
        lw.decode(f"impfactory/line/2/r/{W}/{direction}/{kind}", payload)


# ---------------------------------------------------------------- batches (fixture/linebus.py)


class _Wire:
    """Stands in for a ``LineBus``: keeps what is posted, acknowledges when told."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[lw.Message] = []
        self.fail = fail

    def post(self, worker: str, msg: lw.Message) -> asyncio.Task[None]:
        lw.encode("r", worker, msg)  # what the bus does first: refuses what cannot go
        self.sent.append(msg)
        return asyncio.ensure_future(self._ack())

    async def _ack(self) -> None:
        await asyncio.sleep(0)
        if self.fail:
            raise LineBusError("lost the broker")


def _outbox(wire: _Wire, **kw: Any) -> Outbox[Report]:
    return Outbox(cast(LineBus, wire), W, pack_progress, **kw)


def test_an_outbox_gathers_items_into_one_batch_in_order() -> None:
    async def run() -> _Wire:
        wire = _Wire()
        outbox = _outbox(wire, interval=0.01)
        outbox.put(lw.StageEvent(3, "blinkup"))
        outbox.put(lw.StageEvent(3, "online"))
        outbox.put({"index": 3})
        outbox.put(lw.Ask(W, 2))
        assert wire.sent == []  # nothing leaves before the interval
        await asyncio.sleep(0.05)
        outbox.put(lw.StageEvent(4, "blinkup"))
        await outbox.drain()
        return wire

    wire = asyncio.run(run())
    assert wire.sent == [
        lw.Progress(stages=[lw.StageEvent(3, "blinkup"), lw.StageEvent(3, "online")],
                    done=[{"index": 3}], asks=[lw.Ask(W, 2)]),
        lw.Progress(stages=[lw.StageEvent(4, "blinkup")])]


def test_an_outbox_sends_at_max_items_and_splits_what_is_too_large() -> None:
    async def run() -> _Wire:
        wire = _Wire()
        outbox = _outbox(wire, interval=60, max_items=3)
        for i in range(7):
            outbox.put(lw.StageEvent(i, "x"))
        assert len(wire.sent) == 2  # two full batches left at once, without waiting
        big = {"uart": "y" * (lw.MAX_PAYLOAD // 2)}
        outbox.put(big)
        outbox.put(big)
        await outbox.drain()
        return wire

    wire = asyncio.run(run())
    sent = cast(list[lw.Progress], wire.sent)
    assert [len(m.stages) + len(m.done) for m in sent] == [3, 3, 1, 1, 1]
    assert [e.index for m in sent for e in m.stages] == list(range(7))


def test_an_outbox_drain_raises_what_a_batch_met() -> None:
    async def run(wire: _Wire, item: Report) -> None:
        outbox = _outbox(wire)
        outbox.put(item)
        await outbox.drain()

    with pytest.raises(LineBusError):
        asyncio.run(run(_Wire(fail=True), lw.StageEvent(1, "x")))
    with pytest.raises(lw.MessageTooLarge):
        asyncio.run(run(_Wire(), {"uart": "y" * lw.MAX_PAYLOAD}))


def test_a_local_worker_and_its_coordinator_talk_over_pipes_and_a_closed_pipe_is_a_failure(
        ) -> None:
    """fixture/linepipe.py: the same messages, one per line; a worker's end closing is
    reported as its ``failed``, as the broker reports a lost worker by its will."""
    worker = "0123456789abcdef"

    async def talk() -> None:
        async with PipeHub("run-1") as hub:
            theirs, ours = hub.pipes()
            async with WorkerPipe(theirs, "run-1") as pipe:
                await hub.add(worker, ours)
                from_worker = hub.receive()
                await pipe.send(worker, lw.Join(host="h"))
                assert await anext(from_worker) == (worker, lw.Join(host="h"))
                assign = lw.Assign(shard=0, shards=1, config={}, cloud={}, duts=[3, 5])
                await hub.send(worker, assign)
                assert await anext(pipe.receive()) == (worker, assign)
                batch = lw.Progress(stages=[lw.StageEvent(3, "online")], done=[{"index": 3}])
                await pipe.post(worker, batch)  # what an outbox does: framed now, sent soon
                assert await anext(from_worker) == (worker, batch)
                answers = lw.Answers(activity=[lw.AgentActivity(W, [])])
                await hub.post(worker, answers)
                assert await anext(pipe.receive()) == (worker, answers)
            assert await anext(from_worker) == (worker, lw.Failed(error=CLOSED))

    asyncio.run(asyncio.wait_for(talk(), 10))
    batch = lw.Progress(stages=[lw.StageEvent(index=3, stage="online")])
    frame_ = frame("run-1", worker, batch)
    assert frame_.endswith(b"\n") and frame_.count(b"\n") == 1
    assert unframe(frame_) == ("run-1", worker, batch)
    with pytest.raises(lw.LineWorkError):
        unframe(b"impfactory/line/2/run-1/0123456789abcdef/up/progress\n")
