"""The factory flow rules, each proven over a real broker (Mosquitto and embedded).

Every test starts its own cloud on its own database in tmp_path, on the session's
broker of each kind, and drives it with scripted fake devices that know only the
wire protocol. The cloud under test and the devices share the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from impfactory.brokerurl import parse_url
from impfactory.cloud.broker import BrokerServer, find_mosquitto
from impfactory.cloud.errors import ForbiddenError, InvalidError
from impfactory.cloud.fakedevice import FakeDevice, FakeDeviceRefused
from impfactory.cloud.model import GroupType
from impfactory.cloud.scenario import AGENT_CODE, APP_CODE, DUT_CODE, FactorySetup, make_factory
from impfactory.cloud.server import Cloud
from impfactory.cloud.service import CloudService
from impfactory.protocol import cloudlink as cl

OWNER = "owner-1"
BROKER_KINDS = [*(["mosquitto"] if find_mosquitto() else []), "embedded"]


class World:
    """A cloud with a factory set up, and helpers to bring devices to it."""

    def __init__(self, cloud: Cloud, setup: FactorySetup, url: str) -> None:
        self.cloud = cloud
        self.svc: CloudService = cloud.service
        self.f = setup
        self.url = url

    async def device(self, **kw: object) -> FakeDevice:
        dev = FakeDevice(self.url, **kw)  # type: ignore[arg-type]
        await dev.connect()
        return dev

    async def fixture(self, group_id: str | None = None) -> FakeDevice:
        """A fixture: developer BlinkUp, assigned to the fixture group, running its code.

        Its ``imp.configparams`` are those FactoryTools reads to know it is the
        fixture: factory firmware, and ``factory_imp`` its own MAC.
        """
        fx = await self.device()
        token = self.svc.create_development_token(OWNER)
        await fx.hello(token.plan_id, token.token)
        self.svc.assign_devices(group_id or self.f.fixture_group.id, [fx.device_id])
        params = await fx.expect(cl.ConfigParams)
        if not params.params:  # the unassigned device's, from its hello
            params = await fx.expect(cl.ConfigParams)
        assert params.params["factoryfirmware"] is True
        assert params.params["factory_imp"] == self.svc.get_device(fx.device_id).mac
        await fx.run(await fx.expect(cl.CodeOffer))
        return fx

    async def dut(self, fixture: FakeDevice, **kw: object) -> tuple[FakeDevice, cl.Welcome]:
        """A DUT after factory BlinkUp from ``fixture``: enrolled, not yet running code."""
        token = await fixture.factory_token()
        dut = await self.device(**kw)
        welcome = await dut.hello(token.plan_id, token.token)
        return dut, welcome

    async def running_dut(self, fixture: FakeDevice) -> FakeDevice:
        """A DUT enrolled by ``fixture`` and running its DUT firmware; nothing left unread."""
        dut, _ = await self.dut(fixture)
        await dut.expect(cl.Assignment)
        await dut.expect(cl.ConfigParams)
        await dut.run(await dut.expect(cl.CodeOffer))
        assert not dut.unread, dut.unread
        return dut


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def run(test: Callable[[World], Awaitable[None]], url: str, db: Path,
        cloud_options: dict[str, Any] | None = None, **setup: object) -> None:
    async def main() -> None:
        async with Cloud(db, url, **(cloud_options or {})) as cloud:
            cloud.service.ensure_owner(OWNER)
            world = World(cloud, make_factory(cloud.service, OWNER, **setup), url)  # type: ignore[arg-type]
            await asyncio.wait_for(test(world), 60)

    asyncio.run(main())


# ---------------------------------------------------------------- factory token


def test_only_a_fixture_gets_a_factory_token(any_broker_url: str, tmp_path: Path) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        token = await fx.factory_token()
        stored = w.svc.get_token(token.token)
        assert stored is not None and stored.fixture_id == fx.device_id
        assert stored.plan_id == token.plan_id == w.svc.owner(OWNER).plan_id

        dev = await w.device()  # a development device asking
        dev_token = w.svc.create_development_token(OWNER)
        await dev.hello(dev_token.plan_id, dev_token.token)
        dev_group = w.svc.create_group(w.f.product.id, GroupType.DEVELOPMENT, "dev")
        w.svc.assign_devices(dev_group.id, [dev.device_id])
        stranger = await w.device()  # unknown to everyone
        await stranger.hello()
        for asker in (dev, stranger):
            with pytest.raises(FakeDeviceRefused) as refused:
                await asker.factory_token()
            assert refused.value.reply.code is cl.ErrorCode.NOT_FACTORY
            assert refused.value.reply.message == cl.FACTORY_REFUSED_LOG
            logs = [e.msg for e in w.svc.device_logs(asker.device_id)]
            assert cl.FACTORY_REFUSED_LOG in logs
        await fx.close()
        await dev.close()
        await stranger.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


# ---------------------------------------------------------------- enrolment


def test_dut_enrols_into_the_dut_target_of_that_moment(any_broker_url: str,
                                                        tmp_path: Path) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        other_dut = w.svc.create_group(w.f.product.id, GroupType.PRE_DUT, "second DUT group")
        other_build = w.svc.create_deployment(other_dut.id, "// second DUT firmware")
        w.svc.update_group(w.f.fixture_group.id, dut_target=other_dut.id)
        dut, welcome = await w.dut(fx)
        assert welcome.plan_id == w.svc.owner(OWNER).plan_id and not welcome.blessed
        assignment = await dut.expect(cl.Assignment)
        assert assignment.group_id == other_dut.id
        assert assignment.group_type == "pre_dut_devicegroup"
        params = await dut.expect(cl.ConfigParams)
        fixture_record = w.svc.get_device(fx.device_id)
        # as FactoryTools reads them: factory firmware, and the fixture's MAC
        assert params.params == {
            "factoryfirmware": True,
            "factory_imp": fixture_record.mac,
            "factory_imp_device_id": fx.device_id,
        }
        offer = await dut.expect(cl.CodeOffer)
        assert offer.deployment == other_build.id
        assert await dut.run(offer) == "// second DUT firmware"
        await until(lambda: w.svc.get_device(dut.device_id).deployment_id == other_build.id)
        record = w.svc.get_device(dut.device_id)
        assert record.group_id == other_dut.id and record.deployment_id == other_build.id
        assert record.fixture_id == fx.device_id and record.owner_id == OWNER

        # the target change applies from now on: an earlier DUT stays where it was put
        w.svc.update_group(w.f.fixture_group.id, dut_target=w.f.dut_group.id)
        dut2, _ = await w.dut(fx)
        assert (await dut2.expect(cl.Assignment)).group_id == w.f.dut_group.id
        assert w.svc.get_device(dut.device_id).group_id == other_dut.id
        for d in (fx, dut, dut2):
            await d.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


def test_tokens_are_single_use_expiring_and_unforgeable(any_broker_url: str,
                                                         tmp_path: Path) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        token = await fx.factory_token()
        first = await w.device()
        await first.hello(token.plan_id, token.token)
        await first.hello(token.plan_id, token.token)  # its own token again: still fine
        second = await w.device()
        with pytest.raises(FakeDeviceRefused) as used:
            await second.hello(token.plan_id, token.token)
        assert used.value.reply.code is cl.ErrorCode.TOKEN_USED
        with pytest.raises(FakeDeviceRefused) as forged:
            await second.hello(token.plan_id, "0123456789abcdef")
        assert forged.value.reply.code is cl.ErrorCode.TOKEN_INVALID
        fresh = await fx.factory_token()
        with pytest.raises(FakeDeviceRefused) as wrong_plan:
            await second.hello("fedcba9876543210", fresh.token)
        assert wrong_plan.value.reply.code is cl.ErrorCode.TOKEN_INVALID
        real_now = w.svc.now
        w.svc.now = lambda: real_now() + w.svc.factory_token_ttl + 1
        with pytest.raises(FakeDeviceRefused) as expired:
            await second.hello(fresh.plan_id, fresh.token)
        assert expired.value.reply.code is cl.ErrorCode.TOKEN_EXPIRED
        w.svc.now = real_now
        refused_device = w.svc.find_device(second.device_id)
        assert refused_device is None or refused_device.group_id is None
        assert any("Enrolment refused" in e.msg for e in w.svc.device_logs(second.device_id))
        for d in (fx, first, second):
            await d.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


# ---------------------------------------------------------------- blessing


def test_bless_moves_to_the_production_target_of_that_moment(any_broker_url: str,
                                                              tmp_path: Path) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        dut = await w.running_dut(fx)
        later = w.svc.create_group(w.f.product.id, GroupType.PRE_PRODUCTION, "region 2")
        region2_app = w.svc.create_deployment(later.id, "// region 2 app")
        w.svc.update_group(w.f.fixture_group.id, production_target=later.id)

        answer = await dut.bless(True, attempt="a1" * 8)
        assert answer.blessed
        assignment = await dut.expect(cl.Assignment)
        assert assignment.group_id == later.id and assignment.blessed
        assert (await dut.expect(cl.ConfigParams)).params == {}
        offer = await dut.expect(cl.CodeOffer)  # load_code_after_blessing defaults to true
        assert offer.deployment == region2_app.id
        assert await dut.run(offer) == "// region 2 app"
        record = w.svc.get_device(dut.device_id)
        assert record.blessed and record.group_id == later.id

        again = await dut.bless(True)
        assert not again.blessed and again.reason == "already blessed"
        assert not (await dut.bless(True, attempt="b2" * 8)).blessed
        # the answer to the blessing call was lost (a crash): asked again, the same answer
        # and the same assignment, but one blessing, one webhook, one log line
        assert (await dut.bless(True, attempt="a1" * 8)).blessed
        assert (await dut.expect(cl.Assignment)).group_id == later.id
        assert w.svc.get_device(dut.device_id).group_id == later.id
        assert sum(e.msg.startswith("Blessed:") for e in w.svc.device_logs(dut.device_id)) == 1

        failing = await w.running_dut(fx)
        no = await failing.bless(False)
        assert not no.blessed
        record = w.svc.get_device(failing.device_id)
        assert not record.blessed and record.bless_failures == 1
        assert record.group_id == w.f.dut_group.id
        await failing.expect_nothing(cl.Assignment)
        for d in (fx, dut, failing):
            await d.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


def test_application_code_waits_for_the_first_end_user_blinkup(any_broker_url: str,
                                                               tmp_path: Path) -> None:
    async def test(w: World) -> None:
        hook = w.svc.create_webhook(w.f.production_group.id, "blessing", "http://127.0.0.1:9/h")
        w.svc.create_webhook(w.f.production_group.id, "blinkup", "http://127.0.0.1:9/b")
        fx = await w.fixture()
        dut = await w.running_dut(fx)
        assert (await dut.bless(True)).blessed
        assert (await dut.expect(cl.Assignment)).group_id == w.f.production_group.id
        await dut.expect_nothing(cl.CodeOffer)
        await dut.close()

        shipped = FakeDevice(w.url, dut.device_id, mac=dut.mac)
        shipped.deployment = dut.deployment
        await shipped.connect()
        await shipped.hello()  # reconnecting without a BlinkUp: still no application
        await shipped.expect_nothing(cl.CodeOffer)
        end_user = w.svc.create_production_token(OWNER)
        welcome = await shipped.hello(end_user.plan_id, end_user.token)
        assert welcome.plan_id == end_user.plan_id and welcome.blessed
        offer = await shipped.expect(cl.CodeOffer)
        assert await shipped.run(offer) == APP_CODE
        events = [(d.webhook_id, d.event, d.payload["device_id"])
                  for d in w.svc.pending_webhooks()]
        assert (hook.id, "blessing", dut.device_id) in events
        [blinkup] = [d.payload for d in w.svc.pending_webhooks() if d.event == "blinkup"]
        assert blinkup["plan_id"] == end_user.plan_id and blinkup["token"] == end_user.token
        await shipped.close()
        await fx.close()

    run(test, any_broker_url, tmp_path / "cloud.db", load_code_after_blessing=False)


# ---------------------------------------------------------------- zones and groups


def test_production_zone_rules(any_broker_url: str, tmp_path: Path) -> None:
    async def test(w: World) -> None:
        f = w.f
        assert f.production_group.type is GroupType.PRODUCTION
        fx = await w.fixture()
        dut = await w.running_dut(fx)
        with pytest.raises(ForbiddenError):  # nobody assigns to a production group by hand
            w.svc.assign_devices(f.production_group.id, [dut.device_id])
        assert (await dut.bless(True)).blessed
        assert w.svc.get_device(dut.device_id).blessed_at is not None
        assert (await dut.expect(cl.Assignment)).group_id == f.production_group.id
        await dut.expect(cl.ConfigParams)
        await dut.run(await dut.expect(cl.CodeOffer))

        other = w.svc.create_group(f.product.id, GroupType.PRODUCTION, "second production")
        w.svc.create_deployment(other.id, APP_CODE, AGENT_CODE)  # any code: accepted
        w.svc.assign_devices(other.id, [dut.device_id])  # production -> production: allowed
        moved = await dut.expect(cl.Assignment)
        assert moved.group_id == other.id and moved.blessed
        offer = await dut.expect(cl.CodeOffer)
        assert offer.deployment == w.svc.get_group(other.id).current_deployment

        second_product = w.svc.create_product(OWNER, "Other product")
        foreign = w.svc.create_group(second_product.id, GroupType.DEVELOPMENT, "foreign dev")
        with pytest.raises(ForbiddenError):
            w.svc.assign_devices(foreign.id, [dut.device_id])
        with pytest.raises(ForbiddenError):
            w.svc.unassign_devices([dut.device_id])
        with pytest.raises(ForbiddenError):
            w.svc.unassign_devices([dut.device_id], unbond_key="wrong")
        w.svc.unassign_devices([dut.device_id], unbond_key=w.svc.owner(OWNER).unbond_key)
        record = w.svc.get_device(dut.device_id)  # unbonded: no longer blessed, nor when
        assert record.group_id is None and not record.blessed and record.blessed_at is None
        assert (await dut.expect(cl.Assignment)).group_id is None
        await dut.close()
        await fx.close()

    run(test, any_broker_url, tmp_path / "cloud.db", zone="production")



def test_a_production_device_moved_while_offline_gets_the_code_at_next_connection(
        any_broker_url: str, tmp_path: Path) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        dut = await w.running_dut(fx)
        assert (await dut.bless(True)).blessed
        await dut.expect(cl.Assignment)
        first_app = await dut.expect(cl.CodeOffer)
        await dut.run(first_app)
        await dut.close()
        await until(lambda: not w.svc.get_device(dut.device_id).online)

        other = w.svc.create_group(w.f.product.id, GroupType.PRE_PRODUCTION, "second line")
        second_app = w.svc.create_deployment(other.id, "// second line app")
        w.svc.assign_devices(other.id, [dut.device_id])  # nobody online to tell
        back = FakeDevice(w.url, dut.device_id, mac=dut.mac)
        back.deployment = first_app.deployment
        await back.connect()
        welcome = await back.hello()
        assert welcome.blessed
        assert (await back.expect(cl.Assignment)).group_id == other.id
        offer = await back.expect(cl.CodeOffer)
        assert offer.deployment == second_app.id != first_app.deployment
        assert await back.run(offer) == "// second line app"
        await back.close()
        await fx.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


def test_a_group_can_require_a_newer_impos_than_its_product(any_broker_url: str,
                                                             tmp_path: Path) -> None:
    async def test(w: World) -> None:
        w.svc.add_impos_release("44.0", size=4096)
        fx = await w.fixture()
        w.svc.update_group(w.f.dut_group.id, min_impos_version="44.0")
        dut, _ = await w.dut(fx, impos_version="43.9")
        offer = await dut.expect(cl.OsOffer)
        assert offer.version == "44.0"
        await dut.expect_nothing(cl.CodeOffer)
        await dut.install(offer)
        await dut.hello()
        assert await dut.run(await dut.expect(cl.CodeOffer)) == DUT_CODE
        await dut.close()
        await fx.close()

    run(test, any_broker_url, tmp_path / "cloud.db")

def test_dut_firmware_is_the_dut_groups_deployment(any_broker_url: str, tmp_path: Path) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        dut, _ = await w.dut(fx)
        assert await dut.run(await dut.expect(cl.CodeOffer)) == DUT_CODE
        await fx.close()
        await dut.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


# ---------------------------------------------------------------- restarts


def test_restart_and_conditional_restart(any_broker_url: str, tmp_path: Path) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        old_build = w.f.dut_build
        old_dut = await w.running_dut(fx)  # runs the older build
        new_build = w.svc.create_deployment(w.f.dut_group.id, "// DUT firmware v2")
        new_dut = await w.running_dut(fx)  # enrolled after the new deployment: runs it
        assert old_dut.deployment == old_build.id and new_dut.deployment == new_build.id
        offline = await w.running_dut(fx)
        await offline.close()
        await until(lambda: not w.svc.get_device(offline.device_id).online)

        assert w.svc.restart_group(w.f.dut_group.id) == 2
        for dut in (old_dut, new_dut):
            assert (await dut.expect(cl.Restart)).reason == "restart"

        w.svc.set_min_supported_deployment(w.f.dut_group.id, new_build.id)
        assert w.svc.restart_group(w.f.dut_group.id, conditional=True) == 2
        notice = await new_dut.expect(cl.ShutdownNotice)
        assert notice.reason is cl.ShutdownReason.NEWSQUIRREL
        assert (await old_dut.expect(cl.Restart)).reason == "conditional"
        await new_dut.expect_nothing(cl.Restart)
        await old_dut.expect_nothing(cl.ShutdownNotice)

        # the restarted old device says hello again and gets the new code
        await old_dut.hello()
        offer = await old_dut.expect(cl.CodeOffer)
        assert offer.deployment == new_build.id
        # the offline device gets it when it next connects
        back = FakeDevice(w.url, offline.device_id, mac=offline.mac)
        back.deployment = old_build.id
        await back.connect()
        await back.hello()
        assert (await back.expect(cl.CodeOffer)).deployment == new_build.id
        assert w.svc.restart_device(offline.device_id) == 1
        assert (await back.expect(cl.Restart)).reason == "restart"
        for d in (fx, old_dut, new_dut, back):
            await d.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


# ---------------------------------------------------------------- impOS and delivery


def test_old_impos_is_updated_before_the_dut_firmware(any_broker_url: str,
                                                      tmp_path: Path) -> None:
    async def test(w: World) -> None:
        release = w.svc.add_impos_release("43.1")  # 1 MiB by default
        w.svc.add_impos_release("41.0", size=4096)
        fx = await w.fixture()  # set up before the product asked for a newer impOS
        w.svc.update_product(w.f.product.id, min_impos_version="43.0")
        dut, _ = await w.dut(fx, impos_version="42.9")
        await dut.expect(cl.Assignment)
        await dut.expect(cl.ConfigParams)
        offer = await dut.expect(cl.OsOffer)
        assert offer.version == "43.1" and offer.image.size == release.size == 1 << 20
        assert offer.image.total == (1 << 20) // cl.DEFAULT_CHUNK_SIZE > 1
        await dut.expect_nothing(cl.CodeOffer)

        # resumable: fetch part, lose the link, reconnect, fetch only the rest
        half = frozenset(range(offer.image.total // 2, offer.image.total))
        assert await dut.fetch(offer.image, skip=half) == b""
        await dut.close(clean=False)
        await dut.connect()
        asked: list[int] = []
        send = dut.send

        async def recording(msg: cl.Message) -> None:
            if isinstance(msg, cl.ChunkRequest):
                asked.extend(msg.blocks)
            await send(msg)

        dut.send = recording  # type: ignore[method-assign]
        await dut.install(offer)
        assert sorted(asked) == sorted(half)  # after the reconnect, only the missing half
        assert len(dut.images[offer.image.sha]) == 1 << 20
        welcome = await dut.hello()  # restarted on the new impOS
        assert not welcome.blessed
        code = await dut.expect(cl.CodeOffer)
        assert await dut.run(code) == DUT_CODE
        await until(lambda: w.svc.get_device(dut.device_id).impos_version == "43.1")
        await dut.close()
        await fx.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


def test_chunks_for_unknown_images_or_blocks_are_refused(any_broker_url: str,
                                                          tmp_path: Path) -> None:
    async def test(w: World) -> None:
        dev = await w.device()
        await dev.hello()
        ghost = cl.ImageRef(cl.ImageKind.DEVICE, "ab" * 32, 10, 16)
        with pytest.raises(FakeDeviceRefused) as unknown:
            await dev.fetch(ghost)
        assert unknown.value.reply.code is cl.ErrorCode.UNKNOWN_IMAGE
        real = w.svc.images.ref(cl.ImageKind.DEVICE, w.f.dut_build.device_code.encode())
        assert real.total == 1
        # a device never enrolled is offered no code: the DUT firmware is not there for it
        with pytest.raises(FakeDeviceRefused) as unoffered:
            await dev.fetch(real)
        assert unoffered.value.reply.code is cl.ErrorCode.UNKNOWN_IMAGE
        dut, _ = await w.dut(await w.fixture())
        await dut.send(cl.ChunkRequest(device_id=dut.device_id, sha=real.sha, blocks=(0, 1)))
        refused = await dut.expect(cl.ErrorReply)
        assert refused.code is cl.ErrorCode.BAD_REQUEST and "block 1" in refused.message
        assert dut.images == {}
        assert await dut.fetch(real) == w.f.dut_build.device_code.encode()
        await dev.close()
        await dut.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


# ---------------------------------------------------------------- agents


def test_agent_messages_both_ways(any_broker_url: str, tmp_path: Path) -> None:
    async def test(w: World) -> None:
        heard: list[tuple[str, str, object]] = []
        remove = w.svc.add_agent_listener(lambda *m: heard.append(m))
        w.svc.add_agent_listener(lambda *m: 1 / 0)  # a broken listener costs nobody else
        fx = await w.fixture()
        await fx.agent_send("reading", {"t": [21.5, None], "ok": True})
        await until(lambda: len(heard) == 1)
        assert heard == [(fx.device_id, "reading", {"t": [21.5, None], "ok": True})]

        assert w.svc.send_to_device(fx.device_id, "config", {"rate": 5})
        got = await fx.expect(cl.DeviceMessage)
        assert (got.name, got.value) == ("config", {"rate": 5})
        with pytest.raises(InvalidError):
            w.svc.send_to_device(fx.device_id, "bad name!", 1)
        with pytest.raises(InvalidError):
            w.svc.send_to_device(fx.device_id, "big", "x" * cl.MAX_PAYLOAD)

        stranger = await w.device()  # never enrolled: it has no agent
        await stranger.hello()
        await stranger.agent_send("hi", 1)
        await until(lambda: any("no agent" in e.msg
                                for e in w.svc.device_logs(stranger.device_id)))
        await stranger.close()
        await until(lambda: not w.svc.get_device(stranger.device_id).online)
        assert not w.svc.send_to_device(stranger.device_id, "hello", None)  # offline: dropped

        remove()
        await fx.agent_send("late", 2)
        await fx.log("after the message")  # the link keeps order: logged after it was seen
        await until(lambda: any("after the message" in e.msg
                                for e in w.svc.device_logs(fx.device_id)))
        assert len(heard) == 1
        await fx.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


# ---------------------------------------------------------------- bad input


def test_bad_input_never_stops_the_cloud(any_broker_url: str, tmp_path: Path) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        vandal = await w.device()
        base = f"{cl.PREFIX}/{vandal.device_id}/up/"
        await vandal.send_raw(base + "hello", b'{"v":1,"req":77,"mac":"not hex","session":"'
                              + vandal.session.encode() + b'"}')
        reply = await vandal.expect(cl.ErrorReply)
        assert (reply.req, reply.code, reply.kind) == (77, cl.ErrorCode.BAD_REQUEST, "hello")
        await vandal.send_raw(base + "bless_request", b"\xff\x00 garbage")
        reply = await vandal.expect(cl.ErrorReply)
        assert reply.req is None and reply.kind == "bless_request"
        await vandal.send_raw(base + "factory_token_request",  # oversized: never parsed
                              b'{"v":1,"req":5,"pad":"' + b"x" * (cl.MAX_PAYLOAD + 10) + b'"}')
        reply = await vandal.expect(cl.ErrorReply)
        assert reply.req is None and "exceeds" in reply.message
        await vandal.send_raw(base + "hello", b'{"v":9,"req":6}')
        assert (await vandal.expect(cl.ErrorReply)).req == 6
        await vandal.send_raw(base + "teleport", b"{}")
        await vandal.send_raw(base + "log", b"[]")
        await vandal.send_raw(f"{cl.PREFIX}/NOTADEVICE/up/hello", b"{}")
        await vandal.send_raw(f"{cl.PREFIX}/{vandal.device_id}/up/state", b"\x00" * 70000)
        await vandal.expect_nothing(cl.ErrorReply)
        # everyone else carries on
        dut = await w.running_dut(fx)
        assert (await dut.bless(True)).blessed
        assert w.cloud.link.stats.bad >= 7 and w.cloud.link.stats.failed == 0
        assert any("Bad hello message" in e.msg for e in w.svc.device_logs(vandal.device_id))
        for d in (fx, vandal, dut):
            await d.close()

    run(test, any_broker_url, tmp_path / "cloud.db")


# ---------------------------------------------------------------- persistence and presence


def test_a_restarted_cloud_loses_nothing(any_broker_url: str, tmp_path: Path) -> None:
    db = tmp_path / "cloud.db"
    state: dict[str, str] = {}

    async def first(w: World) -> None:
        fx = await w.fixture()
        dut = await w.running_dut(fx)
        assert (await dut.bless(True)).blessed
        state.update(fixture=fx.device_id, dut=dut.device_id, group=w.f.production_group.id,
                     token=(await fx.factory_token()).token)
        await dut.close()
        await fx.close()

    run(first, any_broker_url, db)

    async def second() -> None:
        async with Cloud(db, any_broker_url) as cloud:
            svc = cloud.service
            record = svc.get_device(state["dut"])
            assert record.blessed and record.group_id == state["group"]
            assert svc.get_token(state["token"]) is not None
            fx = FakeDevice(any_broker_url, state["fixture"], mac=state["fixture"][4:])
            await fx.connect()
            await fx.hello()
            assert (await fx.expect(cl.Assignment)).group_id == record.factory_group_id
            assert (await fx.factory_token()).plan_id == svc.owner(OWNER).plan_id
            await fx.close()

    asyncio.run(asyncio.wait_for(second(), 60))


def test_a_lost_connection_marks_the_device_offline(any_broker_url: str,
                                                     tmp_path: Path) -> None:
    async def test(w: World) -> None:
        dev = await w.device()
        await dev.hello()
        await dev.report(led="connected")
        await until(lambda: w.svc.get_device(dev.device_id).led == "connected")
        record = w.svc.get_device(dev.device_id)
        assert record.online and record.led == "connected"
        await dev.close(clean=False)  # no bye: the broker publishes the will
        await until(lambda: not w.svc.get_device(dev.device_id).online)
        record = w.svc.get_device(dev.device_id)
        assert not record.online and record.connection == "offline:lost"

    run(test, any_broker_url, tmp_path / "cloud.db")


# ---------------------------------------------------------------- outages and bugs


@pytest.mark.parametrize("kind", BROKER_KINDS)
def test_the_link_comes_back_after_a_broker_outage(kind: str, tmp_path: Path) -> None:
    first = BrokerServer(kind)
    url = first.start()
    port = parse_url(url)[1]

    async def main() -> None:
        async with Cloud(tmp_path / "cloud.db", url) as cloud:
            await asyncio.to_thread(first.stop)
            await until(lambda: not cloud.link.connected)
            second = BrokerServer(kind, port=port)
            await asyncio.to_thread(second.start)
            try:
                await until(lambda: cloud.link.connected and cloud.link.stats.reconnects >= 1)
                async with FakeDevice(url) as dev:
                    welcome = await dev.hello()
                    assert welcome.device_id == dev.device_id
                assert cloud.service.get_device(dev.device_id).mac == dev.mac
            finally:
                await asyncio.to_thread(second.stop)

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        first.stop()


def test_a_rules_bug_is_answered_and_the_link_carries_on(any_broker_url: str,
                                                          tmp_path: Path) -> None:
    async def test(w: World) -> None:
        def broken(msg: cl.Message) -> list[cl.Message]:
            raise ZeroDivisionError("a bug")

        w.cloud.link.rules._handlers[cl.FactoryTokenRequest] = broken
        fx = await w.fixture()
        with pytest.raises(FakeDeviceRefused) as refused:
            await fx.factory_token()
        assert refused.value.reply.code is cl.ErrorCode.INTERNAL
        assert w.cloud.link.stats.failed == 1
        other = await w.device()
        assert (await other.hello()).device_id == other.device_id
        await fx.close()
        await other.close()

    run(test, any_broker_url, tmp_path / "cloud.db")
