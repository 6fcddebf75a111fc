"""The line-work wire format (protocol/linework.py): every kind round-trips, every
fault is a typed error, and what travels inside (line config, cloud info, DUT
records) comes back as the same objects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import NonInteractiveExampleWarning

from impfactory.errors import ImpFactoryError
from impfactory.fixture.line import LineConfig
from impfactory.fixture.linepipe import CLOSED, PipeHub, WorkerPipe, frame, unframe
from impfactory.fixture.record import DutRecord, Stage
from impfactory.fixture.shard import CloudInfo, ShardError, config_from_dict, config_to_dict
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
    st.builds(lw.ActivityRequest, device_id=hex16, messages=st.integers(0, 1 << 20)),
    st.builds(lw.Stage, index=st.integers(0, 1 << 20), stage=st.text(max_size=64)),
    st.builds(lw.Done, record=objects),
    st.builds(lw.Finished, lost_presses=st.integers(0, 1 << 30)),
    st.builds(lw.Failed, error=st.text(max_size=4096)),
    st.builds(lw.Assign, shard=st.integers(0, 255), shards=st.integers(1, 256), config=objects,
              cloud=objects, duts=st.lists(st.integers(0, 65535), max_size=5)),
    st.builds(lw.Dismiss, reason=st.text(max_size=1024)),
    st.builds(lw.Adopted, device_id=hex16),
    st.builds(lw.Activity, device_id=hex16, entries=st.lists(objects, max_size=5)),
)
MESSAGES = st.one_of(*BUILDERS)


@given(runs, hex16, MESSAGES)
def test_every_message_round_trips(run: str, worker: str, msg: lw.Message) -> None:
    topic, payload = lw.encode(run, worker, msg)
    assert lw.decode(topic, payload) == (run, worker, msg)
    assert topic == f"impfactory/line/1/{run}/{worker}/{msg.DIRECTION.value}/{msg.KIND}"


def test_every_kind_is_covered_by_the_strategy() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        built = {type(b.example()) for b in BUILDERS}
    assert built == {*lw.UP_KINDS.values(), *lw.DOWN_KINDS.values()}


def test_filters_match_exactly_their_side() -> None:
    up = lw.topic("r1", "0123456789abcdef", lw.Join())
    down = lw.topic("r1", "0123456789abcdef", lw.Dismiss(reason="x"))
    assert lw.coordinator_filter("r1") == "impfactory/line/1/r1/+/up/#"
    assert lw.worker_filter("r1", "0123456789abcdef") == \
        "impfactory/line/1/r1/0123456789abcdef/down/#"
    assert up.split("/")[5] == "up" and down.split("/")[5] == "down"


W = "0123456789abcdef"


@pytest.mark.parametrize(("topic", "payload"), [
    ("imp/1/d/0123456789abcdef/up/hello", b'{"v":1}'),  # not ours
    (f"impfactory/line/2/r/{W}/up/join", b'{"v":1}'),  # another version
    (f"impfactory/line/1/R/{W}/up/join", b'{"v":1}'),  # bad run name
    ("impfactory/line/1/r/0123/up/join", b'{"v":1}'),  # bad worker ID
    (f"impfactory/line/1/r/{W}/sideways/join", b'{"v":1}'),
    (f"impfactory/line/1/r/{W}/up/assign", b'{"v":1}'),  # a down kind sent up
    (f"impfactory/line/1/r/{W}/up/join", b'{"v":2}'),
    (f"impfactory/line/1/r/{W}/up/join", b"[1]"),
    (f"impfactory/line/1/r/{W}/up/join", b"\xff"),
    (f"impfactory/line/1/r/{W}/up/join", b'{"v":1,"host":1}'),
    (f"impfactory/line/1/r/{W}/up/join", b'{"v":1,"extra":1}'),
    (f"impfactory/line/1/r/{W}/up/stage", b'{"v":1,"index":-1,"stage":"x"}'),
    (f"impfactory/line/1/r/{W}/up/stage", b'{"v":1,"index":true,"stage":"x"}'),
    (f"impfactory/line/1/r/{W}/up/stage", b'{"v":1,"stage":"x"}'),  # missing index
    (f"impfactory/line/1/r/{W}/up/adopt", b'{"v":1,"device_id":"XYZ"}'),
    (f"impfactory/line/1/r/{W}/up/done", b'{"v":1,"record":[]}'),
    (f"impfactory/line/1/r/{W}/up/finished", b'{"v":1,"lost_presses":NaN}'),
    (f"impfactory/line/1/r/{W}/up/join", b"[" * 100_000),
    (f"impfactory/line/1/r/{W}/up/join", b" " * (lw.MAX_PAYLOAD + 1)),
])
def test_bad_input_is_a_typed_error(topic: str, payload: bytes) -> None:
    with pytest.raises(lw.LineWorkError):
        lw.decode(topic, payload)


@given(st.sampled_from(sorted({**lw.UP_KINDS, **lw.DOWN_KINDS})), st.binary(max_size=200))
def test_garbage_never_escapes_as_anything_but_lineworkerror(kind: str, payload: bytes) -> None:
    direction = "up" if kind in lw.UP_KINDS else "down"
    with contextlib.suppress(lw.LineWorkError):
        lw.decode(f"impfactory/line/1/r/{W}/{direction}/{kind}", payload)


@given(st.sampled_from(sorted({**lw.UP_KINDS, **lw.DOWN_KINDS})), objects)
def test_hostile_json_objects(kind: str, obj: dict[str, object]) -> None:
    direction = "up" if kind in lw.UP_KINDS else "down"
    payload = json.dumps({"v": 1, **obj}).encode()
    with contextlib.suppress(lw.LineWorkError):
        lw.decode(f"impfactory/line/1/r/{W}/{direction}/{kind}", payload)


def test_a_message_json_cannot_carry_is_refused_when_sent() -> None:
    with pytest.raises(lw.LineWorkError):
        lw.encode("r", W, lw.Done(record={"x": float("nan")}))
    with pytest.raises(lw.LineWorkError):
        lw.encode("r", W, lw.Done(record={"x": "y" * lw.MAX_PAYLOAD}))


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
            assert await anext(from_worker) == (worker, lw.Failed(error=CLOSED))

    asyncio.run(asyncio.wait_for(talk(), 10))
    frame_ = frame("run-1", worker, lw.Stage(index=3, stage="online"))
    assert frame_.endswith(b"\n") and frame_.count(b"\n") == 1
    assert unframe(frame_) == ("run-1", worker, lw.Stage(index=3, stage="online"))
    with pytest.raises(lw.LineWorkError):
        unframe(b"impfactory/line/1/run-1/0123456789abcdef/up/stage\n")
