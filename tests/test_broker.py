"""The broker starter: each kind really carries QoS 1 MQTT; bad specs are typed errors."""

from __future__ import annotations

import asyncio
import os
import socket

import aiomqtt
import pytest
from impfactory.cloud.broker import BrokerServer, find_mosquitto, parse_url, start_broker
from impfactory.cloud.errors import BrokerError
from impfactory.tools.plugin_broker import BROKER_KINDS

from impfactory.errors import ImpFactoryError

# CI installs Mosquitto (.ci/run); there its absence must fail, not quietly skip
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


async def _round_trip(url: str) -> bytes:
    host, port = parse_url(url)
    async with aiomqtt.Client(host, port) as client:
        await client.subscribe("t/#", qos=1)
        await client.publish("t/x", b"\x00payload\xff", qos=1)
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            return message.payload
    raise AssertionError("no message")


def test_any_broker_carries_messages(any_broker_url: str) -> None:
    assert any_broker_url.startswith("mqtt://127.0.0.1:")
    assert asyncio.run(asyncio.wait_for(_round_trip(any_broker_url), 10)) == b"\x00payload\xff"


@pytest.mark.parametrize("kind", ["embedded", "mosquitto"])
def test_started_broker_stops_and_frees_its_port(kind: str) -> None:
    if kind == "mosquitto" and not find_mosquitto() and not IN_CI:
        pytest.skip("mosquitto is not installed")
    server = BrokerServer(kind)
    url = server.start()
    host, port = parse_url(url)
    socket.create_connection((host, port), timeout=2).close()
    server.stop()
    server.stop()  # twice is harmless
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=0.5).close()


def test_async_context_manager_and_external_url() -> None:
    async def main() -> None:
        async with start_broker("embedded") as url:
            with BrokerServer(url) as same:  # an external broker: nothing started
                assert same == url
                assert await asyncio.wait_for(_round_trip(same), 10) == b"\x00payload\xff"

    asyncio.run(main())


@pytest.mark.parametrize(
    "spec", ["rabbit", "http://127.0.0.1:1", "mqtt://", "mqtt://127.0.0.1:notaport"]
)
def test_bad_specs_are_typed_errors(spec: str) -> None:
    with pytest.raises(BrokerError) as caught:
        BrokerServer(spec).start()
    assert isinstance(caught.value, ImpFactoryError)


def test_nothing_listening_is_a_typed_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BrokerError, match="no broker answers"):
        BrokerServer(f"mqtt://127.0.0.1:{port}").start()


def test_mosquitto_config_turns_nagle_off() -> None:
    """Without ``set_tcp_nodelay`` each small answer waits ~40 ms (Nagle + delayed ACK);
    the broker fixtures starting at all prove this Mosquitto accepts the option."""
    from impfactory.cloud.broker import MOSQUITTO_CONF

    assert "set_tcp_nodelay true" in MOSQUITTO_CONF.splitlines()


def test_cloud_mqtt_socket_has_nagle_off(any_broker_url: str) -> None:
    from impfactory.cloud.mqtt import AsyncMqtt

    async def main() -> int:
        conn = AsyncMqtt(any_broker_url, "nodelay-probe", lambda topic, payload: None)
        await conn.connect()
        try:
            sock = conn.client.socket()
            assert isinstance(sock, socket.socket)
            return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            await conn.disconnect()

    assert asyncio.run(asyncio.wait_for(main(), 10)) != 0


@pytest.mark.skipif(not IN_CI, reason="outside CI, Mosquitto is optional")
def test_ci_runs_every_broker_test_over_mosquitto_too() -> None:
    """``any_broker_url`` drops its Mosquitto run when Mosquitto is missing; CI has it."""
    assert find_mosquitto() and BROKER_KINDS == ["mosquitto", "embedded"]
