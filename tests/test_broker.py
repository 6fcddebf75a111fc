"""The broker starter: each kind really carries QoS 1 MQTT; bad specs are typed errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from impfactory.brokerurl import parse_url, safe_url
from impfactory.cloud.broker import BrokerServer, find_mosquitto, start_broker
from impfactory.cloud.brokersec import (
    ACCOUNTS_TOPIC,
    RESPONSE_TOPIC,
    BrokerAccess,
    access_for,
    password_line,
)
from impfactory.cloud.errors import BrokerError
from impfactory.errors import ImpFactoryError
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linksec
from impfactory.tools.plugin_broker import BROKER_KINDS

# CI installs Mosquitto (.ci/run); there its absence must fail, not quietly skip
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


DEVICE, PASSWORD = "0123456789abcdef", "a-password-for-the-round-trip"


async def _first(client: aiomqtt.Client) -> aiomqtt.Message:
    async for message in client.messages:
        return message
    raise AssertionError("no message")


async def _round_trip(url: str) -> bytes:
    """The cloud makes a device account over the broker's control topic, then sends
    that device a message it receives: accounts and delivery both work."""
    host, port = parse_url(url)
    access = access_for(url)
    device, password = DEVICE, PASSWORD
    async with aiomqtt.Client(host, port, identifier="impcloud-probe",
                              username=access.username, password=access.password) as cloud:
        await cloud.subscribe(RESPONSE_TOPIC, qos=1)
        command = {"command": "createClient", "username": device, "password": password,
                   "clientid": device}
        await cloud.publish(ACCOUNTS_TOPIC, json.dumps({"commands": [command]}), qos=1)
        answer = json.loads((await _first(cloud)).payload)  # type: ignore[arg-type]
        assert answer["responses"][0].get("error") in (None, "Client already exists")
        async with aiomqtt.Client(host, port, identifier=device, username=device,
                                  password=password) as dev:
            await dev.subscribe(cl.device_filter(device), qos=1)
            await cloud.publish(f"{cl.PREFIX}/{device}/down/x", b"\x00payload\xff", qos=1)
            payload = (await _first(dev)).payload
            assert isinstance(payload, bytes)
            return payload


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
        access = access_for(any_broker_url)
        conn = AsyncMqtt(any_broker_url, "nodelay-probe", lambda topic, payload: None,
                         username=access.username, password=access.password)
        await conn.connect()
        try:
            sock = conn.socket()
            assert sock is not None
            nodelay: int = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            return nodelay
        finally:
            await conn.disconnect()

    assert asyncio.run(asyncio.wait_for(main(), 10)) != 0


@pytest.mark.skipif(not IN_CI, reason="outside CI, Mosquitto is optional")
def test_ci_runs_every_broker_test_over_mosquitto_too() -> None:
    """``any_broker_url`` drops its Mosquitto run when Mosquitto is missing; CI has it."""
    assert find_mosquitto() and BROKER_KINDS == ["mosquitto", "embedded"]


def test_cloud_credentials_travel_in_the_url_and_never_in_logs() -> None:
    plain = "mqtt://127.0.0.1:1883"
    access = BrokerAccess(plain, "impcloud", "p@ss:word/")
    assert access_for(access.cloud_url) == access
    assert "p@ss" not in safe_url(access.cloud_url) and "***" in safe_url(access.cloud_url)
    assert not access_for("mqtt://127.0.0.1:1").secured  # nobody's broker: an open one


def test_an_outside_brokers_credentials_are_given_once(any_broker_url: str) -> None:
    """``BrokerServer("mqtt://user:password@H:P")``: clouds in this process then find
    the credentials from the plain URL devices use (as the pytest plugin passes it)."""
    access = access_for(any_broker_url)
    port = parse_url(any_broker_url)[1]
    # the same broker under another name: nothing is known about it there yet
    outside = f"mqtt://{access.username}:{access.password}@localhost:{port}"
    assert not access_for(f"mqtt://localhost:{port}").secured
    with BrokerServer(outside) as url:
        assert url == f"mqtt://localhost:{port}"
        assert access_for(url) == BrokerAccess(url, access.username, access.password)
        assert asyncio.run(asyncio.wait_for(_round_trip(url), 10)) == b"\x00payload\xff"


@pytest.mark.parametrize("kind", ["embedded", "mosquitto"])
def test_a_broker_restarted_in_place_keeps_its_accounts(kind: str) -> None:
    if kind == "mosquitto" and not find_mosquitto() and not IN_CI:
        pytest.skip("mosquitto is not installed")
    first = BrokerServer(kind)
    url = first.start()
    asyncio.run(asyncio.wait_for(_round_trip(url), 10))  # makes the device's account
    first.stop()
    second = BrokerServer(kind, port=parse_url(url)[1])
    try:
        assert second.start() == url and second.cloud_url == first.cloud_url

        async def device_logs_in() -> None:
            host, port = parse_url(url)
            async with aiomqtt.Client(host, port, identifier=DEVICE, username=DEVICE,
                                      password=PASSWORD):
                pass

        asyncio.run(asyncio.wait_for(device_logs_in(), 10))
    finally:
        second.stop()


def test_an_answered_account_is_live_though_mosquitto_drops_a_reload_signal() -> None:
    """Mosquitto 2.0.11 drops a SIGHUP that arrives while it reloads (it clears its
    reload flag afterwards). Under load a batch's signal landed in the previous
    batch's reload now and then: the account was answered, the device's login
    refused. Here the batch's first SIGHUP goes astray the same way (to a process
    that is not Mosquitto): the agent's probe login is refused, it signals again,
    and only then answers."""
    if not find_mosquitto() and not IN_CI:
        pytest.skip("mosquitto is not installed")
    server = BrokerServer("mosquitto")
    url = server.start()
    decoy = subprocess.Popen(["sleep", "30"])  # SIGHUP ends it; Mosquitto reloads nothing
    try:
        agent = server._agent
        mosquitto, astray = agent.pid, iter([decoy.pid])
        agent.pid = lambda: next(astray, None) or mosquitto()
        assert asyncio.run(asyncio.wait_for(_round_trip(url), 10)) == b"\x00payload\xff"
        assert agent.resent == 1 and decoy.wait(5) == -signal.SIGHUP
    finally:
        decoy.kill()
        decoy.wait()
        server.stop()


def test_account_rules_of_the_embedded_broker() -> None:
    from impfactory.cloud.broker_embedded import AccountTable, may

    table = AccountTable("cloud-secret")
    slot, enrol = "enrol-007", linksec.ENROL_PASSWORD
    assert table.authenticate(slot, enrol, slot) == "slot"
    assert table.authenticate(slot, enrol, linksec.slot_client_id(slot, "ab" * 16)) == "slot"
    for clientid in ("enrol-008-x", DEVICE, "impcloud-1", "enrol-0070"):
        assert table.authenticate(slot, enrol, clientid) is None, clientid
    assert table.authenticate("impcloud", "cloud-secret", "impcloud-anything") == "cloud"
    assert table.authenticate("impcloud", "wrong", "impcloud-x") is None
    assert table.create(DEVICE, PASSWORD, DEVICE) is None
    assert table.create(DEVICE, PASSWORD, DEVICE) == "Client already exists"
    assert table.authenticate(DEVICE, PASSWORD, DEVICE) == "device"
    assert table.authenticate(DEVICE, PASSWORD, "0123456789abcdee") is None
    assert table.create("enrol-000", "x", None) is not None  # only devices are made
    assert may("device", DEVICE, f"imp/1/d/{DEVICE}/down/#", publish=False)
    assert not may("device", DEVICE, "imp/1/d/+/down/#", publish=False)
    assert not may("device", DEVICE, "#", publish=False)
    assert not may("device", DEVICE, f"imp/1/d/{DEVICE}/down/welcome", publish=True)
    assert may("cloud", "impcloud", "imp/1/d/+/up/#", publish=False)
    assert not may("cloud", "impcloud", "imp/1/d/+/up/#", publish=True)
    assert not may(None, None, "imp/1/d/+/up/#", publish=False)


def test_the_password_file_keeps_its_devices(tmp_path: Path) -> None:
    from impfactory.cloud.broker_accounts import AccountFile

    path = tmp_path / "passwords"
    accounts = AccountFile(path, {"impcloud": password_line("impcloud", "x")})
    assert accounts.apply({"command": "setClientPassword", "username": DEVICE,
                           "password": "p"}) == "Client not found"
    assert accounts.apply({"command": "createClient", "username": DEVICE, "password": "p"}) is None
    assert accounts.apply({"command": "createClient", "username": DEVICE,
                           "password": "p"}) == "Client already exists"
    assert accounts.apply({"command": "createClient", "username": "impcloud",
                           "password": "p"}) == "Only device accounts can be changed"
    accounts.write()
    lines = path.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["impcloud", DEVICE]
    assert all(line.split(":", 1)[1].startswith("$7$1$") for line in lines)
    assert AccountFile(path, {}).devices == accounts.devices  # a broker restarted in place
    assert accounts.apply({"command": "deleteClient", "username": DEVICE}) is None
    assert accounts.count == 1


def test_two_clouds_never_take_each_others_account_answers() -> None:
    """Every cloud of a group hears every account answer (docs/scale.md): an answer to
    one cloud's command completes that command only, never the other cloud's, which
    would tell a device ``ok`` before its account exists."""
    from impfactory.cloud.brokeradmin import BrokerAdmin

    async def run() -> None:
        commands: dict[int, dict[str, str]] = {}

        def publisher(n: int) -> Callable[[str, bytes], None]:
            return lambda topic, body: commands.__setitem__(n, json.loads(body)["commands"][0])

        access = BrokerAccess.from_url("mqtt://impcloud:pw@127.0.0.1:9")
        admins = [BrokerAdmin(access, publisher(n)) for n in (0, 1)]
        tasks = [asyncio.create_task(admin.set_device(f"dev{n}", "pw"))
                 for n, admin in enumerate(admins)]
        await asyncio.sleep(0)
        assert set(commands) == {0, 1}
        for n in (0, 1):
            answer = {"responses": [{"command": "createClient",
                                     "correlationData": commands[n]["correlationData"]}]}
            for admin in admins:  # the broker's answer reaches both clouds
                admin.on_response(json.dumps(answer).encode())
            await asyncio.sleep(0.01)
            assert [task.done() for task in tasks] == [True, n == 1]
        await asyncio.gather(*tasks)

    asyncio.run(run())


def _queued_then_connected(url: str, group: str, count: int) -> list[bytes]:
    """``count`` QoS 1 messages published on a cloud connection before it connects, to a
    topic it reads itself (on Mosquitto a cloud account's client ID is its name: a
    second connection would take the first one's session); what it hears, in order."""
    from impfactory.cloud import agent_relay
    from impfactory.cloud.mqtt import AsyncMqtt

    async def main() -> list[bytes]:
        access = access_for(url)
        got: list[bytes] = []
        heard = asyncio.Event()

        def note(topic: str, payload: bytes) -> None:
            got.append(payload)
            if len(got) == count:
                heard.set()

        conn = AsyncMqtt(url, f"{group}-probe", note,
                         username=access.username, password=access.password)
        topic = agent_relay.topic(group)  # a topic clouds both write and read
        conn.subscribe(topic, cl.QOS)
        for i in range(count):  # all before the connection is up
            conn.publish(topic, str(i).encode(), cl.QOS)
        await conn.connect()
        try:
            await asyncio.wait_for(heard.wait(), 30)
            return got
        finally:
            await conn.disconnect()

    return asyncio.run(main())


def test_the_cloud_connection_sends_in_order_what_was_published_before_it_was_up(
        any_broker_url: str) -> None:
    """``AsyncMqtt.publish`` only queues: what the cloud publishes while its connection
    is down (not yet up, or lost) leaves in order once it is up, as paho's queue did."""
    assert _queued_then_connected(any_broker_url, "queue", 20) == [
        str(i).encode() for i in range(20)]


def test_more_messages_than_mqtt_has_packet_ids_leave_in_order(broker_url: str) -> None:
    """70,000 QoS 1 messages queued at once: 65,535 packet IDs can wait for a PUBACK, the
    rest leave as acknowledgements free IDs, in order (and without a scan of the ID
    space per message: that took 39 s here, this takes about 1.5 s)."""
    assert _queued_then_connected(broker_url, "many", 70_000) == [
        str(i).encode() for i in range(70_000)]


def test_a_killed_owner_leaves_mosquittos_files_in_its_home_not_in_tmp(tmp_path: Path) -> None:
    """A process killed before it stops its broker (the crash drill kills clouds with
    SIGKILL) removes nothing: with a ``home`` (``cloud serve`` keeps one beside its
    database), Mosquitto's configuration and log are written there, so a kill leaves
    no directory behind in the system's temporary directory (the suite left two a run
    there before)."""
    if not find_mosquitto() and not IN_CI:
        pytest.skip("mosquitto is not installed")
    home = tmp_path / "broker"
    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("impfactory-mosquitto-*"))
    owner = ("import pathlib, sys, time\n"
             "from impfactory.cloud.broker import BrokerServer\n"
             "print(BrokerServer('mosquitto', home=pathlib.Path(sys.argv[1])).start(), "
             "flush=True)\n"
             "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", owner, str(home)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("mqtt://")
    finally:
        proc.kill()
        proc.wait()
    ours = [d for d in set(tmp.glob("impfactory-mosquitto-*")) - before
            if str(home) in _text(d / "mosquitto.conf")]
    assert ours == []
    assert {"mosquitto.conf", "mosquitto.log"} <= {p.name for p in (home / "mosquitto").iterdir()}


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
