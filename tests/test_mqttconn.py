"""The device's own MQTT 3.1.1 connection (impfactory/mqttconn.py): packets split or
joined however TCP delivers them, refusals, keep-alive, and a real broker's round trip."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from impfactory.brokerurl import parse_url
from impfactory.cloud.brokersec import AGENT_EVENTS, access_for
from impfactory.mqttconn import MqttConnection, MqttError, MqttRefused, open_connection


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.aborted = False

    def write(self, data: Any) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


def _publish(topic: str, payload: bytes, mid: int) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic.encode() + mid.to_bytes(2, "big") + payload
    assert len(body) < 128
    return bytes((0x32, len(body))) + body


@pytest.mark.parametrize("piece", [1, 3, 1000])
def test_packets_are_read_however_they_are_cut(piece: int) -> None:
    """Two QoS 1 messages and a PUBACK, delivered ``piece`` bytes at a time: each message
    once, in order, each acknowledged, the PUBACK completing its publish."""

    async def main() -> None:
        got: list[tuple[str, bytes]] = []
        conn = MqttConnection(lambda t, p: got.append((t, p)), keepalive=0)
        transport = _Transport()
        conn.connection_made(transport)
        ack = conn.publish("imp/up", b"x", qos=1)
        assert ack is not None
        await asyncio.sleep(0)
        transport.written.clear()
        stream = _publish("a/b", b"one", 7) + _publish("a/c", b"two" * 30, 8) + b"\x40\x02\x00\x01"
        for i in range(0, len(stream), piece):
            conn.data_received(stream[i : i + piece])
        assert got == [("a/b", b"one"), ("a/c", b"two" * 30)]
        assert ack.done() and ack.result() == b""
        await asyncio.sleep(0)
        assert bytes(transport.written) == b"\x40\x02\x00\x07\x40\x02\x00\x08"
        assert not conn.closed.done()

    asyncio.run(main())


def test_a_qos2_message_ends_the_connection() -> None:
    async def main() -> None:
        conn = MqttConnection(lambda t, p: None, keepalive=0)
        transport = _Transport()
        conn.connection_made(transport)
        conn.data_received(b"\x34\x07\x00\x01ax\x00\x01y")
        assert transport.aborted
        with pytest.raises(MqttError, match="QoS 2"):
            conn.closed.result()

    asyncio.run(main())


def test_a_round_trip_through_the_broker(any_broker_url: str) -> None:
    """Subscribe, publish to ourselves at QoS 1 (PUBACK), receive it; a wrong password is
    refused; a keep-alive of 1 s holds an idle connection past the broker's 1.5 s."""
    host, port = parse_url(any_broker_url)
    access = access_for(any_broker_url)

    async def main() -> None:
        got: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        conn = await open_connection(
            host,
            port,
            client_id="mqttconn-test",
            on_message=lambda t, p: got.put_nowait((t, p)),
            username=access.username,
            password=access.password,
            keepalive=1,
        )
        await conn.subscribe(AGENT_EVENTS, qos=1)  # a topic the cloud's account reads and writes
        topic = AGENT_EVENTS.replace("+", "mqttconn")
        ack = conn.publish(topic, b"hello", qos=1)
        assert ack is not None
        await asyncio.wait_for(ack, 5)
        assert await asyncio.wait_for(got.get(), 5) == (topic, b"hello")
        await asyncio.sleep(2.2)  # idle: only PINGREQs keep it
        assert not conn.closed.done()
        conn.disconnect()
        await asyncio.wait_for(conn.closed, 5)
        assert conn.closed.exception() is None
        if access.secured:
            with pytest.raises(MqttRefused):
                await open_connection(
                    host,
                    port,
                    client_id="mqttconn-bad",
                    on_message=lambda t, p: None,
                    username=access.username,
                    password="wrong",
                )

    asyncio.run(main())
