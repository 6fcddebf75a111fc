"""Go Live: build a Production Zone from a Test Zone in one call (IMP_FACTS §5).

``POST /v5/devicegroups/{id}/go_live`` (an extension; ``{id}`` is a test fixture
group, ``pre_factoryfixture_devicegroup``) with::

    {"data": {"type": "go_live", "attributes": {
        "production": {"name": "...", "description": "..."},
        "dut":        {"name": "...", "description": "..."},
        "fixture":    {"name": "...", "description": "..."},
        "load_code_after_blessing": true,
        "webhooks": [{"event": "blessing", "url": "http://...",
                      "content_type": "application/json"}],
        "deployments": {"production": "<id>", "dut": "<id>", "fixture": "<id>"}   # optional
    }}}

creates, in this order: a production group from the fixture's test production
target, a DUT group from its test DUT target, a fixture group targeting both,
then copies into each the newest promoted deployment of its Test Zone twin (or
the promoted deployment named in ``deployments``), sets the load-code setting
and the webhooks, and answers a summary of everything made. As in impCentral, a
copy is a new deployment of the new group with the same code (same ``sha``), not
itself promoted. The body (its model ``GoLiveAttributes``), the promoted deployments
and three distinct names are checked before anything is made, and what the service
refuses on the way (a taken name, a webhook URL that is not http(s)) rolls the one
transaction back, so a refused Go Live leaves nothing behind.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import UNSET, Struct, UnsetType

from impfactory.cloud import api_render as render
from impfactory.cloud.api import Answer, Call, Router
from impfactory.cloud.api_context import ApiContext
from impfactory.cloud.api_jsonapi import BadRequest, JsonObj, resource
from impfactory.cloud.api_models import Description, Id, Name, ResourceBody, meta
from impfactory.cloud.api_webhooks import Url
from impfactory.cloud.model import (
    WEBHOOK_CONTENT_TYPES,
    Deployment,
    DeviceGroup,
    GroupType,
    WebhookContentType,
    WebhookEvent,
)
from impfactory.protocol.constraints import Limits

ROLES = ("production", "dut", "fixture")
NEW_TYPE = {"production": GroupType.PRODUCTION, "dut": GroupType.DUT,
            "fixture": GroupType.FACTORYFIXTURE}


class NewGroup(Struct, forbid_unknown_fields=True, kw_only=True):
    """One of the three Production Zone groups to create."""

    name: Name
    description: Description | UnsetType = UNSET


class NewWebhook(Struct, forbid_unknown_fields=True, kw_only=True):
    """A webhook of the new production group."""

    event: WebhookEvent
    url: Url
    content_type: WebhookContentType | UnsetType = UNSET


class ChosenDeployments(Struct, forbid_unknown_fields=True, kw_only=True):
    """Promoted deployments to copy instead of each Test Zone group's newest promoted one."""

    production: Id | UnsetType = UNSET
    dut: Id | UnsetType = UNSET
    fixture: Id | UnsetType = UNSET


class GoLiveAttributes(Struct, forbid_unknown_fields=True, kw_only=True):
    """Go Live's request (see the module docstring)."""

    production: NewGroup
    dut: NewGroup
    fixture: NewGroup
    load_code_after_blessing: bool | UnsetType = UNSET
    webhooks: Annotated[list[NewWebhook], meta(Limits(max_length=20))] | UnsetType = UNSET
    deployments: ChosenDeployments | UnsetType = UNSET


GO_LIVE = ResourceBody.of("GoLive", "go_live", GoLiveAttributes, None)


def _promoted(ctx: ApiContext, owner: str, group: DeviceGroup, chosen: str | None
              ) -> Deployment:
    """The promoted deployment to copy out of ``group``'s Test Zone twin."""
    if chosen is not None:
        dep = ctx.deployment(owner, chosen)
        if dep.product_id != group.product_id or not dep.promoted:
            raise BadRequest(f"deployment {chosen} is not a promoted deployment of this product",
                             code="NotPromoted")
        return dep
    for dep in ctx.svc.list_deployments(group_id=group.id):  # newest first
        if dep.promoted:
            return dep
    raise BadRequest(f"group {group.name!r} has no promoted deployment: promote one first "
                     "(attribute 'promoted' or tag 'promoted')", code="NotPromoted")


def go_live(ctx: ApiContext, owner: str, fixture_id: str, attrs: JsonObj) -> JsonObj:
    """Build the Production Zone in one transaction; returns the summary document."""
    svc = ctx.svc
    test_fixture = ctx.group(owner, fixture_id)
    if test_fixture.type is not GroupType.PRE_FACTORYFIXTURE:
        raise BadRequest("Go Live starts from a test fixture group "
                         f"({GroupType.PRE_FACTORYFIXTURE.value})", code="InvalidDeviceGroup")
    assert test_fixture.production_target and test_fixture.dut_target
    twins = {"production": svc.get_group(test_fixture.production_target),
             "dut": svc.get_group(test_fixture.dut_target), "fixture": test_fixture}
    chosen = attrs.get("deployments", {})
    sources = {role: _promoted(ctx, owner, twins[role], chosen.get(role)) for role in ROLES}
    if len({attrs[role]["name"].strip() for role in ROLES}) != 3:
        raise BadRequest("the three new groups need three different names", code="DuplicateName")

    made: dict[str, DeviceGroup] = {}
    deps: dict[str, Deployment] = {}
    with svc.tx():  # all or nothing: a refusal half-way rolls everything back
        for role in ROLES:
            spec = attrs[role]
            extra: dict[str, Any] = {}
            if role == "production":
                extra["load_code_after_blessing"] = attrs.get("load_code_after_blessing", True)
            if role == "fixture":
                extra["production_target"] = made["production"].id
                extra["dut_target"] = made["dut"].id
            made[role] = svc.create_group(test_fixture.product_id, NEW_TYPE[role],
                                          spec["name"].strip(),
                                          description=spec.get("description", ""), **extra)
            src = sources[role]
            deps[role] = svc.create_deployment(  # a copy: same code and sha, not promoted
                made[role].id, src.device_code, src.agent_code, description=src.description,
                origin=src.origin, tags=[t for t in src.tags if t != render.PROMOTED_TAG])
        hooks = [svc.create_webhook(made["production"].id, h["event"], h["url"],
                                    h.get("content_type", WEBHOOK_CONTENT_TYPES[0]))
                 for h in attrs.get("webhooks", [])]
    summary = [f"created {made[r].type.value} {made[r].name!r} from {twins[r].type.value} "
               f"{twins[r].name!r} with deployment {deps[r].id} (a copy of promoted "
               f"{sources[r].id})" for r in ROLES]
    summary.append(f"load_code_after_blessing = {made['production'].load_code_after_blessing}")
    summary += [f"webhook {h.event} -> {h.url} ({h.content_type})" for h in hooks]
    rels = {f"{NEW_TYPE[r].value}": {"type": made[r].type.value, "id": made[r].id}
            for r in ROLES}
    return {
        "data": resource("go_live", test_fixture.id, {"summary": summary}, rels),
        "included": [render.group(svc.get_group(made[r].id), svc) for r in ROLES]
        + [render.deployment(deps[r], made[r].type.value, with_code=False) for r in ROLES]
        + [render.webhook(h, svc) for h in hooks],
    }


def register(router: Router, ctx: ApiContext) -> None:
    """Add the Go Live route."""

    def handler(call: Call) -> Answer:
        owner = ctx.owner(call.account)
        ctx.group(owner, call.params["id"])
        attrs = GO_LIVE.parse(call.body()).attrs
        return Answer(201, go_live(ctx, owner, call.params["id"], attrs))

    router.add("POST", "/devicegroups/{id}/go_live", handler,
               "Extension: Go Live: build the Production Zone from a test fixture group",
               body=GO_LIVE)
