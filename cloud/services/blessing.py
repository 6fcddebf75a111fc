"""Blessing: a DUT whose tests passed moves to its fixture group's production target.

One transaction holds the whole change (the group move, the log line and the
``blessing`` webhook's outbox row), so a cloud killed at any moment has either
blessed the device with its event queued, or done nothing; a device is never
blessed twice (the move only applies to an unblessed device).
"""

from __future__ import annotations

from dataclasses import dataclass

from impfactory.cloud.model import Device
from impfactory.cloud.services.context import Context


@dataclass(frozen=True)
class BlessOutcome:
    blessed: bool
    reason: str = ""
    device: Device | None = None
    """The device after its blessing (None when refused)."""


class Blessing:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.devices = ctx.repos.devices

    def bless(self, device_id: str, passed: bool, attempt: str | None = None) -> BlessOutcome:
        """The DUT asks to be blessed (``passed``: its tests passed). ``attempt``: the
        device's name for this ``server.bless`` call, the same when it asks again after
        a lost answer; a repeat of the call that blessed it is answered "blessed" again,
        with nothing blessed twice (docs/cloudlink.md)."""
        ctx = self.ctx
        with ctx.tx():
            device = self.devices.get(device_id)
            if device is None:
                return BlessOutcome(False, "unknown device")
            if device.blessed:
                if (passed and attempt is not None
                        and self.devices.bless_attempt(device.id) == attempt):
                    return BlessOutcome(True, device=device)
                ctx.log(device.id, "Blessing refused: the device is already blessed")
                return BlessOutcome(False, "already blessed")
            group = ctx.group(device.group_id) if device.group_id else None
            if group is None or not group.type.is_dut:
                ctx.log(device.id, "Blessing refused: the device is not a DUT")
                return BlessOutcome(False, "not a DUT")
            if not passed:
                self.devices.bless_failed(device.id)
                ctx.log(device.id, "Blessing failed: the device's tests did not pass")
                return BlessOutcome(False, "tests failed")
            fixture_group = (ctx.group(device.factory_group_id)
                             if device.factory_group_id else None)
            if fixture_group is None or fixture_group.production_target is None:
                ctx.log(device.id, "Blessing refused: no factory fixture group")
                return BlessOutcome(False, "no factory fixture group")
            target = ctx.group(fixture_group.production_target)
            if not self.devices.blessed(device.id, target.id, target.product_id, ctx.now(),
                                        attempt):
                return BlessOutcome(False, "already blessed")
            ctx.log(device.id, f"Blessed: assigned to production group {target.name}")
            ctx.queue_webhooks(target.id, "blessing",
                               {"device_id": device.id, "imp_id": device.id, "mac": device.mac,
                                "success": True, "timestamp": ctx.now()})
            return BlessOutcome(True, device=ctx.device(device.id))
