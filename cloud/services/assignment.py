"""Assigning devices to groups by hand, unassigning (unblessing), restarting.

A moved online device is told at once (``offers_for`` gives the messages its new
group means: code, impOS); agents hear of every move.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable

from impfactory.cloud.errors import ForbiddenError, InvalidError
from impfactory.cloud.model import Device, DeviceGroup
from impfactory.cloud.services.context import Context
from impfactory.protocol import cloudlink as cl

OffersFor = Callable[[Device], list[cl.Message]]


class Assignment:
    def __init__(self, ctx: Context, offers_for: OffersFor) -> None:
        self.ctx = ctx
        self.repo = ctx.repos.devices
        self.offers_for = offers_for

    def assign_devices(self, group_id: str, device_ids: Iterable[str]) -> list[Device]:
        """Assign or reassign devices by hand (all or none).

        Nobody assigns to a (pre-)production or (pre-)DUT group by hand, except that a
        production device moves between production groups of its product.
        """
        group = self.ctx.group(group_id)
        moved = []
        with self.ctx.tx():
            for device_id in device_ids:
                device = self.ctx.device(device_id)
                if device.owner_id != group.owner_id:
                    raise ForbiddenError(f"device {device_id} is not in this account")
                if group.type.is_dut:
                    raise ForbiddenError("DUT groups are filled by factory BlinkUp only")
                if group.type.is_production:
                    current = self.ctx.group(device.group_id) if device.group_id else None
                    if not (current and current.type is group.type
                            and current.product_id == group.product_id and device.blessed):
                        raise ForbiddenError(
                            "devices reach a production group only by blessing; production "
                            "devices move only between production groups of one product")
                elif device.blessed:
                    raise ForbiddenError(
                        "a blessed device must be unassigned with the unbond key first")
                self.repo.assign(device_id, group_id, group.product_id)
                moved.append(self.ctx.device(device_id))
        self._tell(moved)
        return moved

    def unassign_devices(self, device_ids: Iterable[str], unbond_key: str | None = None,
                         group_id: str | None = None) -> list[Device]:
        """Unassign devices (all or none); leaving a production group (unblessing) needs
        the unbond key."""
        done = []
        with self.ctx.tx():
            for device_id in device_ids:
                device = self.ctx.device(device_id)
                if group_id is not None and device.group_id != group_id:
                    raise InvalidError(f"device {device_id} is not in group {group_id}")
                if device.group_id is None:
                    continue
                group = self.ctx.group(device.group_id)
                if group.type.is_production or device.blessed:
                    owner = self.ctx.owner(group.owner_id)
                    if not unbond_key or not secrets.compare_digest(unbond_key, owner.unbond_key):
                        raise ForbiddenError("removing a production device needs the unbond key")
                self.repo.unassign(device_id)
                done.append(self.ctx.device(device_id))
        self._tell(done)
        return done

    def _tell(self, devices: list[Device]) -> None:
        for device in devices:
            if device.online:
                for msg in self.offers_for(device):
                    self.ctx.send(msg)
            self.ctx.agents.device_changed(device.id)

    def restart_group(self, group_id: str, *, conditional: bool = False) -> int:
        """Restart a group's online devices; returns how many were told."""
        group = self.ctx.group(group_id)
        online = self.repo.list({"group_id": group_id, "online": True})
        return self._restart(group, online, conditional)

    def restart_device(self, device_id: str, *, conditional: bool = False) -> int:
        device = self.ctx.device(device_id)
        if not device.online:
            return 0
        group = self.ctx.group(device.group_id) if device.group_id else None
        return self._restart(group, [device], conditional)

    def _restart(self, group: DeviceGroup | None, devices: list[Device],
                 conditional: bool) -> int:
        floor = None
        if conditional and group is not None and group.min_supported_deployment:
            floor = self.ctx.deployment(group.min_supported_deployment).seq
        for device in devices:
            polite = conditional and floor is not None and self._runs_at_least(device, floor)
            if conditional and floor is None:
                polite = device.deployment_id is not None
            if polite:
                self.ctx.send(cl.ShutdownNotice(device_id=device.id,
                                                reason=cl.ShutdownReason.NEWSQUIRREL))
            else:
                self.ctx.send(cl.Restart(device_id=device.id,
                                         reason="conditional" if conditional else "restart"))
            self.ctx.agents.device_changed(device.id, restart=True)
        return len(devices)

    def _runs_at_least(self, device: Device, floor_seq: int) -> bool:
        if device.deployment_id is None:
            return False
        seq = self.ctx.repos.deployments.seq_of(device.deployment_id)
        return seq is not None and seq >= floor_seq
