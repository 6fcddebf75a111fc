"""The cloud fixtures users get from the pytest plugin work as documented."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from impfactory.cloud.fakedevice import FakeDevice
from impfactory.cloud.scenario import FactorySetup
from impfactory.cloud.server import Cloud, CloudThread
from impfactory.protocol import cloudlink as cl
from impfactory.tools.plugin_cloud import OWNER


def test_impcloud_thread_serves_a_fixture(impcloud: CloudThread, factory_setup: FactorySetup,
                                          fake_device: Callable[..., FakeDevice]) -> None:
    async def scenario() -> cl.FactoryToken:
        async with fake_device() as fx:
            token = impcloud.call(impcloud.service.create_development_token, OWNER)
            await fx.hello(token.plan_id, token.token)
            impcloud.call(impcloud.service.assign_devices, factory_setup.fixture_group.id,
                          [fx.device_id])
            offer = await fx.expect(cl.CodeOffer)
            assert offer.deployment == factory_setup.fixture_build.id
            return await fx.factory_token()

    token = asyncio.run(asyncio.wait_for(scenario(), 30))
    stored = impcloud.call(impcloud.service.get_token, token.token)
    assert stored is not None and stored.kind.value == "factory"


def test_cloud_factory_runs_on_the_tests_loop(
        cloud_factory: Callable[..., AbstractAsyncContextManager[Cloud]],
        fake_device: Callable[..., FakeDevice]) -> None:
    async def scenario() -> None:
        async with cloud_factory() as cloud, fake_device() as dev:
            welcome = await dev.hello()
            assert welcome.device_id == dev.device_id
            assert cloud.service.get_device(dev.device_id).online

    asyncio.run(asyncio.wait_for(scenario(), 30))
