"""The pytest fixtures users get for emulated imps (tools/plugin_device.py), used as a
user would: their own DUT firmware, the example fixture firmware, the real cloud."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from impfactory.firmware import examples
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.settings import MemoryStore
from impfactory.tools.emulated_zone import build_test_zone, dut_settings, start_fixture

OWN_DUT = """# impfactory: python
def done(blessed):
    server.log("my dut blessed=%s" % blessed)
v = hardware.voltage()
server.log("my dut measured %.2f V" % v)
server.bless(3.1 <= v <= 3.5, done)
"""


def test_own_dut_firmware_with_the_device_fixtures(
        cloud_factory: Callable[..., Any], imp_fleet_factory: Callable[..., Any],
        broker_url: str, factory_firmware: str, application_firmware: str) -> None:
    assert "server.factoryblinkup" in factory_firmware
    assert factory_firmware != application_firmware

    async def go() -> tuple[list[str], list[str]]:
        async with cloud_factory() as cloud:
            svc = cloud.service
            zone = build_test_zone(svc, dut_code=OWN_DUT, fixture_code=factory_firmware,
                                   app_code=application_firmware)
            async with imp_fleet_factory(broker_url, scale=200.0) as fleet:
                fixture = await start_fixture(svc, zone, fleet, 30.0)
                logs, ids = [], []
                for volts in (3.3, 3.8):  # one in limits, one over
                    dut = fleet.add(store=MemoryStore(dut_settings(svc, fixture)),
                                    hardware=examples.dut_board(voltage=volts))
                    dut.power_on()
                    await dut.wait_for(DeviceEvent.CODE_STARTED, 30.0, since=0)
                    while not any(m.startswith("my dut blessed") for m in dut.logs):
                        await dut.wait_for(DeviceEvent.LOG, 30.0)
                    logs.append(next(m for m in dut.logs if m.startswith("my dut blessed")))
                    ids.append(dut.device_id)
                    await dut.power_off()
                return logs, [svc.get_device(i).blessed for i in ids]

    logs, blessed = asyncio.run(go())
    assert logs == ["my dut blessed=True", "my dut blessed=False"]
    assert blessed == [True, False]
