"""The device's own MQTT 3.1.1 connection (impfactory/mqttconn.py): packets split or
joined however TCP delivers them, refusals, keep-alive, and a real broker's round trip."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from impfactory import mqttconn
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

    def close(self) -> None:
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


def _big_publish(topic: str, payload: bytes, mid: int) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic.encode() + mid.to_bytes(2, "big") + payload
    size, length = len(body), bytearray()
    while True:
        size, byte = size >> 7, size & 0x7F
        length.append(byte | 0x80 if size else byte)
        if not size:
            return bytes((0x32,)) + bytes(length) + body


@pytest.mark.parametrize("piece", [4096, 65536, 1 << 20])
def test_packets_larger_than_the_read_buffer_arrive_whole(piece: int) -> None:
    """A 1 MiB and a 3 MiB message (past the 256 KiB read buffer) between small ones, read
    ``piece`` bytes at a time: each arrives whole and in order, and the buffer goes back
    to a quiet connection's size once they are through."""

    async def main() -> None:
        got: list[tuple[str, bytes]] = []
        conn = MqttConnection(lambda t, p: got.append((t, p)), keepalive=0)
        conn.connection_made(_Transport())
        big, bigger = bytes(range(256)) * 4096, b"\x5a" * (3 << 20)
        stream = (
            _publish("a/1", b"x", 1)
            + _big_publish("a/2", big, 2)
            + _publish("a/3", b"y", 3)
            + _big_publish("a/4", bigger, 4)
            + _publish("a/5", b"z", 5)
        )
        for i in range(0, len(stream), piece):
            conn.data_received(stream[i : i + piece])
        assert [t for t, _ in got] == ["a/1", "a/2", "a/3", "a/4", "a/5"]
        assert got[1][1] == big and got[3][1] == bigger and got[4][1] == b"z"
        conn.data_received(_publish("a/6", b"quiet", 6))
        assert got[-1] == ("a/6", b"quiet")
        assert len(conn._buf) == 0  # quiet: none held
        assert len(conn.get_buffer(-1)) == mqttconn.MIN_READ
        assert not conn.closed.done()

    asyncio.run(main())


def test_the_read_buffer_grows_with_a_burst_and_shrinks_when_quiet() -> None:
    """A quiet connection holds no buffer between reads (ten thousand idle devices share a
    process); reads that fill it double it, up to ``READ_BUFFER``; a quiet read lets it
    go again."""

    async def main() -> None:
        got: list[bytes] = []
        conn = MqttConnection(lambda t, p: got.append(p), keepalive=0)
        conn.connection_made(_Transport())
        conn.data_received(_publish("a/b", b"hello", 1))
        assert len(conn._buf) == 0  # a quiet connection holds no buffer between reads
        burst = b"".join(_big_publish("a/b", bytes((n,)) * 16384, n + 2) for n in range(64))
        sizes = set()
        for i in range(0, len(burst), mqttconn.READ_BUFFER):  # a kernel with a lot waiting
            conn.data_received(burst[i : i + mqttconn.READ_BUFFER])
            sizes.add(len(conn._buf))
        assert max(sizes) == mqttconn.READ_BUFFER
        assert got[1:] == [bytes((n,)) * 16384 for n in range(64)]
        conn.data_received(_publish("a/b", b"bye", 99))
        assert got[-1] == b"bye" and len(conn._buf) == 0

    asyncio.run(main())


class _SlowTransport(_Transport):
    """Takes ``room`` bytes, then tells the protocol to pause, as a full socket would."""

    def __init__(self, conn: MqttConnection, room: int) -> None:
        super().__init__()
        self.conn, self.room, self.writes = conn, room, 0

    def write(self, data: Any) -> None:
        super().write(data)
        self.writes += 1
        if len(self.written) >= self.room:
            self.conn.pause_writing()


def test_writing_waits_while_the_transport_is_full() -> None:
    """Forty 64 KiB messages published at once reach the transport a piece at a time:
    none while it is paused, the rest after it resumes, all in order; what is queued
    when the connection is closed politely is written before it closes."""

    async def main() -> None:
        conn = MqttConnection(lambda t, p: None, keepalive=0)
        transport = _SlowTransport(conn, room=mqttconn.WRITE_PIECE)
        conn.connection_made(transport)
        payloads = [bytes((i,)) * 65536 for i in range(40)]
        for payload in payloads:
            conn.publish("a/b", payload, qos=0)
        await asyncio.sleep(0)
        assert transport.writes == 1 and len(transport.written) <= 2 * mqttconn.WRITE_PIECE
        await asyncio.sleep(0)
        assert transport.writes == 1  # paused: nothing more
        transport.room = 1 << 30
        conn.resume_writing()
        whole = b"".join(b"\x30\x85\x80\x04\x00\x03a/b" + p for p in payloads)
        assert bytes(transport.written) == whole
        assert transport.writes > 2  # in pieces, not one join of everything

        conn.pause_writing()
        conn.publish("a/b", b"last", qos=0)
        conn.disconnect()
        assert bytes(transport.written) == whole + b"\x30\x09\x00\x03a/blast\xe0\x00"

    asyncio.run(main())


def test_a_short_publish_ends_the_connection() -> None:
    """A PUBLISH too short for its topic length or its packet ID: a typed end, no crash."""

    async def main() -> None:
        for packet in (b"\x30\x01\x00", b"\x30\x03\x00\x05a", b"\x32\x04\x00\x01ax"):
            conn = MqttConnection(lambda t, p: None, keepalive=0)
            transport = _Transport()
            conn.connection_made(transport)
            conn.data_received(packet)
            assert transport.aborted
            with pytest.raises(MqttError, match="short PUBLISH"):
                conn.closed.result()

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
