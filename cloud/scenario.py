"""A ready factory set-up in one call: product, three groups with targets, three builds.

Tests, the self-benchmark and users' own suites need the same starting point the
impt production guide builds by hand (IMPCENTRAL_API.md §8): a product, a
(pre-)production group, a (pre-)DUT group, a (pre-)factory fixture group aimed at
both, and a deployment in each. ``zone="production"`` first builds the Test Zone
with promoted deployments, then the Production Zone from copies of them, since
only promoted code may go there.
"""

from __future__ import annotations

from dataclasses import dataclass

from impfactory.cloud.model import Deployment, DeviceGroup, GroupType, Product
from impfactory.cloud.service import CloudService

FIXTURE_CODE = 'server.log("fixture ready"); // calls server.factoryblinkup() on the button\n'
DUT_CODE = 'server.bless(true, function(ok) { server.log("blessed: " + ok); });\n'
APP_CODE = 'server.log("application running");\n'
AGENT_CODE = 'device.on("result", function(r) { server.log(r); });\n'


@dataclass(frozen=True)
class FactorySetup:
    product: Product
    fixture_group: DeviceGroup
    dut_group: DeviceGroup
    production_group: DeviceGroup
    fixture_build: Deployment
    dut_build: Deployment
    app_build: Deployment


def make_factory(
    svc: CloudService,
    owner_id: str,
    *,
    name: str = "Lamp",
    zone: str = "test",
    load_code_after_blessing: bool = True,
    fixture_code: str = FIXTURE_CODE,
    dut_code: str = DUT_CODE,
    app_code: str = APP_CODE,
    agent_code: str = AGENT_CODE,
    app_agent_code: str | None = None,
) -> FactorySetup:
    """Build a product's factory groups and deployments in ``zone`` (test|production).
    ``agent_code`` goes with the fixture and DUT code, ``app_agent_code`` (default: the
    same) with the application."""
    product = svc.create_product(owner_id, name, f"{name} (made by impfactory)")
    code = (fixture_code, dut_code, app_code, agent_code,
            agent_code if app_agent_code is None else app_agent_code)
    test = _zone(svc, product, f"{name} test", GroupType.PRE_PRODUCTION, GroupType.PRE_DUT,
                 GroupType.PRE_FACTORYFIXTURE, load_code_after_blessing, code,
                 promoted=zone == "production")
    if zone == "test":
        return test
    if zone != "production":
        raise ValueError(f"zone must be test or production, not {zone!r}")
    return _zone(svc, product, name, GroupType.PRODUCTION, GroupType.DUT,
                 GroupType.FACTORYFIXTURE, load_code_after_blessing, code, promoted=False)


def _zone(svc: CloudService, product: Product, prefix: str, prod_type: GroupType,
          dut_type: GroupType, fixture_type: GroupType, load_code: bool,
          code: tuple[str, str, str, str, str], *, promoted: bool) -> FactorySetup:
    fixture_code, dut_code, app_code, agent_code, app_agent = code
    production = svc.create_group(product.id, prod_type, f"{prefix} production",
                                  load_code_after_blessing=load_code)
    dut = svc.create_group(product.id, dut_type, f"{prefix} DUT")
    fixture = svc.create_group(product.id, fixture_type, f"{prefix} fixture",
                               production_target=production.id, dut_target=dut.id)
    builds = [
        svc.create_deployment(group.id, device, agent, description=f"{prefix} {what}",
                              origin=f"{prefix}-{what}", promoted=promoted)
        for group, device, agent, what in ((fixture, fixture_code, agent_code, "fixture"),
                                           (dut, dut_code, agent_code, "dut"),
                                           (production, app_code, app_agent, "app"))
    ]
    return FactorySetup(product, svc.get_group(fixture.id), svc.get_group(dut.id),
                        svc.get_group(production.id), *builds)
