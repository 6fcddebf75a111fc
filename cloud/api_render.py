"""Cloud records → JSON:API resource objects, exactly as the clients read them.

Optional relationships are left out rather than null; a device is "unassigned"
to impt only when its ``devicegroup`` key is absent.
"""

from __future__ import annotations

from impfactory.cloud.api_jsonapi import JsonObj, iso, rel, resource
from impfactory.cloud.model import Deployment, Device, DeviceGroup, Product, Webhook
from impfactory.cloud.service import CloudService

PROMOTED_TAG = "promoted"
"""The tag that promotes a deployment (the clients refuse unknown attributes)."""


def product(p: Product) -> JsonObj:
    """A ``product`` resource."""
    return resource("product", p.id,
                    {"name": p.name, "description": p.description,
                     "created_at": iso(p.created_at), "updated_at": iso(p.updated_at)},
                    {"owner": rel("account", p.owner_id)})


def group(g: DeviceGroup, svc: CloudService) -> JsonObj:
    """A device group resource (its JSON:API type is the group type)."""
    attrs: JsonObj = {"name": g.name, "description": g.description, "env_vars": g.env_vars,
                      "created_at": iso(g.created_at), "updated_at": iso(g.updated_at)}
    if g.type.is_production:
        attrs["region"] = g.region or ""
        attrs["load_code_after_blessing"] = g.load_code_after_blessing
    rels = {
        "product": rel("product", g.product_id),
        "owner": rel("account", g.owner_id),
        "creator": rel("account", g.owner_id),
        "current_deployment": rel("deployment", g.current_deployment),
        "min_supported_deployment": rel("deployment", g.min_supported_deployment),
    }
    for key, target_id in (("production_target", g.production_target),
                           ("dut_target", g.dut_target)):
        if target_id:
            rels[key] = rel(svc.get_group(target_id).type.value, target_id)
    return resource(g.type.value, g.id, attrs, rels)


def tags(d: Deployment) -> list[str]:
    """A deployment's tags as the clients see them: ``promoted`` shows promotion."""
    out = list(d.tags)
    if d.promoted and PROMOTED_TAG not in out:
        out.append(PROMOTED_TAG)
    if not d.promoted and PROMOTED_TAG in out:
        out.remove(PROMOTED_TAG)
    return out


def deployment(d: Deployment, group_type: str, *, with_code: bool) -> JsonObj:
    """A ``deployment``; lists leave the code out, ``GET /deployments/{id}`` carries it.

    ``promoted`` is this emulator's documented extension attribute.
    """
    attrs: JsonObj = {"sha": d.sha, "tags": tags(d), "origin": d.origin, "flagged": d.flagged,
                      "description": d.description, "promoted": d.promoted,
                      "created_at": iso(d.created_at), "updated_at": iso(d.updated_at)}
    if with_code:
        attrs["device_code"] = d.device_code
        attrs["agent_code"] = d.agent_code
    return resource("deployment", d.id, attrs, {
        "devicegroup": rel(group_type, d.group_id),
        "product": rel("product", d.product_id),
        "owner": rel("account", d.owner_id),
        "creator": rel("account", d.owner_id),
    })


def device(d: Device, svc: CloudService) -> JsonObj:
    """A ``device``; ``devicegroup`` only when assigned. An unassigned device runs no
    agent: ``agent_id`` is empty and ``agent_running`` false, as impCentral shows it.
    ``agent_running`` is whether its agent runs now, where the cloud runs agents."""
    agent = d.agent_id if d.group_id else None
    running = svc.agents.is_running(d.id)
    attrs: JsonObj = {
        "name": d.name, "mac_address": d.mac, "agent_id": agent or "",
        "agent_url": svc.agent_url(agent),
        "device_online": d.online,
        "agent_running": (d.online and agent is not None) if running is None else running,
        "imp_type": d.imp_type,
        "swversion": d.impos_version, "plan_id": d.plan_id, "ip_address": None,
        "blessed": d.blessed, "activated": d.activated, "device_state": d.connection,
        "led": d.led, "created_at": iso(d.created_at),
        "last_enrolled_at": iso(d.last_enrolled_at) if d.last_enrolled_at else None,
        "blessed_at": iso(d.blessed_at) if d.blessed_at else None,
    }
    rels = {"owner": rel("account", d.owner_id), "product": rel("product", d.product_id),
            "deployment": rel("deployment", d.deployment_id)}
    if d.group_id:
        rels["devicegroup"] = rel(svc.get_group(d.group_id).type.value, d.group_id)
    return resource("device", d.id, attrs, rels)


def webhook(w: Webhook, svc: CloudService) -> JsonObj:
    """A ``webhook``."""
    g = svc.get_group(w.group_id)
    return resource("webhook", w.id, {
        "event": w.event, "url": w.url, "content_type": w.content_type,
        "created_at": iso(w.created_at)}, {
        "devicegroup": rel(g.type.value, g.id), "product": rel("product", g.product_id),
        "owner": rel("account", g.owner_id)})
