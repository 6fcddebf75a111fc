"""Issue 13's attacks, each tried again by a stranger on the factory network.

The stranger has a plain MQTT client and what anyone on the network has: the
broker's address, the device IDs it can guess or see, and the enrolment slots'
password (public by design: every impOS carries it). It has no cloud password,
no device's password or link key, and not the module maker's secret. Each test
sets up a real cloud with a fixture and DUTs (tests/test_cloud_flow.py's World),
lets the stranger try, and then proves from the cloud's own records that nothing
got in. Every test runs over Mosquitto and over the embedded broker.

"Nothing happened" is never shown by sleeping: the stranger ends with a barrier,
a registration of its own on its own slot. The cloud answers requests in the
order the broker hands them over, and the broker hands a client's messages over
in the order it sent them, so when the answer arrives the cloud has dealt with
everything the stranger sent before it, and the broker has delivered to the
stranger everything it was going to.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from pathlib import Path

import aiomqtt
import pytest
from aiomqtt.exceptions import MqttConnectError
from test_cloud_flow import OWNER, World, run, until

from impfactory.cloud import link
from impfactory.cloud.broker import MAX_PACKET
from impfactory.cloud.model import TokenKind
from impfactory.firmware.device import Device
from impfactory.firmware.errors import CloudClientError
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.fleet import Fleet
from impfactory.firmware.settings import MemoryStore, Settings
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linksec
from impfactory.tools.attacks import Stranger

# ---------------------------------------------------------------- logging in


def test_anonymous_and_borrowed_identities_are_refused(any_broker_url: str,
                                                       tmp_path: Path) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        s = Stranger(w.url)
        slot = "enrol-003"
        assert await s.refused("anyone")  # anonymous
        assert await s.refused("impcloud-x", "impcloud", "guess")  # the cloud's account
        assert await s.refused(fx.device_id, fx.device_id, "guess")  # a device's account
        assert await s.refused(slot, slot, "guess")
        assert not await s.refused(slot, slot, linksec.ENROL_PASSWORD)  # what it may do
        # (a slot's client ID is its name: Mosquitto renames any other, the embedded
        # broker refuses it; the takeover test below shows it takes no one's session)
        await fx.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


def test_a_devices_client_id_cannot_be_taken_to_knock_it_offline(any_broker_url: str,
                                                                 tmp_path: Path) -> None:
    async def test(w: World) -> None:
        dut = await w.running_dut(await w.fixture())
        s = Stranger(w.url)
        for username, password in ((None, None), (dut.device_id, "guess"),
                                   ("impcloud", "guess")):
            assert await s.refused(dut.device_id, username, password)
        # the one account the stranger has: Mosquitto lets it in under the slot's own
        # client ID, the embedded broker refuses it; either way the DUT keeps its session
        slot = "enrol-000"
        with contextlib.suppress(MqttConnectError):
            async with aiomqtt.Client(s.host, s.port, identifier=dut.device_id, username=slot,
                                      password=linksec.ENROL_PASSWORD, timeout=10):
                assert w.svc.send_to_device(dut.device_id, "while", 1)
                assert (await dut.expect(cl.DeviceMessage)).name == "while"
        # the DUT was never disconnected: still online, and still hears the cloud
        assert w.svc.get_device(dut.device_id).online
        assert w.svc.send_to_device(dut.device_id, "ping", 1)
        assert (await dut.expect(cl.DeviceMessage)).name == "ping"
        assert w.svc.get_device(dut.device_id).connection == "SERVER_CONNECTED"
        await dut.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


# ---------------------------------------------------------------- sniffing


def test_subscribing_to_everything_shows_no_factory_token(any_broker_url: str,
                                                          tmp_path: Path) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        dut = await w.device()  # registered now: a registration could take the stranger's slot
        s = Stranger(w.url)
        async with s.slot(sniff=("#", "imp/#", f"{cl.PREFIX}/+/down/#",
                                 f"{linksec.ENROL_PREFIX}/#")) as client:
            token = await fx.factory_token()
            welcome = await dut.hello(token.plan_id, token.token)
            assert welcome.plan_id == token.plan_id
            await s.barrier(client)
        assert s.others() == []
        everything = b"".join(payload for _, payload in s.received)
        assert token.token.encode() not in everything
        await fx.close()
        await dut.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


# ---------------------------------------------------------------- forged requests


def test_a_forged_bless_request_blesses_nothing(any_broker_url: str, tmp_path: Path) -> None:
    async def test(w: World) -> None:
        dut = await w.running_dut(await w.fixture())
        s = Stranger(w.url)
        async with s.slot(sniff=(cl.device_filter(dut.device_id),)) as client:
            await s.publish(client, cl.BlessRequest(dut.device_id, req=9, passed=True))
            await s.barrier(client)
        record = w.svc.get_device(dut.device_id)
        assert not record.blessed and record.group_id == w.f.dut_group.id
        assert not any("Blessed" in e.msg for e in w.svc.device_logs(dut.device_id))
        assert s.others() == []
        assert (await dut.bless(True)).blessed  # the DUT's own request still works
        await dut.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


def test_a_forged_factory_token_request_gets_no_token(any_broker_url: str,
                                                       tmp_path: Path) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        s = Stranger(w.url)
        def count() -> int:
            return w.svc.ctx.repos.tokens.count(TokenKind.FACTORY)

        async with s.slot(sniff=(cl.device_filter(fx.device_id),)) as client:
            await s.publish(client, cl.FactoryTokenRequest(fx.device_id, req=5))
            await s.barrier(client)
        assert count() == 0 and s.others() == []
        await fx.factory_token()  # the fixture's own request still works
        assert count() == 1
        await fx.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


def test_a_made_up_device_cannot_enrol_even_with_a_stolen_token(any_broker_url: str,
                                                                 tmp_path: Path) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        stolen = await fx.factory_token()  # say, read off the fixture's LED
        s = Stranger(w.url)
        made_up = "0c2a69" + secrets.token_hex(5)
        slot = "enrol-011"
        async with s.slot(slot) as client:
            nonce = await s.register(client, slot, made_up)
            theirs = await s.register(client, slot, fx.device_id)  # or a real device's ID
            await s.barrier(client, slot)
        for asked in (nonce, theirs):
            answer = s.answer(asked)
            assert answer is not None and not answer.ok and answer.code == "bad_proof"
        for password in ("guess", secrets.token_urlsafe(24)):
            assert await s.refused(made_up, made_up, password)
        assert w.svc.find_device(made_up) is None and w.svc.registrations(made_up) == 0
        stored = w.svc.get_token(stolen.token)
        assert stored is not None and stored.used_at is None
        # the real DUT the token was flashed to enrols with it; the fixture never noticed
        dut = await w.device()
        welcome = await dut.hello(stolen.plan_id, stolen.token)
        assert welcome.plan_id == stolen.plan_id
        assert (await dut.expect(cl.Assignment)).group_id == w.f.dut_group.id
        await fx.factory_token()
        await fx.close()
        await dut.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


def test_a_forged_hello_cannot_rewrite_a_blessed_device(any_broker_url: str,
                                                        tmp_path: Path) -> None:
    async def test(w: World) -> None:
        dut = await w.running_dut(await w.fixture())
        assert (await dut.bless(True)).blessed
        before = w.svc.get_device(dut.device_id)
        s = Stranger(w.url)
        async with s.slot() as client:
            await s.publish(client, cl.Hello(dut.device_id, req=1, mac="0badc0ffee00",
                                             impos_version="1.0"))
            await s.barrier(client)
        after = w.svc.get_device(dut.device_id)
        assert (after.mac, after.impos_version, after.blessed) == (
            before.mac, before.impos_version, True)
        # not even the device itself can move its MAC: it is the module's
        dut.mac = "0badc0ffee00"
        await dut.hello()
        assert w.svc.get_device(dut.device_id).mac == before.mac
        assert any("MAC 0badc0ffee00 ignored" in e.msg
                   for e in w.svc.device_logs(dut.device_id))
        await dut.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


def test_two_thousand_hellos_from_random_ids_create_nothing(any_broker_url: str,
                                                           tmp_path: Path) -> None:
    async def test(w: World) -> None:
        devices = w.svc.count_devices()
        links = w.svc.links.registered_modules()
        s = Stranger(w.url)
        slot = "enrol-020"
        async with s.slot(slot) as client:
            for _ in range(1000):  # hellos on random devices' topics, and registrations
                device_id = secrets.token_hex(8)
                await s.publish(client, cl.Hello(device_id, req=1, mac=device_id[4:]))
                await s.register(client, slot, device_id)
            await s.barrier(client, slot)
        stats = w.cloud.link.registrar.stats
        assert w.svc.count_devices() == devices
        assert w.svc.links.registered_modules() == links
        assert stats.registered == 0 and stats.refused + stats.throttled >= 1000
        assert stats.throttled > 0  # one slot's rate bounds what a flood costs the cloud

    run(test, any_broker_url, tmp_path / "cloud.db")


def test_a_never_enrolled_client_gets_no_firmware(any_broker_url: str, tmp_path: Path) -> None:
    async def test(w: World) -> None:
        dut = await w.running_dut(await w.fixture())
        firmware = w.f.dut_build.device_sha
        s = Stranger(w.url)
        nobody = secrets.token_hex(8)
        async with s.slot(sniff=(f"{cl.PREFIX}/+/down/#",)) as client:
            for device_id in (nobody, dut.device_id):
                await s.publish(client, cl.ChunkRequest(device_id, sha=firmware, blocks=(0,)))
            await s.barrier(client)
        assert s.others() == []
        # a real module, registered but never enrolled, is offered no code to fetch
        loner = await w.device()
        await loner.hello()
        ref = w.svc.images.ref(cl.ImageKind.DEVICE, w.f.dut_build.device_code.encode())
        await loner.send(cl.ChunkRequest(loner.device_id, sha=ref.sha, blocks=(0,)))
        refused = await loner.expect(cl.ErrorReply)
        assert refused.code is cl.ErrorCode.UNKNOWN_IMAGE and loner.images == {}
        await loner.close()
        await dut.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


# ---------------------------------------------------------------- forged offers


ATTACK_CODE = "# impfactory: python\nserver.log('attacker code runs')\n"


def test_forged_offers_never_make_an_imp_fetch_or_run_code(any_broker_url: str,
                                                           tmp_path: Path) -> None:
    """An emulated imp on its own account. The stranger's offers never reach it; even
    sent as the cloud (a broker that let anyone publish), unsealed, wrongly sealed or
    replayed from another session they are ignored and logged, never acted on."""
    async def test(w: World) -> None:
        fleet = Fleet(w.url)
        token = w.svc.create_development_token(OWNER)
        device: Device = fleet.add(store=MemoryStore(Settings(
            ssid="factory-wifi", password="factory-password", plan_id=token.plan_id,
            enrol_token=token.token)))
        device.power_on()
        await device.wait_for(DeviceEvent.ENROLLED, since=0)
        w.svc.assign_devices(w.f.fixture_group.id, [device.device_id])
        await device.wait_for(DeviceEvent.CODE_STARTED, since=0)
        deployment, runs = device.deployment, device.settings.code_sha
        image = cl.ImageRef(cl.ImageKind.DEVICE, "ab" * 32, len(ATTACK_CODE), 16384)
        offer = cl.CodeOffer(device.device_id, deployment="attack", sha="cd" * 32, device=image)
        def ignored(since: int) -> list[str]:
            return [r.detail for r in device.events[since:] if r.kind is DeviceEvent.IGNORED]

        def sentinel() -> None:
            """A bless answer nobody asked for, sealed by the cloud: the device reads it
            after anything the broker routed to it before, and ignores it too."""
            w.cloud.link.send(cl.BlessAnswer(device.device_id, req=424242, blessed=True))

        s = Stranger(w.url)
        seen = len(device.events)
        async with s.slot() as client:
            for msg in (offer, cl.Restart(device.device_id, reason="attack"),
                        cl.BlessAnswer(device.device_id, req=1, blessed=True)):
                await s.publish(client, msg)
            await s.barrier(client)
        sentinel()
        await until(lambda: len(ignored(seen)) >= 1)
        assert len(ignored(seen)) == 1 and "nothing asked" in ignored(seen)[0]  # none arrived
        # now as if the broker let anyone publish on the device's topics: the forgeries
        # go out on the cloud's own connection, unsealed or sealed wrongly
        key, session = w.svc.link_of(device.device_id)  # type: ignore[misc]
        forged = [
            cl.encode(offer),  # unsealed
            (lambda t, p: (t, linksec.seal(bytes(32), session or "", t, p)))(*cl.encode(offer)),
            (lambda t, p: (t, linksec.seal(key, "0" * 32, t, p)))(  # another session's
                *cl.encode(cl.Restart(device.device_id, reason="replayed"))),
            (lambda t, p: (t, linksec.seal(bytes(32), session or "", t, p)))(
                *cl.encode(cl.BlessAnswer(device.device_id, req=1, blessed=True))),
        ]
        seen = len(device.events)
        for topic, payload in forged:
            w.cloud.link._publish(topic, payload)
        sentinel()
        await until(lambda: len(ignored(seen)) == 5)
        whys = ignored(seen)
        assert sum("seal" in why for why in whys) == 4
        assert sum("nothing asked" in why for why in whys) == 1
        assert all(any(why in line for line in device.logs) for why in whys)
        kinds = [r.kind for r in device.events[seen:]]
        for acted in (DeviceEvent.CODE_STARTED, DeviceEvent.IMAGE_FAILED, DeviceEvent.OFFLINE,
                      DeviceEvent.BLESSED, DeviceEvent.POWERED_ON):
            assert acted not in kinds
        assert (device.deployment, device.settings.code_sha) == (deployment, runs)
        assert "attacker code runs" not in device.logs
        await fleet.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


# ---------------------------------------------------------------- bounds


def test_a_flooding_device_is_cut_to_its_rate_and_others_go_on(any_broker_url: str,
                                                              tmp_path: Path) -> None:
    """A device (its own account: a compromised module) sends log lines as fast as it
    can. The cloud stores no more than the device's burst and rate allow, says so once
    in the device's log, and answers another device at once meanwhile. The cloud's
    bounds are a tenth of the defaults, so that even a busy machine, delivering the
    flood slowly, delivers it faster than the rate."""
    flood, rate, burst = 1500, link.MESSAGE_RATE / 10, link.MESSAGE_BURST // 10

    async def test(w: World) -> None:
        fx = await w.fixture()
        dut = await w.running_dut(fx)
        stats = w.cloud.link.stats
        received, flooded = stats.received, stats.flooded
        started = time.monotonic()
        sending = asyncio.gather(*(dut.log(f"flood {i}") for i in range(flood)))
        await asyncio.wait_for(fx.factory_token(), 5)  # served while the flood arrives
        await sending

        def lines() -> list[str]:
            return [e.msg for e in w.svc.device_logs(dut.device_id, size=10 * flood)]

        def kept() -> int:
            return sum(line.startswith("flood ") for line in lines())

        await until(lambda: kept() + stats.flooded - flooded >= flood)  # all accounted for
        elapsed = time.monotonic() - started
        allowed = burst + rate * elapsed
        assert kept() <= allowed + 1 and kept() + stats.flooded - flooded == flood
        assert stats.received >= received + flood
        assert stats.flooded - flooded >= flood - allowed - 1 > 0, elapsed
        assert sum("flooding the cloud" in line for line in lines()) == 1
        await asyncio.sleep(10 / rate)  # the bucket refills: the device is served again
        assert (await dut.bless(True)).blessed
        await dut.close()
        await fx.close()

    run(test, any_broker_url, tmp_path / "cloud.db",
        cloud_options={"message_rate": rate, "message_burst": burst})


def test_an_oversized_message_is_refused_unread(any_broker_url: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    """A device sends a log line far over the link's limit. Mosquitto drops the
    connection at its packet limit (broker.MAX_PACKET) and the cloud never sees it;
    the embedded broker passes it on and the cloud refuses it unparsed. Nothing of it
    is stored either way, and the fixture is served meanwhile."""
    async def test(w: World) -> None:
        fx = await w.fixture()
        dut = await w.running_dut(fx)
        stats = w.cloud.link.stats
        received, bad = stats.received, stats.bad
        huge = b'{"v":1,"msg":"' + b"x" * (2 * MAX_PACKET) + b'"}'
        up_log = cl.topic(dut.device_id, cl.Direction.UP, "log")
        with contextlib.suppress(CloudClientError, TimeoutError):  # the broker cut it off
            await asyncio.wait_for(dut.send_raw(up_log, huge), 2)
        await fx.factory_token()
        if "mosquitto" in request.node.name:  # cut off: its will says goodbye for it
            await until(lambda: not w.svc.get_device(dut.device_id).online)
            assert stats.bad == bad and stats.received == received + 2  # bye, token request
        else:
            await until(lambda: stats.bad == bad + 1)
        assert not any(e.msg.startswith("xxxx") for e in w.svc.device_logs(dut.device_id))
        await dut.close(clean=False)
        await fx.close()

    run(test, any_broker_url, tmp_path / "cloud.db")
