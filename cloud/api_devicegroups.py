"""``/devicegroups``: the seven group types, targets, restarts, (un)assignment.

The rules (zones, targets, who may be assigned where, the unbond key) are the
cloud service's; this module parses requests, scopes them to the caller's
account and renders the answers.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from msgspec import UNSET, Struct, UnsetType

from impfactory.cloud import api_render as render
from impfactory.cloud.api import Answer, Call, Router
from impfactory.cloud.api_context import ApiContext
from impfactory.cloud.api_jsonapi import (
    BadRequest,
    NotFound,
    Several,
    filters,
    list_query,
    paginate,
)
from impfactory.cloud.api_models import (
    Description,
    Id,
    IdListBody,
    Name,
    ResourceBody,
    meta,
    optional,
)
from impfactory.cloud.model import GroupType
from impfactory.protocol.constraints import Limits

GROUP_TYPES = [t.value for t in GroupType]
FILTERS = ("owner.id", "product.id", "type")
MAX_ENV_VARS = 16384
"""``env_vars`` as compact JSON may take this many characters."""

EnvVars = Annotated[dict[str, str | int | float | bool | None], meta(
    Limits(), f"scalar values by name, at most {MAX_ENV_VARS} characters as JSON")]


class GroupAttributes(Struct, forbid_unknown_fields=True, kw_only=True):
    """A device group's attributes (``load_code_after_blessing`` and ``region`` are for
    production groups: the service refuses them elsewhere)."""

    name: Name
    description: Description | UnsetType = UNSET
    region: Annotated[str, meta(Limits(max_length=100))] | UnsetType = UNSET
    env_vars: EnvVars | UnsetType = UNSET
    load_code_after_blessing: bool | UnsetType = UNSET

    def __post_init__(self) -> None:
        """The one limit JSON Schema cannot state (the schema says it in words); a refusal
        "<attribute>: why" is a 400 pointing at that attribute (``api_models``)."""
        if (not isinstance(self.env_vars, UnsetType)
                and len(json.dumps(self.env_vars, separators=(",", ":"))) > MAX_ENV_VARS):
            raise ValueError(f"env_vars: more than {MAX_ENV_VARS} characters as JSON")


class ProductRef(Struct):
    type: Literal["product"]
    id: Id


class GroupRef(Struct):
    """A device group of any of the seven types."""

    type: GroupType
    id: Id


class ProductionTargetRef(Struct):
    """A fixture group's production target: a production group of its zone."""

    type: Literal["pre_production_devicegroup", "production_devicegroup"]
    id: Id


class DutTargetRef(Struct):
    """A fixture group's DUT target: a DUT group of its zone."""

    type: Literal["pre_dut_devicegroup", "dut_devicegroup"]
    id: Id


class GroupTargets(Struct, kw_only=True):
    """A fixture group's targets, when changed."""

    production_target: ProductionTargetRef | UnsetType = UNSET
    dut_target: DutTargetRef | UnsetType = UNSET


class GroupRelationships(GroupTargets, kw_only=True):
    """The product a new group belongs to (targets: only fixture groups have them)."""

    product: ProductRef


class FixtureGroupRelationships(Struct, kw_only=True):
    """A new (pre-)factory fixture group: its product and both targets."""

    product: ProductRef
    production_target: ProductionTargetRef
    dut_target: DutTargetRef


class DeviceRef(Struct):
    type: Literal["device"]
    id: Id


GroupChanges = optional(GroupAttributes, "GroupChanges")
CREATE = ResourceBody("DeviceGroupCreate", {
    t.value: (GroupAttributes, FixtureGroupRelationships if t.is_fixture else GroupRelationships)
    for t in GroupType})
UPDATE = ResourceBody("DeviceGroupUpdate", {t.value: (GroupChanges, GroupTargets)
                                             for t in GroupType})
DEVICES = IdListBody("DeviceList", DeviceRef)
MIN_SUPPORTED = ResourceBody.of("MinSupportedDeployment", "deployment", None, None, id=True)


def register(router: Router, ctx: ApiContext) -> None:
    """Add the device group routes."""
    svc = ctx.svc

    def list_(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        f = filters(call.query, FILTERS)
        if "type" in f and f["type"] not in GROUP_TYPES:
            raise BadRequest(f"filter[type] must be one of {GROUP_TYPES}", code="InvalidFilter")
        groups = [] if f.get("owner.id", owner) != owner else svc.list_groups(
            owner_id=owner, product_id=f.get("product.id"), type=f.get("type"))
        return Answer(200, paginate(groups, call.query, "/v5/devicegroups", FILTERS,
                                    lambda g: render.group(g, svc)))

    def create(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        body = CREATE.parse(call.body())
        attrs = body.attrs
        product = ctx.product(owner, body.rels.pop("product"))
        targets = body.rels
        for target_id in targets.values():
            ctx.group(owner, target_id)
        made = svc.create_group(
            product.id, body.type, attrs["name"].strip(),
            description=attrs.get("description", ""),
            load_code_after_blessing=attrs.get("load_code_after_blessing"),
            region=attrs.get("region"), env_vars=attrs.get("env_vars"), **targets)
        return Answer(201, {"data": render.group(made, svc)})

    def get(call: Call) -> Answer:
        return Answer(200, {"data": render.group(
            ctx.group(ctx.owner(call.account), call.params["id"]), svc)})

    def update(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        group = ctx.group(owner, call.params["id"])
        body = UPDATE.parse(call.body(), want_id=group.id, types=[group.type.value])
        changes: dict[str, Any] = body.attrs
        if "name" in changes:
            changes["name"] = changes["name"].strip()
        targets = body.rels
        for target_id in targets.values():
            ctx.group(owner, target_id)
        changes.update(targets)
        updated = svc.update_group(group.id, **changes) if changes else group
        return Answer(200, {"data": render.group(updated, svc)})

    def delete(call: Call) -> Answer:
        svc.delete_group(ctx.group(ctx.owner(call.account), call.params["id"]).id)
        return Answer(204)

    def restart(call: Call) -> Answer:
        svc.restart_group(ctx.group(ctx.owner(call.account), call.params["id"]).id)
        return Answer(204)

    def conditional_restart(call: Call) -> Answer:
        group = ctx.group(ctx.owner(call.account), call.params["id"])
        svc.restart_group(group.id, conditional=True)
        return Answer(204)

    def add_devices(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        group = ctx.group(owner, call.params["id"])
        ids = [ctx.device(owner, i).id for i in DEVICES.parse(call.body())]
        svc.assign_devices(group.id, ids)
        return Answer(204)

    def remove_devices(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        group = ctx.group(owner, call.params["id"])
        devices = [ctx.device(owner, i) for i in DEVICES.parse(call.body())]
        absent = [NotFound(f"device {d.id} is not assigned to device group {group.id}")
                  for d in devices if d.group_id != group.id]
        if absent:
            raise Several("some devices are not in this device group", absent)
        svc.unassign_devices([d.id for d in devices], call.header("X-Electricimp-Key"),
                             group_id=group.id)
        return Answer(204)

    def min_supported(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        group = ctx.group(owner, call.params["id"])
        dep_id = MIN_SUPPORTED.parse(call.body()).id
        assert dep_id is not None  # the model requires it
        svc.set_min_supported_deployment(group.id, ctx.deployment(owner, dep_id).id)
        return Answer(204)

    router.add("GET", "/devicegroups", list_, "List device groups", query=list_query(FILTERS))
    router.add("POST", "/devicegroups", create, "Create a device group of any of the seven types",
               body=CREATE)
    router.add("GET", "/devicegroups/{id}", get, "One device group")
    router.add("PATCH", "/devicegroups/{id}", update, "Update attributes and targets",
               body=UPDATE)
    router.add("DELETE", "/devicegroups/{id}", delete, "Delete an empty, untargeted group")
    router.add("POST", "/devicegroups/{id}/restart", restart, "Restart the group's devices")
    router.add("POST", "/devicegroups/{id}/conditional_restart", conditional_restart,
               "Conditional restart: polite notice at/after min-supported, restart older")
    router.add("POST", "/devicegroups/{id}/relationships/devices", add_devices,
               "Assign or reassign devices to the group", body=DEVICES)
    router.add("DELETE", "/devicegroups/{id}/relationships/devices", remove_devices,
               "Unassign devices (production groups need X-Electricimp-Key)",
               body=DEVICES)
    router.add("PUT", "/devicegroups/{id}/relationships/min_supported_deployment",
               min_supported, "Set the group's min-supported deployment",
               body=MIN_SUPPORTED)
