"""The cloud-link wire format: every kind round-trips, every fault is a typed error."""

from __future__ import annotations

import contextlib
import json
import warnings

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NonInteractiveExampleWarning

from impfactory.errors import ImpFactoryError
from impfactory.protocol import cloudlink as cl

DEV = "0123456789abcdef"
hex16 = st.text("0123456789abcdef", min_size=16, max_size=16)
sha = st.text("0123456789abcdef", min_size=64, max_size=64)
name = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
req = st.integers(0, 2**31 - 1)
short = st.text(max_size=40)
image = st.builds(
    cl.ImageRef,
    kind=st.sampled_from(cl.ImageKind),
    sha=sha,
    size=st.integers(0, 2**24),
    chunk_size=st.integers(1, cl.MAX_CHUNK),
    blocks_sha=st.none() | sha,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)

BUILDERS = (
    st.builds(
        cl.Hello,
        device_id=hex16,
        req=req,
        mac=st.text("0123456789abcdef", min_size=12, max_size=12),
        impos_version=name,
        imp_type=name,
        deployment=st.none() | st.text(max_size=64),
        plan_id=st.none() | hex16,
        token=st.none() | hex16,
    ),
    st.builds(cl.StateReport, device_id=hex16, connection=name, led=name, impos_version=name),
    st.builds(cl.Log, device_id=hex16, msg=st.text(max_size=200), type=st.sampled_from(cl.LogType)),
    st.builds(cl.FactoryTokenRequest, device_id=hex16, req=req),
    st.builds(
        cl.ChunkRequest,
        device_id=hex16,
        sha=sha,
        blocks=st.lists(st.integers(0, 10_000), min_size=1, max_size=64).map(tuple),
    ),
    st.builds(cl.BlessRequest, device_id=hex16, req=req, passed=st.booleans(),
              attempt=st.none() | hex16),
    st.builds(cl.Bye, device_id=hex16, reason=short),
    st.builds(
        cl.Welcome, device_id=hex16, req=req, plan_id=st.none() | hex16, blessed=st.booleans()
    ),
    st.builds(
        cl.ErrorReply,
        device_id=hex16,
        req=st.none() | req,
        code=st.sampled_from(cl.ErrorCode),
        message=short,
    ),
    st.builds(cl.Assignment, device_id=hex16, group_id=st.none() | short, blessed=st.booleans()),
    st.builds(
        cl.ConfigParams,
        device_id=hex16,
        params=st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=5),
    ),
    st.builds(
        cl.CodeOffer,
        device_id=hex16,
        deployment=short,
        sha=sha,
        device=image,
        agent=st.none() | image,
    ),
    st.builds(cl.OsOffer, device_id=hex16, version=name, image=image),
    st.builds(
        cl.Chunk,
        device_id=hex16,
        sha=sha,
        index=st.just(2),
        total=st.integers(3, 100),
        data=st.binary(max_size=300),
    ),
    st.builds(cl.FactoryToken, device_id=hex16, req=req, plan_id=hex16, token=hex16),
    st.builds(cl.BlessAnswer, device_id=hex16, req=req, blessed=st.booleans(), reason=short),
    st.builds(cl.Restart, device_id=hex16, reason=short),
    st.builds(cl.ShutdownNotice, device_id=hex16, reason=st.sampled_from(cl.ShutdownReason)),
    st.builds(cl.AgentMessage, device_id=hex16, name=name, value=json_values),
    st.builds(cl.DeviceMessage, device_id=hex16, name=name, value=json_values),
)
MESSAGES = st.one_of(BUILDERS)


@settings(max_examples=300, deadline=None)
@given(MESSAGES)
def test_every_message_round_trips(msg: cl.Message) -> None:
    topic, payload = cl.encode(msg)
    assert topic.startswith(f"imp/1/d/{msg.device_id}/{msg.DIRECTION.value}/")
    back = cl.decode(topic, payload)
    assert back == msg
    assert cl.encode(back) == (topic, payload)


def test_every_kind_is_covered_by_the_strategy() -> None:
    """A kind added to the protocol without a builder here would never be round-tripped."""
    with warnings.catch_warnings():  # .example() outside @given is what we want here
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        built = {builder.example().KIND for builder in BUILDERS}
    assert built == set(cl.UP_KINDS) | set(cl.DOWN_KINDS)
    assert len(BUILDERS) == len(built)  # one builder per kind
    assert set(cl.UP_KINDS).isdisjoint(cl.DOWN_KINDS)


def test_wire_layout_is_what_the_docs_say() -> None:
    topic, payload = cl.encode(cl.BlessRequest(device_id=DEV, req=7, passed=False))
    assert topic == "imp/1/d/0123456789abcdef/up/bless_request"
    assert json.loads(payload) == {"v": 1, "req": 7, "passed": False, "attempt": None}
    topic, payload = cl.encode(cl.Chunk(device_id=DEV, sha="a" * 64, index=0, total=1,
                                        block_sha="b" * 64, data=b"xy"))
    assert topic.endswith("/down/chunk")
    assert payload == (b'{"v":1,"sha":"' + b"a" * 64 + b'","index":0,"total":1,"block_sha":"'
                       + b"b" * 64 + b'"}\nxy')
    assert cl.device_filter(DEV) == "imp/1/d/0123456789abcdef/down/#"
    assert cl.CLOUD_FILTER == "imp/1/d/+/up/#"


def test_agent_messages_carry_json_values_and_nothing_else() -> None:
    msg = cl.AgentMessage(device_id=DEV, name="reading", value={"t": [21.5, None], "ok": True})
    topic, payload = cl.encode(msg)
    assert topic == f"imp/1/d/{DEV}/up/agent_message"
    assert json.loads(payload) == {"v": 1, "name": "reading", "value": {"t": [21.5, None],
                                                                        "ok": True}}
    for value in (float("nan"), b"blob", {1, 2}, "x" * cl.MAX_PAYLOAD):
        with pytest.raises(cl.SchemaError if value != "x" * cl.MAX_PAYLOAD
                           else cl.PayloadTooLargeError):
            cl.validate(cl.DeviceMessage(device_id=DEV, name="n", value=value))
    with pytest.raises(cl.SchemaError):
        cl.decode(topic, b'{"v":1,"name":"n","value":NaN}')
    with pytest.raises(cl.SchemaError):
        cl.decode(topic, b'{"v":1,"name":"not a name!","value":1}')


def test_image_block_count() -> None:
    assert cl.ImageRef(cl.ImageKind.IMPOS, "0" * 64, 1 << 20, 16384).total == 64
    assert cl.ImageRef(cl.ImageKind.DEVICE, "0" * 64, 16385, 16384).total == 2
    assert cl.ImageRef(cl.ImageKind.DEVICE, "0" * 64, 0, 16384).total == 0


UP = f"imp/1/d/{DEV}/up/"


@pytest.mark.parametrize(
    ("topic", "payload", "error"),
    [
        ("imp/1/d/ZZ/up/hello", b'{"v":1}', cl.TopicError),
        ("imp/1/d/0123456789ABCDEF/up/hello", b'{"v":1}', cl.TopicError),
        (f"imp/2/d/{DEV}/up/hello", b'{"v":1}', cl.VersionError),
        (UP + "teleport", b'{"v":1}', cl.TopicError),
        (f"imp/1/d/{DEV}/sideways/hello", b'{"v":1}', cl.TopicError),
        (f"imp/1/d/{DEV}/up/welcome", b'{"v":1}', cl.TopicError),
        ("other/topic", b"{}", cl.TopicError),
        (UP + "hello", b"not json", cl.SchemaError),
        (UP + "hello", b"\xff\xfe", cl.SchemaError),
        (UP + "hello", b"[1,2]", cl.SchemaError),
        (UP + "hello", b'{"req":1}', cl.VersionError),
        (UP + "hello", b'{"v":2}', cl.VersionError),
        (UP + "hello", b'{"v":1,"req":"1"}', cl.SchemaError),
        (UP + "hello", b'{"v":1,"req":true}', cl.SchemaError),
        (UP + "hello", b'{"v":1,"token":"xyz"}', cl.SchemaError),
        (UP + "hello", b'{"v":1,"surprise":1}', cl.SchemaError),
        (UP + "bless_request", b'{"v":1,"req":1,"passed":1}', cl.SchemaError),
        (UP + "chunk_request", b'{"v":1,"sha":"' + b"0" * 64 + b'","blocks":[]}', cl.SchemaError),
        (UP + "chunk_request", b'{"v":1,"sha":"' + b"0" * 64 + b'","blocks":[-1]}', cl.SchemaError),
        (UP + "chunk_request", b'{"v":1,"sha":"abc","blocks":[1]}', cl.SchemaError),
        (UP + "log", b'{"v":1,"msg":"' + b"x" * 5000 + b'"}', cl.SchemaError),
        (UP + "log", b'{"v":1,"msg":"hi","type":"shout"}', cl.SchemaError),
        (UP + "log", b'{"v":1,"msg":' + b"[" * 5000 + b"]" * 5000 + b"}", cl.SchemaError),
        (UP + "log", b'{"v":1,"msg":"' + b"x" * cl.MAX_PAYLOAD + b'"}', cl.PayloadTooLargeError),
        (f"imp/1/d/{DEV}/down/chunk", b'{"v":1,"sha":"' + b"0" * 64 + b'"}', cl.SchemaError),
        (
            f"imp/1/d/{DEV}/down/chunk",
            b'{"v":1,"sha":"' + b"0" * 64 + b'","index":5,"total":5}\nxx',
            cl.SchemaError,
        ),
        (
            f"imp/1/d/{DEV}/down/code_offer",
            b'{"v":1,"device":{"kind":"device","sha":"00","size":1,"chunk_size":1}}',
            cl.SchemaError,
        ),
    ],
)
def test_bad_input_is_a_typed_error(topic: str, payload: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        cl.decode(topic, payload)
    assert isinstance(caught.value, cl.CloudLinkError)
    assert isinstance(caught.value, ImpFactoryError)
    assert isinstance(caught.value, ValueError)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted({**cl.UP_KINDS, **cl.DOWN_KINDS})), st.binary(max_size=200))
def test_garbage_never_escapes_as_anything_but_cloudlinkerror(kind: str, payload: bytes) -> None:
    direction = "up" if kind in cl.UP_KINDS else "down"
    with contextlib.suppress(cl.CloudLinkError):
        cl.decode(f"imp/1/d/{DEV}/{direction}/{kind}", payload)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["v", "req", "mac", "plan_id", "token", "deployment", "x"]),
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.lists(st.integers())
        ),
    )
)
def test_hostile_json_objects(obj: dict[str, object]) -> None:
    try:
        msg = cl.decode(UP + "hello", json.dumps(obj).encode())
    except cl.CloudLinkError:
        return
    assert isinstance(msg, cl.Hello)
    assert cl.validate(msg) == msg


def _outcome(decode: object, *args: object) -> object:
    try:
        return decode(*args)  # type: ignore[operator]
    except cl.CloudLinkError as err:
        return type(err)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["v", "sha", "index", "total", "block_sha", "x"]),
        st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.sampled_from([1, 1.0]),
                  st.integers(2**31 - 2, 2**31 + 1), sha, st.text(max_size=3)),
    ),
    st.binary(max_size=8),
    st.booleans(),
)
@example({"v": 1}, b"", True)  # fields left out: the general path once raised KeyError here
@example({"v": 1, "sha": "a" * 64, "index": 2**31 - 1, "total": 2**31, "block_sha": "b" * 64},
         b"x", True)
@example({"v": 1, "sha": "a" * 64, "index": 0, "total": 2**31 + 1, "block_sha": "b" * 64},
         b"x", True)
def test_the_fast_chunk_path_answers_as_the_general_one(obj: dict[str, object], data: bytes,
                                                         compact: bool) -> None:
    """``decode_chunk`` takes a short cut for headers written as ``encode`` writes
    them: any header, so written or not, well formed or hostile, gets the same value
    or the same error as the general rules."""
    separators = (",", ":") if compact else None
    payload = json.dumps(obj, separators=separators).encode() + b"\n" + data
    head = payload.partition(b"\n")[0]
    assert _outcome(cl.decode_chunk, DEV, payload) == _outcome(cl._decode, cl.Chunk, DEV,
                                                                head, data)


@settings(max_examples=50, deadline=None)
@given(sha, st.integers(0, 2**31 - 1), sha, st.binary(max_size=8))
def test_encoded_chunks_take_the_fast_path(image: str, index: int, block: str,
                                           data: bytes) -> None:
    chunk = cl.Chunk(device_id=DEV, sha=image, index=index, total=index + 1, block_sha=block,
                     data=data)
    head = cl.encode(chunk)[1].partition(b"\n")[0]
    assert cl._CHUNK_HEAD.match(head) and cl.decode_chunk(DEV, cl.encode(chunk)[1]) == chunk
