"""Agent events relayed between a share group's clouds (cloud/agent_relay.py): every event
round-trips, bad payloads are typed errors and are dropped, and only cloud accounts may
use the topic."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impfactory.cloud import agent_relay as ar
from impfactory.cloud.brokersec import AGENT_EVENTS, CLOUD_READS, CLOUD_WRITES

hex16 = st.text("0123456789abcdef", min_size=16, max_size=16)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
events = st.builds(ar.AgentEvent, device_id=hex16, event=st.just("changed"),
                   restart=st.booleans()) | st.builds(
    ar.AgentEvent, device_id=hex16, event=st.just("message"), name=st.text(max_size=256),
    value=json_values)


@given(events)
def test_every_event_round_trips(event: ar.AgentEvent) -> None:
    assert ar.decode(ar.encode(event)) == event


@pytest.mark.parametrize("payload", [
    b"", b"[]", b'{"v":2}', b"\xff", b"[" * 50_000,
    b'{"v":1,"device_id":"xyz","event":"changed","restart":false}',
    b'{"v":1,"device_id":"0123456789abcdef","event":"changed","restart":1}',
    b'{"v":1,"device_id":"0123456789abcdef","event":"changed"}',
    b'{"v":1,"device_id":"0123456789abcdef","event":"exploded"}',
    b'{"v":1,"device_id":"0123456789abcdef","event":"message","name":1,"value":1}',
    b'{"v":1,"device_id":"0123456789abcdef","event":"message","name":"n","value":1,"x":1}',
    b" " * (ar.MAX_PAYLOAD + 1),
])
def test_bad_payloads_are_typed_errors_and_are_dropped(payload: bytes) -> None:
    with pytest.raises(ar.RelayError):
        ar.decode(payload)
    seen: list[Any] = []

    class Agents:
        def device_changed(self, *args: Any) -> None:
            seen.append(args)

        def device_message(self, *args: Any) -> None:
            seen.append(args)

        def is_running(self, device_id: str) -> bool | None:
            return None

    ar.replay(Agents(), payload)
    assert seen == []


@given(st.binary(max_size=300))
def test_garbage_is_only_ever_a_relay_error(payload: bytes) -> None:
    with contextlib.suppress(ar.RelayError):
        ar.decode(payload)


def test_only_cloud_accounts_use_the_topic() -> None:
    assert AGENT_EVENTS == ar.FILTER
    assert AGENT_EVENTS in CLOUD_READS and AGENT_EVENTS in CLOUD_WRITES
    assert ar.topic("line") == "impfactory/cloud/1/line/agents"
    with pytest.raises(ar.RelayError):
        ar.topic("a/b")
