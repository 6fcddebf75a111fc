"""The cloud side of a line run: broker, cloud, product, groups, deployments, fixtures.

The line runner in ``fixture/`` may not import ``cloud/``; this module (tools may
import everything) builds what it needs and hands it over as a ``LineCloud``:

* a broker (``auto``: Mosquitto if installed, else the embedded one; or a URL),
* a cloud on a fresh SQLite file (or ``db``), with an owner account,
* a product ("Line") with a test-zone fixture group aimed at a DUT group and a
  production group, and a deployment in each (reused from an earlier run when
  ``db`` already holds them; changed code becomes a new deployment): the example
  factory firmware and its agent (or the user's own files) for fixture and DUT,
  the example application firmware (or the user's) with no agent,
* the cloud's agents, their URLs served on a free loopback port, so a DUT's agent
  posts its result to the fixture's agent URL for real,
* an impOS release that the product requires, so DUTs shipped with an older impOS
  update first,
* developer enrolments for the fixtures and their adoption into the fixture group;
* DUT serials after every device the database already knows, so a reused
  database never meets an already-blessed DUT again.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from impfactory.cloud.broker import BrokerServer
from impfactory.cloud.model import GroupType
from impfactory.cloud.scenario import FactorySetup, make_factory
from impfactory.cloud.server import Cloud
from impfactory.cloud.service import CloudService
from impfactory.errors import ImpFactoryError
from impfactory.firmware.examples import (
    application_source,
    factory_agent_source,
    factory_source,
)
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID
from impfactory.firmware.settings import DEFAULT_IMPOS_VERSION
from impfactory.fixture.line import FIXTURE_SERIAL_BASE

OWNER = "factory-owner"
PRODUCT = "Line"
OUI = "0c2a69"
#: The impOS the product requires; DUTs flagged outdated ship with the default (older) one.
REQUIRED_IMPOS = "43.1.0"
APP_AGENT_CODE = ""
"""The application has no agent code (the example application needs none)."""


class LineSetupError(ImpFactoryError, ValueError):
    """The database holds something the line cannot reuse."""


@dataclass
class FactoryCloud:
    """A running cloud set up for a line (satisfies ``fixture.line.LineCloud``)."""

    cloud: Cloud
    setup: FactorySetup
    owner_id: str
    broker_url: str
    wifi_ssid: str = FACTORY_SSID
    wifi_password: str = FACTORY_PASSWORD
    impos_current: str = REQUIRED_IMPOS
    impos_outdated: str = DEFAULT_IMPOS_VERSION
    first_dut_serial: int | None = None

    def fixture_enrolment(self) -> tuple[str, str]:
        token = self.cloud.service.create_development_token(self.owner_id)
        return token.plan_id, token.token

    async def adopt_fixture(self, device_id: str) -> None:
        self.cloud.service.assign_devices(self.setup.fixture_group.id, [device_id])

    async def dut_verdict(self, token: str) -> tuple[str | None, bool | None]:
        """Who enrolled with the factory ``token`` (None: nobody yet) and the cloud's bless
        verdict on it (True blessed, False a failed bless, None none yet): what a
        blessing webhook would tell a factory about a DUT it cannot ask itself."""
        svc = self.cloud.service
        record = svc.get_token(token)
        device_id = record.used_by if record is not None else None
        if device_id is None:
            return None, None
        device = svc.find_device(device_id)
        if device is None:
            return device_id, None
        if device.blessed:
            return device_id, True
        return device_id, (False if device.bless_failures else None)

    async def blessed_devices(self, device_ids: list[str]) -> set[str]:
        """Those of ``device_ids`` the cloud has blessed."""
        svc = self.cloud.service
        return {d for d in device_ids
                if (device := svc.find_device(d)) is not None and device.blessed}

    async def agent_activity(self, device_id: str, messages: int = 0
                             ) -> list[dict[str, object]]:
        """What ``device_id``'s agent did, once it has heard ``messages`` messages from
        the device and has nothing left in flight."""
        agents = self.cloud.agents
        return await agents.settled(device_id, messages) if agents is not None else []


@contextlib.asynccontextmanager
async def factory_cloud(broker: str = "auto", db: Path | str | None = None, *,
                        factory_code: str | None = None, app_code: str | None = None,
                        agent_code: str | None = None,
                        impos_size: int = 1 << 20, wifi_ssid: str = FACTORY_SSID,
                        wifi_password: str = FACTORY_PASSWORD,
                        share: str | None = None) -> AsyncIterator[FactoryCloud]:
    """Start broker and cloud, build the factory, yield it; stop everything after.

    ``agent_code`` goes with the factory firmware; without it, the example firmware
    gets the example agent and firmware of the user's own gets none."""
    with contextlib.ExitStack() as stack:
        server = BrokerServer(broker)
        url = stack.enter_context(server)
        if db is None:
            db = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="impline-"))) / "c.db"
        cloud = Cloud(db, server.cloud_url, agent_port=0, share=share)
        await cloud.start()
        try:
            svc = cloud.service
            owner = svc.ensure_owner(OWNER)
            code = factory_code if factory_code is not None else factory_source(
                wifi_ssid, wifi_password)
            app = app_code if app_code is not None else application_source()
            agent = agent_code if agent_code is not None else (
                factory_agent_source() if factory_code is None else "")
            setup = _reuse(svc, owner.id, code, app, agent) or make_factory(
                svc, owner.id, name=PRODUCT, fixture_code=code, dut_code=code, app_code=app,
                agent_code=agent, app_agent_code=APP_AGENT_CODE)
            if not any(r.version == REQUIRED_IMPOS for r in svc.impos_releases()):
                svc.add_impos_release(REQUIRED_IMPOS, size=impos_size)
            svc.update_product(setup.product.id, min_impos_version=REQUIRED_IMPOS)
            serials = [int(d.mac[6:], 16) for d in svc.list_devices(owner_id=owner.id)
                       if d.mac.startswith(OUI)]
            duts = [n for n in serials if n < FIXTURE_SERIAL_BASE]
            first = max(duts) + 1 if duts else None
            yield FactoryCloud(cloud, setup, owner.id, url, wifi_ssid, wifi_password,
                               first_dut_serial=first)
        finally:
            await cloud.stop()


def _reuse(svc: CloudService, owner_id: str, code: str, app: str,
           agent: str) -> FactorySetup | None:
    """The product an earlier run left in this database, with the given code current.

    Deployments are immutable, so code that differs from a group's current
    deployment becomes a new deployment (and the group's current one).
    """
    product = next((p for p in svc.list_products(owner_id) if p.name == PRODUCT), None)
    if product is None:
        return None
    groups = {g.type: g for g in svc.list_groups(product_id=product.id)}
    try:
        fixture = groups[GroupType.PRE_FACTORYFIXTURE]
        dut = groups[GroupType.PRE_DUT]
        production = groups[GroupType.PRE_PRODUCTION]
    except KeyError as err:
        raise LineSetupError(f"product {PRODUCT!r} in this database lacks a group: {err}") from err
    builds = []
    for group, source, agent_source, what in ((fixture, code, agent, "fixture"),
                                              (dut, code, agent, "dut"),
                                              (production, app, APP_AGENT_CODE, "app")):
        current = svc.get_deployment(group.current_deployment) if group.current_deployment \
            else None
        if current is None or (current.device_code, current.agent_code) != (source,
                                                                            agent_source):
            current = svc.create_deployment(group.id, source, agent_source,
                                            description=f"{PRODUCT} {what}",
                                            origin=f"{PRODUCT}-{what}")
        builds.append(current)
    return FactorySetup(product, svc.get_group(fixture.id), svc.get_group(dut.id),
                        svc.get_group(production.id), *builds)
