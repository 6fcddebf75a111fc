"""``/devices``: list (filters incl. group type), get, rename, remove, restart, logs."""

from __future__ import annotations

from typing import Annotated

from msgspec import Struct

from impfactory.cloud import api_render as render
from impfactory.cloud.api import Answer, Call, Router
from impfactory.cloud.api_context import ApiContext
from impfactory.cloud.api_devicegroups import GROUP_TYPES
from impfactory.cloud.api_jsonapi import (
    BadRequest,
    filters,
    iso,
    list_query,
    page_args,
    paginate,
)
from impfactory.cloud.api_models import ResourceBody, meta
from impfactory.protocol.constraints import Limits

FILTERS = ("owner.id", "product.id", "devicegroup.id", "devicegroup.owner.id",
           "devicegroup.type")


class DeviceAttributes(Struct, forbid_unknown_fields=True):
    """A device's one writable attribute."""

    name: Annotated[str, meta(Limits(max_length=80))]


RENAME = ResourceBody.of("DeviceRename", "device", DeviceAttributes, None)


def register(router: Router, ctx: ApiContext) -> None:
    """Add the device routes."""
    svc = ctx.svc

    def list_(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        f = filters(call.query, FILTERS)
        if "devicegroup.type" in f and f["devicegroup.type"] not in GROUP_TYPES:
            raise BadRequest(f"filter[devicegroup.type] must be one of {GROUP_TYPES}",
                             code="InvalidFilter")
        foreign = any(f.get(k, owner) != owner for k in ("owner.id", "devicegroup.owner.id"))
        devices = [] if foreign else svc.device_view(
            owner_id=owner, group_id=f.get("devicegroup.id"), product_id=f.get("product.id"),
            group_type=f.get("devicegroup.type"))
        return Answer(200, paginate(devices, call.query, "/v5/devices", FILTERS,
                                    lambda d: render.device(d, svc)))

    def get(call: Call) -> Answer:
        dev = ctx.device(ctx.owner(call.account), call.params["id"])
        return Answer(200, {"data": render.device(dev, svc)})

    def update(call: Call) -> Answer:
        dev = ctx.device(ctx.owner(call.account), call.params["id"])
        name = RENAME.parse(call.body()).attrs["name"]
        return Answer(200, {"data": render.device(svc.rename_device(dev.id, name),
                                                  svc)})

    def delete(call: Call) -> Answer:
        svc.delete_device(ctx.device(ctx.owner(call.account), call.params["id"]).id)
        return Answer(204)

    def restart(call: Call) -> Answer:
        svc.restart_device(ctx.device(ctx.owner(call.account), call.params["id"]).id)
        return Answer(204)

    def conditional_restart(call: Call) -> Answer:
        dev = ctx.device(ctx.owner(call.account), call.params["id"])
        svc.restart_device(dev.id, conditional=True)
        return Answer(204)

    def logs(call: Call) -> Answer:
        dev = ctx.device(ctx.owner(call.account), call.params["id"])
        filters(call.query, ())
        number, size = page_args(call.query)
        # one extra entry tells whether another page exists
        entries = svc.device_logs(dev.id, page=1, size=number * size + 1, newest_first=True)
        page = entries[(number - 1) * size:number * size]
        base = f"/v5/devices/{dev.id}/logs?page%5Bsize%5D={size}&page%5Bnumber%5D="
        links = {"self": f"{base}{number}", "first": f"{base}1"}
        if len(entries) > number * size:
            links["next"] = f"{base}{number + 1}"
        if number > 1:
            links["prev"] = f"{base}{number - 1}"
        data = [{"ts": iso(e.ts), "type": e.type, "msg": e.msg} for e in page]
        return Answer(200, {"data": data, "links": links})

    router.add("GET", "/devices", list_, "List devices (filters incl. devicegroup.type)",
               query=list_query(FILTERS))
    router.add("GET", "/devices/{id}", get, "One device (by id, MAC or agent id)")
    router.add("PATCH", "/devices/{id}", update, "Rename a device", body=RENAME)
    router.add("DELETE", "/devices/{id}", delete, "Remove an unassigned device from the account")
    router.add("POST", "/devices/{id}/restart", restart, "Restart a device")
    router.add("POST", "/devices/{id}/conditional_restart", conditional_restart,
               "Conditional restart of a device")
    router.add("GET", "/devices/{id}/logs", logs, "A device's logs, newest first",
               query=list_query())
