"""One constraint vocabulary: the wire messages and the REST models read a limit alike.

``protocol/constraints.Limits`` is what cloud-link, line-work and enrolment fields
declare; ``cloud/api_models.meta`` maps the same ``Limits`` onto ``msgspec.Meta`` for
the REST bodies. The same limits must admit and refuse the same values on both
sides, including the one place Python's ``re`` and JSON Schema differ (a final
``$`` before a trailing newline).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest

from impfactory.cloud.api_models import meta, schemas
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linework as lw
from impfactory.protocol.constraints import Limits

CASES: list[tuple[Limits, type, Any, bool]] = [
    (Limits(pattern=cl.HEX16), str, "0123456789abcdef", True),
    (Limits(pattern=cl.HEX16), str, "0123456789abcdef\n", False),
    (Limits(pattern=cl.HEX16), str, "0123456789ABCDEF", False),
    (Limits(pattern=r"\S", max_length=3), str, " x ", True),
    (Limits(pattern=r"\S", max_length=3), str, "   ", False),
    (Limits(pattern=r"\S", max_length=3), str, "xxxx", False),
    (Limits(min_length=1), str, "", False),
    (Limits(ge=0, le=10), int, 10, True),
    (Limits(ge=0, le=10), int, 11, False),
    (Limits(ge=0, le=10), int, -1, False),
    (Limits(min_length=1, max_length=2), list, [1, 2], True),
    (Limits(min_length=1, max_length=2), list, [], False),
]


def _protocol_admits(limits: Limits, value: Any) -> bool:
    if isinstance(value, str):
        return limits.matches(value) and limits.length_ok(len(value))
    if isinstance(value, list):
        return limits.length_ok(len(value))
    return limits.in_range(value)


@pytest.mark.parametrize(("limits", "tp", "value", "admitted"), CASES)
def test_the_wire_and_the_rest_models_read_a_limit_alike(limits: Limits, tp: type, value: Any,
                                                         admitted: bool) -> None:
    assert _protocol_admits(limits, value) is admitted
    model = Annotated[tp, meta(limits)]
    try:
        msgspec.convert(value, model, strict=True)
        rest = True
    except msgspec.ValidationError:
        rest = False
    assert rest is admitted


def test_the_schema_shows_the_pattern_as_written() -> None:
    class Ref(msgspec.Struct):
        id: Annotated[str, meta(Limits(pattern=cl.HEX16, max_length=16))]

    class Body:
        model = Ref

    _, components = schemas([Body])  # type: ignore[list-item]
    assert components["Ref"]["properties"]["id"] == {
        "type": "string", "pattern": cl.HEX16, "maxLength": 16}


def test_a_trailing_newline_is_no_device_id_on_the_wire() -> None:
    topic, payload = cl.encode(cl.Hello("0123456789abcdef", mac="0123456789ab"))
    with pytest.raises(cl.SchemaError, match="mac"):
        cl.decode(topic, payload.replace(b'"0123456789ab"', b'"0123456789ab\\n"'))
    with pytest.raises(cl.TopicError):
        cl.decode(topic.replace("0123456789abcdef", "0123456789abcdef\n"), payload)
    topic, payload = lw.encode("run", "0123456789abcdef", lw.Adopt("fedcba9876543210"))
    with pytest.raises(lw.LineWorkError, match="malformed"):
        lw.decode(topic, payload.replace(b'3210"', b'3210\\n"'))
