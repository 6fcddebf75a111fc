"""``/devicegroups``: the seven group types, targets, restarts, (un)assignment.

The rules (zones, targets, who may be assigned where, the unbond key) are the
cloud service's; this module parses requests, scopes them to the caller's
account and renders the answers.
"""

from __future__ import annotations

from typing import Any

from impfactory.cloud import api_render as render
from impfactory.cloud.api import Answer, Call, Router
from impfactory.cloud.api_context import ApiContext
from impfactory.cloud.api_jsonapi import (
    BadRequest,
    NotFound,
    Several,
    attributes,
    data_object,
    filters,
    id_list,
    is_bool,
    is_env_vars,
    is_name,
    is_str,
    list_query,
    paginate,
    relationship,
    resource_body,
)
from impfactory.cloud.model import GroupType

GROUP_TYPES = [t.value for t in GroupType]
FILTERS = ("owner.id", "product.id", "type")
ATTRS = {"name": is_name, "description": is_str(1000), "region": is_str(100),
         "env_vars": is_env_vars, "load_code_after_blessing": is_bool}
PRODUCTION_TARGETS = [GroupType.PRE_PRODUCTION.value, GroupType.PRODUCTION.value]
DUT_TARGETS = [GroupType.PRE_DUT.value, GroupType.DUT.value]


def _targets(data: dict[str, Any], *, required: bool = False) -> dict[str, str]:
    """The target relationships given; ``required`` (creating a (pre-)factory fixture
    group): both must be there, or it is a 400 naming the missing one."""
    out = {}
    for name, types in (("production_target", PRODUCTION_TARGETS),
                        ("dut_target", DUT_TARGETS)):
        found = relationship(data, name, types, required=required)
        if found is not None:
            out[name] = found[1]
    return out


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
        data = data_object(call.body(), GROUP_TYPES)
        attrs = attributes(data, ATTRS, required=("name",))
        product = relationship(data, "product", ["product"], required=True)
        assert product is not None
        ctx.product(owner, product[1])
        targets = _targets(data, required=GroupType(data["type"]).is_fixture)
        for target_id in targets.values():
            ctx.group(owner, target_id)
        made = svc.create_group(
            product[1], data["type"], attrs["name"].strip(),
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
        data = data_object(call.body(), [group.type.value], want_id=group.id)
        changes: dict[str, Any] = attributes(data, ATTRS)
        if "name" in changes:
            changes["name"] = changes["name"].strip()
        targets = _targets(data)
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
        ids = [ctx.device(owner, i).id for i in id_list(call.body(), "device")]
        svc.assign_devices(group.id, ids)
        return Answer(204)

    def remove_devices(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        group = ctx.group(owner, call.params["id"])
        devices = [ctx.device(owner, i) for i in id_list(call.body(), "device")]
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
        data = data_object(call.body(), ["deployment"])
        if not isinstance(data.get("id"), str):
            raise BadRequest("data.id must be the deployment's id", code="InvalidBody")
        svc.set_min_supported_deployment(group.id, ctx.deployment(owner, data["id"]).id)
        return Answer(204)

    router.add("GET", "/devicegroups", list_, "List device groups", query=list_query(FILTERS))
    router.add("POST", "/devicegroups", create, "Create a device group of any of the seven types",
               body=resource_body(*GROUP_TYPES))
    router.add("GET", "/devicegroups/{id}", get, "One device group")
    router.add("PATCH", "/devicegroups/{id}", update, "Update attributes and targets",
               body=resource_body(*GROUP_TYPES))
    router.add("DELETE", "/devicegroups/{id}", delete, "Delete an empty, untargeted group")
    router.add("POST", "/devicegroups/{id}/restart", restart, "Restart the group's devices")
    router.add("POST", "/devicegroups/{id}/conditional_restart", conditional_restart,
               "Conditional restart: polite notice at/after min-supported, restart older")
    router.add("POST", "/devicegroups/{id}/relationships/devices", add_devices,
               "Assign or reassign devices to the group", body=resource_body("device", many=True))
    router.add("DELETE", "/devicegroups/{id}/relationships/devices", remove_devices,
               "Unassign devices (production groups need X-Electricimp-Key)",
               body=resource_body("device", many=True))
    router.add("PUT", "/devicegroups/{id}/relationships/min_supported_deployment",
               min_supported, "Set the group's min-supported deployment",
               body=resource_body("deployment"))
