"""A device's presence: its ``hello``, state reports and goodbye."""

from __future__ import annotations

from impfactory.cloud.model import Device
from impfactory.cloud.services.context import Context


class Connection:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.repo = ctx.repos.devices

    def device_connected(self, device_id: str, mac: str, imp_type: str, impos_version: str,
                         deployment_id: str | None) -> Device:
        """A ``hello``: the device is known from now on, online, running what it says.
        A MAC is burnt into the module: a different one in a hello is logged, ignored."""
        now = self.ctx.now()
        with self.ctx.tx():
            known = self.repo.get(device_id)
            if known is None:
                self.repo.add(device_id, mac, now)
            elif known.mac != mac:
                self.ctx.log(device_id, f"hello with MAC {mac} ignored: the device's "
                                        f"MAC is {known.mac}")
            self.repo.connected(device_id, imp_type, impos_version, deployment_id, now)
            return self.ctx.device(device_id)

    def device_reported(self, device_id: str, connection: str, led: str, impos_version: str,
                        deployment_id: str | None) -> None:
        with self.ctx.tx():
            self.repo.reported(device_id, connection, led, impos_version, deployment_id,
                               self.ctx.now())

    def device_left(self, device_id: str, reason: str) -> None:
        with self.ctx.tx():
            self.repo.offline(device_id, f"offline:{reason}"[:64], self.ctx.now())
