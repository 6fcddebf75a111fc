"""What a device should run, and the messages that tell it so.

One place decides a device's code, so a ``hello``, a blessing, a reassignment and
a restart all offer the same thing:

* no group, or a production group that loads code at first end-user BlinkUp and
  has not seen it yet: no code;
* impOS older than the product's or group's minimum: ``os_offer`` first (the
  newest release at or above the minimum), code only after the device restarts
  on the new impOS;
* otherwise the group's current deployment, offered when the device runs another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from impfactory.cloud.model import Deployment, Device, DeviceGroup, ImposRelease, version_key
from impfactory.protocol import cloudlink as cl

if TYPE_CHECKING:
    from impfactory.cloud.service import CloudService


def required_impos(svc: CloudService, device: Device) -> str | None:
    """The minimum impOS version the device's product or group asks for, if any."""
    return _required_impos(svc, _group(svc, device))


def impos_update(svc: CloudService, device: Device) -> ImposRelease | None:
    """The impOS release the device must install first, or None when it is new enough."""
    return _impos_update(svc, device, required_impos(svc, device))


def target_deployment(svc: CloudService, device: Device) -> Deployment | None:
    """The deployment the device should run now (None: none)."""
    return _target_deployment(svc, device, _group(svc, device))


def code_messages(svc: CloudService, device: Device) -> list[cl.Message]:
    """``os_offer`` or ``code_offer`` when the device should change what it runs."""
    return _code_messages(svc, device, _group(svc, device))


def configparams(svc: CloudService, device: Device) -> dict[str, str | bool]:
    """``imp.configparams``: on a DUT, the fixture's device ID and agent URL."""
    return _configparams(svc, device, _group(svc, device))


def assignment(svc: CloudService, device: Device) -> cl.Assignment:
    return _assignment(device, _group(svc, device))


def assignment_messages(svc: CloudService, device: Device) -> list[cl.Message]:
    """Everything a device is told when its group changes: group, params, code."""
    # this runs for every hello and blessing on the line: the group is read once
    group = _group(svc, device)
    return [
        _assignment(device, group),
        cl.ConfigParams(device_id=device.id, params=_configparams(svc, device, group)),
        *_code_messages(svc, device, group),
    ]


# ---------------------------------------------------------------- given the device's group


def _group(svc: CloudService, device: Device) -> DeviceGroup | None:
    return svc.get_group(device.group_id) if device.group_id else None


def _required_impos(svc: CloudService, group: DeviceGroup | None) -> str | None:
    if group is None:
        return None
    product = svc.get_product(group.product_id)
    wanted = [v for v in (product.min_impos_version, group.min_impos_version) if v]
    return max(wanted, key=version_key) if wanted else None


def _impos_update(svc: CloudService, device: Device, minimum: str | None) -> ImposRelease | None:
    if minimum is None or version_key(device.impos_version or "0") >= version_key(minimum):
        return None
    releases = [r for r in svc.impos_releases() if version_key(r.version) >= version_key(minimum)]
    return releases[-1] if releases else None


def _target_deployment(svc: CloudService, device: Device,
                       group: DeviceGroup | None) -> Deployment | None:
    if group is None:
        return None
    if group.type.is_production and not (group.load_code_after_blessing or device.activated):
        return None
    if group.current_deployment is None:
        return None
    return svc.get_deployment(group.current_deployment)


def _code_messages(svc: CloudService, device: Device,
                   group: DeviceGroup | None) -> list[cl.Message]:
    minimum = _required_impos(svc, group)
    update = _impos_update(svc, device, minimum)
    if update is not None:
        ref = svc.images.offer_ref(cl.ImageKind.IMPOS, update.sha, update.size)
        return [cl.OsOffer(device_id=device.id, version=update.version, image=ref)]
    if minimum is not None and version_key(device.impos_version or "0") < version_key(minimum):
        svc.append_log(device.id, f"impOS {minimum} required but no such release is available")
        return []
    dep = _target_deployment(svc, device, group)
    if dep is None or dep.id == device.deployment_id:
        return []
    images = svc.images
    device_ref = images.offer_ref(cl.ImageKind.DEVICE, dep.device_sha,
                                  len(dep.device_code.encode()))
    agent_ref = images.offer_ref(cl.ImageKind.AGENT, dep.agent_sha, len(dep.agent_code.encode()))
    return [cl.CodeOffer(device_id=device.id, deployment=dep.id, sha=dep.sha, device=device_ref,
                         agent=agent_ref)]


def _configparams(svc: CloudService, device: Device,
                  group: DeviceGroup | None) -> dict[str, str | bool]:
    """What ``imp.configparams`` holds on a device running factory firmware.

    As Electric Imp's FactoryTools reads them (IMP_FACTS §4): ``factoryfirmware``
    is true on fixtures and DUTs, and ``factory_imp`` is the fixture's MAC, so a
    fixture finds its own MAC there and a DUT another. ``factory_imp_device_id``
    (the fixture's device ID) is ours, kept as an extra. The fixture's agent URL
    (``factory_fixture_url``) belongs to the DUT's *agent*, not to the device.
    """
    if group is None:
        return {}
    if group.type.is_fixture:
        return {"factoryfirmware": True, "factory_imp": device.mac,
                "factory_imp_device_id": device.id}
    if not group.type.is_dut or device.fixture_id is None:
        return {}
    fixture = svc.find_device(device.fixture_id)
    params: dict[str, str | bool] = {"factoryfirmware": True,
                                     "factory_imp_device_id": device.fixture_id}
    if fixture is not None:
        params["factory_imp"] = fixture.mac
    return params


def _assignment(device: Device, group: DeviceGroup | None) -> cl.Assignment:
    return cl.Assignment(
        device_id=device.id,
        group_id=group.id if group else None,
        group_type=group.type.value if group else None,
        product_id=group.product_id if group else None,
        blessed=device.blessed,
    )
