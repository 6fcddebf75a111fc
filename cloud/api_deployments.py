"""``/deployments``: create, list, get, update, delete, and promotion.

Any group takes a deployment, Production Zone groups too: ``impt build deploy``
and ``impt build copy`` into production, DUT and fixture groups work as Electric
Imp's ProductionGuide writes them. Promotion is a mark on a deployment, as in
impCentral (which enforces no workflow with it): this emulator's documented
extension shows it as the ``promoted`` attribute, or equally the tag ``promoted``
(which ``imp-central-api`` and ``impt build update --tag promoted`` can send,
since both clients refuse unknown attributes); Go Live copies the promoted Test
Zone deployments.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import UNSET, Struct, UnsetType

from impfactory.cloud import api_render as render
from impfactory.cloud.api import Answer, Call, Router
from impfactory.cloud.api_context import ApiContext
from impfactory.cloud.api_devicegroups import GroupRef
from impfactory.cloud.api_jsonapi import BadRequest, JsonObj, filters, list_query, paginate
from impfactory.cloud.api_models import Description, ResourceBody, meta
from impfactory.cloud.api_render import PROMOTED_TAG
from impfactory.cloud.model import Deployment
from impfactory.protocol.constraints import Limits

FILTERS = ("owner.id", "creator.id", "product.id", "devicegroup.id", "sha", "flagged",
           "flagger.id", "tags")
MAX_CODE = 4 * 1024 * 1024

Code = Annotated[str, meta(Limits(max_length=MAX_CODE), "Squirrel source")]
Tag = Annotated[str, meta(Limits(min_length=1, max_length=100))]
Tags = Annotated[list[Tag], meta(Limits(max_length=100), "the tag 'promoted' is the "
                                 "Extension attribute 'promoted'")]


class DeploymentChanges(Struct, forbid_unknown_fields=True, kw_only=True):
    """What an update may change (the code never changes)."""

    description: Description | UnsetType = UNSET
    flagged: bool | UnsetType = UNSET
    tags: Tags | UnsetType = UNSET
    promoted: bool | UnsetType = UNSET
    """Extension: impCentral's promotion mark (equally the tag ``promoted``)."""


class DeploymentAttributes(DeploymentChanges, forbid_unknown_fields=True, kw_only=True):
    """A new deployment: its code, and optionally what an update may change."""

    device_code: Code
    agent_code: Code
    origin: Annotated[str, meta(Limits(max_length=1000))] | UnsetType | None = UNSET


class DeploymentRelationships(Struct):
    devicegroup: GroupRef


CREATE = ResourceBody.of("DeploymentCreate", "deployment", DeploymentAttributes,
                         DeploymentRelationships)
UPDATE = ResourceBody.of("DeploymentUpdate", "deployment", DeploymentChanges, None)


def promotion(attrs: dict[str, Any], current: Deployment | None = None
              ) -> tuple[list[str] | None, bool | None]:
    """(tags to store, promoted) from a body: the tag and the attribute agree."""
    tags = list(dict.fromkeys(attrs["tags"])) if "tags" in attrs else None
    promoted: bool | None = None
    if tags is not None:
        promoted = PROMOTED_TAG in tags
    if "promoted" in attrs:
        promoted = bool(attrs["promoted"])
        base = tags if tags is not None else (render.tags(current) if current else [])
        tags = [t for t in base if t != PROMOTED_TAG] + ([PROMOTED_TAG] if promoted else [])
    return tags, promoted


def register(router: Router, ctx: ApiContext) -> None:
    """Add the deployment routes."""
    svc = ctx.svc

    def group_type(group_id: str) -> str:
        return svc.get_group(group_id).type.value

    def list_(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        f = filters(call.query, FILTERS)
        if "flagged" in f and f["flagged"] not in ("true", "false"):
            raise BadRequest("filter[flagged] is 'true' or 'false'", code="InvalidFilter")
        people = [f[k] for k in ("owner.id", "creator.id", "flagger.id") if k in f]
        found = [] if any(p != owner for p in people) else svc.list_deployments(
            owner_id=owner, product_id=f.get("product.id"), group_id=f.get("devicegroup.id"),
            sha=f.get("sha"), flagged=(f["flagged"] == "true") if "flagged" in f else
            (True if "flagger.id" in f else None))
        if "tags" in f:
            wanted = {t for t in f["tags"].split(",") if t}
            found = [d for d in found if wanted <= set(render.tags(d))]
        types: dict[str, str] = {}

        def one(d: Deployment) -> JsonObj:
            if d.group_id not in types:
                types[d.group_id] = group_type(d.group_id)
            return render.deployment(d, types[d.group_id], with_code=False)

        return Answer(200, paginate(found, call.query, "/v5/deployments", FILTERS, one))

    def create(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        body = CREATE.parse(call.body())
        attrs = body.attrs
        group = ctx.group(owner, body.rels["devicegroup"])
        tags, promoted = promotion(attrs)
        dep = svc.create_deployment(
            group.id, attrs["device_code"], attrs["agent_code"],
            description=attrs.get("description", ""), origin=attrs.get("origin"),
            tags=tags or [], flagged=attrs.get("flagged", False), promoted=bool(promoted))
        return Answer(201, {"data": render.deployment(dep, group.type.value, with_code=True)})

    def get(call: Call) -> Answer:
        dep = ctx.deployment(ctx.owner(call.account), call.params["id"])
        return Answer(200, {"data": render.deployment(dep, group_type(dep.group_id),
                                                      with_code=True)})

    def update(call: Call) -> Answer:
        dep = ctx.deployment(ctx.owner(call.account), call.params["id"])
        attrs = UPDATE.parse(call.body(), want_id=dep.id).attrs
        tags, promoted = promotion(attrs, dep)
        group = svc.get_group(dep.group_id)
        updated = svc.update_deployment(dep.id, description=attrs.get("description"),
                                        flagged=attrs.get("flagged"), tags=tags,
                                        promoted=promoted)
        return Answer(200, {"data": render.deployment(updated, group.type.value,
                                                      with_code=True)})

    def delete(call: Call) -> Answer:
        svc.delete_deployment(ctx.deployment(ctx.owner(call.account), call.params["id"]).id)
        return Answer(204)

    router.add("GET", "/deployments", list_, "List deployments (newest first), with filters",
               query=list_query(FILTERS))
    router.add("POST", "/deployments", create,
               "Create a deployment in any group (the group's first is its min-supported)",
               body=CREATE)
    router.add("GET", "/deployments/{id}", get, "One deployment with its code")
    router.add("PATCH", "/deployments/{id}", update,
               "Update description, flagged, tags; Extension: promoted (or the tag 'promoted')",
               body=UPDATE)
    router.add("DELETE", "/deployments/{id}", delete,
               "Delete a deployment that is not flagged and older than min-supported")
