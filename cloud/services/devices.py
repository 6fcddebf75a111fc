"""Finding devices (paged in the store), naming, claiming and removing them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

from impfactory.cloud.errors import ConflictError, ForbiddenError, InvalidError
from impfactory.cloud.model import Device, GroupType
from impfactory.cloud.services.context import Context, agent_id_for


class Devices:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.repo = ctx.repos.devices

    def get_device(self, device_id: str) -> Device:
        return self.ctx.device(device_id)

    def find_device(self, device_id: str) -> Device | None:
        return self.repo.get(device_id)

    def list_devices(self, *, owner_id: str | None = None, product_id: str | None = None,
                     group_id: str | None = None, group_type: GroupType | str | None = None,
                     online: bool | None = None, mac: str | None = None,
                     agent_id: str | None = None, limit: int | None = None,
                     offset: int = 0) -> list[Device]:
        """Devices matching every filter given, oldest first; ``limit``/``offset`` page in
        the store, so one page of a large fleet never loads the rest of it."""
        if (limit is not None and limit < 0) or offset < 0:
            raise InvalidError("limit and offset must not be negative")
        filters = {"owner_id": owner_id, "product_id": product_id, "group_id": group_id,
                   "group_type": group_type, "online": online, "mac": mac,
                   "agent_id": agent_id}
        return self.repo.list(filters, limit, offset)

    def count_devices(self, **filters: Any) -> int:
        """How many devices ``list_devices(**filters)`` would list (without paging)."""
        return self.repo.count(filters)

    def device_view(self, **filters: Any) -> DeviceView:
        """A lazy, sliceable view of ``list_devices(**filters)`` for paginating: its length
        is one count and each slice one page."""
        self.repo.check_filters(filters)  # unknown filter names fail here, not at first use
        return DeviceView(self, filters)

    def rename_device(self, device_id: str, name: str) -> Device:
        self.ctx.device(device_id)
        with self.ctx.tx():
            self.repo.rename(device_id, name)
        return self.ctx.device(device_id)

    def claim_device(self, device_id: str, owner_id: str) -> Device:
        """Add an unowned device to an account (what a developer BlinkUp does)."""
        device = self.ctx.device(device_id)
        if device.owner_id not in (None, owner_id):
            raise ForbiddenError("the device belongs to another account")
        plan = self.ctx.owner(owner_id).plan_id
        with self.ctx.tx():
            self.repo.owned(device_id, owner_id, plan, agent_id_for(device_id, plan))
        return self.ctx.device(device_id)

    def delete_device(self, device_id: str) -> None:
        device = self.ctx.device(device_id)
        if device.group_id is not None:
            raise ConflictError("unassign the device before removing it")
        with self.ctx.tx():
            self.repo.delete(device_id)


class DeviceView(Sequence[Device]):
    """``list_devices`` as a read-only sequence that queries only what is asked of it."""

    def __init__(self, devices: Devices, filters: dict[str, Any]) -> None:
        self._devices = devices
        self._filters = filters
        self._len: int | None = None

    def __len__(self) -> int:
        if self._len is None:
            self._len = self._devices.count_devices(**self._filters)
        return self._len

    @overload
    def __getitem__(self, index: int) -> Device: ...

    @overload
    def __getitem__(self, index: slice) -> list[Device]: ...

    def __getitem__(self, index: int | slice) -> Device | list[Device]:
        devices = self._devices
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return devices.list_devices(**self._filters)[index]
            return devices.list_devices(**self._filters, limit=max(0, stop - start),
                                        offset=start)
        position = index + len(self) if index < 0 else index
        found = devices.list_devices(**self._filters, limit=1, offset=max(0, position))
        if position < 0 or not found:
            raise IndexError("device index out of range")
        return found[0]

    def __iter__(self) -> Iterator[Device]:
        return iter(self._devices.list_devices(**self._filters))
