"""The factory flow rules, each proven over a real broker (Mosquitto and embedded).

Every test starts its own cloud on its own database in tmp_path, on the session's
broker of each kind, and drives it with scripted fake devices that know only the
wire protocol. The cloud under test and the devices share the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from impfactory.cloud.errors import ForbiddenError
from impfactory.cloud.fakedevice import FakeDevice, FakeDeviceRefused
from impfactory.cloud.model import GroupType
from impfactory.cloud.scenario import AGENT_CODE, APP_CODE, DUT_CODE, FactorySetup, make_factory
from impfactory.cloud.server import Cloud
from impfactory.cloud.service import CloudService
from impfactory.protocol import cloudlink as cl

OWNER = "owner-1"


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
        """A fixture: developer BlinkUp, assigned to the fixture group, running its code."""
        fx = await self.device()
        token = self.svc.create_development_token(OWNER)
        await fx.hello(token.plan_id, token.token)
        self.svc.assign_devices(group_id or self.f.fixture_group.id, [fx.device_id])
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


def run(test: Callable[[World], Awaitable[None]], url: str, db: Path, **setup: object) -> None:
    async def main() -> None:
        async with Cloud(db, url) as cloud:
            cloud.service.ensure_owner(OWNER)
            world = World(cloud, make_factory(cloud.service, OWNER, **setup), url)  # type: ignore[arg-type]
            await asyncio.wait_for(test(world), 60)

    asyncio.run(main())


@asynccontextmanager
async def closing(*devices: FakeDevice) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for dev in devices:
            await dev.close()


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
        assert params.params == {
            "factory_imp_device_id": fx.device_id,
            "factory_fixture_url": w.svc.agent_url(fixture_record.agent_id),
        }
        offer = await dut.expect(cl.CodeOffer)
        assert offer.deployment == other_build.id
        assert await dut.run(offer) == "// second DUT firmware"
        await asyncio.sleep(0.2)
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

        answer = await dut.bless(True)
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
        assert w.svc.get_device(dut.device_id).group_id == later.id

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
        assert any(e == "blinkup" for _, e, _ in events)
        await shipped.close()
        await fx.close()

    run(test, any_broker_url, tmp_path / "cloud.db", load_code_after_blessing=False)


# ---------------------------------------------------------------- zones and groups


def test_production_zone_rules(any_broker_url: str, tmp_path: Path) -> None:
    async def test(w: World) -> None:
        f = w.f
        assert f.production_group.type is GroupType.PRODUCTION
        with pytest.raises(ForbiddenError):
            w.svc.create_deployment(f.production_group.id, "// never promoted")
        fx = await w.fixture()
        dut = await w.running_dut(fx)
        with pytest.raises(ForbiddenError):  # nobody assigns to a production group by hand
            w.svc.assign_devices(f.production_group.id, [dut.device_id])
        assert (await dut.bless(True)).blessed
        assert (await dut.expect(cl.Assignment)).group_id == f.production_group.id
        await dut.expect(cl.ConfigParams)
        await dut.run(await dut.expect(cl.CodeOffer))

        other = w.svc.create_group(f.product.id, GroupType.PRODUCTION, "second production")
        w.svc.create_deployment(other.id, APP_CODE, AGENT_CODE)  # promoted code: accepted
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
        record = w.svc.get_device(dut.device_id)
        assert record.group_id is None and not record.blessed
        assert (await dut.expect(cl.Assignment)).group_id is None
        await dut.close()
        await fx.close()

    run(test, any_broker_url, tmp_path / "cloud.db", zone="production")


def test_dut_firmware_is_the_dut_groups_deployment(any_broker_url: str, tmp_path: Path) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        dut, _ = await w.dut(fx)
        assert await dut.run(await dut.expect(cl.CodeOffer)) == DUT_CODE
        await fx.close()
        await dut.close()

    run(test, any_broker_url, tmp_path / "cloud.db")
