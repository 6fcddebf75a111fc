"""Many emulated imps on one asyncio loop.

A ``Fleet`` hands out devices with consecutive serial numbers (so distinct MACs and
device IDs), all on one clock, one modelled WiFi environment and one broker, and
powers them all off when the ``async with`` block ends. A device is a few asyncio
tasks and one MQTT connection; there is no thread per device.
"""

from __future__ import annotations

import asyncio
import itertools
from types import TracebackType

from impfactory.clock import Clock, ScaledClock
from impfactory.firmware.device import Device, DeviceConfig
from impfactory.firmware.hardware import SimHardware
from impfactory.firmware.identity import DeviceIdentity
from impfactory.firmware.settings import SettingsStore
from impfactory.firmware.wifi import AccessPoint, WifiEnvironment

FACTORY_SSID = "factory-wifi"
FACTORY_PASSWORD = "factory-password"


def factory_wifi() -> WifiEnvironment:
    """The factory floor's network as the example firmware expects it."""
    return WifiEnvironment([AccessPoint(FACTORY_SSID, FACTORY_PASSWORD)])


class Fleet:
    """Devices sharing one loop, clock, WiFi environment and broker."""

    def __init__(self, server_url: str, clock: Clock | None = None,
                 env: WifiEnvironment | None = None, config: DeviceConfig | None = None,
                 first_serial: int = 1) -> None:
        self.server_url = server_url
        self.clock = clock or ScaledClock(100.0)
        self.env = env or factory_wifi()
        self.config = config
        self.devices: list[Device] = []
        self._serials = itertools.count(first_serial)

    def add(self, serial: int | None = None, store: SettingsStore | None = None,
            hardware: SimHardware | None = None, config: DeviceConfig | None = None,
            env: WifiEnvironment | None = None, imp_type: str | None = None) -> Device:
        """A new (powered-off) device; ``serial`` defaults to the next free one.

        ``env`` gives this device its own radio world (a fault for one DUT only).
        """
        identity = DeviceIdentity.from_serial(next(self._serials) if serial is None else serial)
        device = Device(identity, self.clock, env or self.env, self.server_url, store=store,
                        hardware=hardware, config=config or self.config, imp_type=imp_type)
        self.devices.append(device)
        return device

    async def close(self) -> None:
        """Power every device off (concurrently)."""
        await asyncio.gather(*(d.power_off() for d in self.devices))

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
