"""The cloud side of a line run: broker, cloud, product, groups, deployments, fixtures.

The line runner in ``fixture/`` may not import ``cloud/``; this module (tools may
import everything) builds what it needs and hands it over as a ``LineCloud``:

* a broker (``auto``: Mosquitto if installed, else the embedded one; or a URL),
* a cloud on a fresh SQLite file (or ``db``), with an owner account,
* a product with a test-zone fixture group aimed at a DUT group and a production
  group, and a deployment in each: the example factory firmware (or the user's
  own file) for fixture and DUT, the example application firmware (or the user's),
* an impOS release that the product requires, so DUTs shipped with an older impOS
  update first,
* developer enrolments for the fixtures and their adoption into the fixture group.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from impfactory.cloud.broker import BrokerServer
from impfactory.cloud.scenario import FactorySetup, make_factory
from impfactory.cloud.server import Cloud
from impfactory.firmware.examples import application_source, factory_source
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID
from impfactory.firmware.settings import DEFAULT_IMPOS_VERSION

OWNER = "factory-owner"
#: The impOS the product requires; DUTs flagged outdated ship with the default (older) one.
REQUIRED_IMPOS = "43.1.0"
AGENT_CODE = "# the example firmware's agent is not emulated: results reach the line by LED\n"


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

    def fixture_enrolment(self) -> tuple[str, str]:
        token = self.cloud.service.create_development_token(self.owner_id)
        return token.plan_id, token.token

    async def adopt_fixture(self, device_id: str) -> None:
        self.cloud.service.assign_devices(self.setup.fixture_group.id, [device_id])


@contextlib.asynccontextmanager
async def factory_cloud(broker: str = "auto", db: Path | None = None, *,
                        factory_code: str | None = None, app_code: str | None = None,
                        impos_size: int = 1 << 20) -> AsyncIterator[FactoryCloud]:
    """Start broker and cloud, build the factory, yield it; stop everything after."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(BrokerServer(broker))
        if db is None:
            db = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="impline-"))) / "c.db"
        cloud = Cloud(db, url)
        await cloud.start()
        try:
            svc = cloud.service
            owner = svc.ensure_owner(OWNER)
            code = factory_code if factory_code is not None else factory_source(
                FACTORY_SSID, FACTORY_PASSWORD)
            setup = make_factory(svc, owner.id, name="Line", fixture_code=code, dut_code=code,
                                 app_code=app_code if app_code is not None
                                 else application_source(), agent_code=AGENT_CODE)
            svc.add_impos_release(REQUIRED_IMPOS, size=impos_size)
            svc.update_product(setup.product.id, min_impos_version=REQUIRED_IMPOS)
            yield FactoryCloud(cloud, setup, owner.id, url)
        finally:
            await cloud.stop()
