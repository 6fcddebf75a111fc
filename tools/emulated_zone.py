"""A factory Test Zone in a running cloud and an emulated fixture working in it.

* ``build_test_zone(service, ...)``: a product with Test Production, Test DUT and
  Test Fixture groups and their deployments in a ``CloudService``.
* ``start_fixture(service, zone, fleet)``: an emulated fixture enrolled with a
  developer token, assigned to the zone's fixture group and running its firmware.
* ``dut_settings(service, fixture)``: what a factory BlinkUp leaves in a DUT.

``impfactory device life``, ``impfactory perf device`` and the pytest plugin
(``plugin_device``) share these. They live apart from the plugin because the
command line must run without pytest installed (``pip install -e .`` installs no
test extras): only ``plugin_*`` and ``pytest_plugin`` may import pytest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from impfactory.firmware import examples
from impfactory.firmware.device import Device
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID, Fleet
from impfactory.firmware.settings import MemoryStore, Settings

OWNER = "acct-factory"


@dataclass(frozen=True)
class TestZone:
    """IDs of one product's Test Zone."""

    __test__ = False  # not a pytest test class

    owner_id: str
    product_id: str
    production_group: str
    dut_group: str
    fixture_group: str


def build_test_zone(service: Any, *, owner_id: str = OWNER, dut_code: str | None = None,
                    fixture_code: str | None = None, app_code: str | None = None,
                    min_impos: str | None = None, impos_size: int = 200_000) -> TestZone:
    """A product with Test Production, Test DUT and Test Fixture groups, each deployed.

    Defaults deploy the example factory firmware (fixture and DUT) and the example
    application. ``min_impos`` makes DUTs update their impOS first.
    """
    service.ensure_owner(owner_id)
    product = service.create_product(owner_id, "Lamp")
    prod = service.create_group(product.id, "pre_production_devicegroup", "Test Production")
    dut = service.create_group(product.id, "pre_dut_devicegroup", "Test DUT",
                               min_impos_version=min_impos)
    fix = service.create_group(product.id, "pre_factoryfixture_devicegroup", "Test Fixture",
                               production_target=prod.id, dut_target=dut.id)
    if min_impos:
        service.add_impos_release(min_impos, size=impos_size)
    factory = examples.factory_source(FACTORY_SSID, FACTORY_PASSWORD)
    service.create_deployment(prod.id, app_code or examples.application_source())
    service.create_deployment(dut.id, dut_code or factory)
    service.create_deployment(fix.id, fixture_code or factory)
    return TestZone(owner_id, product.id, prod.id, dut.id, fix.id)


async def start_fixture(service: Any, zone: TestZone, fleet: Fleet,
                        timeout: float = 30.0) -> Device:
    """An emulated fixture: enrolled by developer BlinkUp, assigned, firmware running.

    Running means its code has started and had half a second of its own clock to
    set itself up (``imp.onidle`` is how FactoryTools waits for its configparams):
    any fixture firmware, not only the example, is ready then."""
    token = service.create_development_token(zone.owner_id)
    fixture = fleet.add(store=MemoryStore(Settings(
        ssid=FACTORY_SSID, password=FACTORY_PASSWORD,
        plan_id=token.plan_id, enrol_token=token.token)),
        hardware=examples.fixture_board(), imp_type=examples.FIXTURE_IMP)
    fixture.power_on()
    await fixture.wait_for(DeviceEvent.ENROLLED, timeout, since=0)
    service.assign_devices(zone.fixture_group, [fixture.device_id])
    try:
        await fixture.wait_for(DeviceEvent.CODE_STARTED, timeout, since=0)
    except TimeoutError:
        raise TimeoutError("the fixture firmware did not start") from None
    await fleet.clock.sleep(0.5)
    return fixture


def dut_settings(service: Any, fixture: Device) -> Settings:
    """What a factory BlinkUp from ``fixture`` leaves in a DUT (without the light)."""
    token = service.create_factory_token(service.get_device(fixture.device_id))
    return Settings(ssid=FACTORY_SSID, password=FACTORY_PASSWORD,
                    plan_id=token.plan_id, enrol_token=token.token)
