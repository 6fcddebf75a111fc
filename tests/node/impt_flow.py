"""How ``impt`` turns a command into ``imp-central-api`` calls (IMPCENTRAL_API.md §1-§5).

``impt`` itself is not on the npm registry reachable here, but it is a thin
layer over the ``imp-central-api`` library: every HTTP request it makes is a
library call. ``Impt`` composes the library calls (run by node through
``NodeClient``) the way impt's own code does, so the server is driven by the
real client with impt's habits:

* every list is paged with ``page[size]=100`` from page 1, asking for the next
  page while ``links.next`` is present (a server that sends ``next: null`` or
  never drops it makes impt loop: ``MAX_PAGES`` turns that into a failure);
* ``--product``, ``--dg``, ``--device``, ``--build`` are first fetched as ids and,
  on a 404, matched in the whole listed collection (product by name, group by
  name across products, device by MAC then agent id then name, deployment by
  sha then tags then origin); several matches are an error;
* ``dg restart``, ``dg reassign``, ``dg unassign`` list the group's devices first
  and make no call when there are none;
* ``dg update --min-supported-deployment`` PUTs the relationship, then PATCHes
  the group with empty attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from impcentral_node import NodeCallError, NodeClient

MAX_PAGES = 50
PAGE_SIZE = 100


class ImptError(Exception):
    """What impt would print and exit non-zero for (not found, ambiguous)."""


@dataclass
class Impt:
    """impt's command logic over a logged-in ``NodeClient``; ``pages`` counts list requests."""

    imp: NodeClient
    pages: list[tuple[str, int, int]] = field(default_factory=list)

    # -- the two habits every command shares -------------------------------------------
    def list_all(self, member: str, filters: dict[str, str] | None = None) -> list[Any]:
        """``member.list(filters, n, 100)`` for n = 1, 2, … while ``links.next`` is present."""
        items: list[Any] = []
        for number in range(1, MAX_PAGES + 1):
            page = self.imp(f"{member}.list", filters or None, number, PAGE_SIZE)
            assert isinstance(page.get("links"), dict), "links is mandatory on lists"
            self.pages.append((member, number, len(page["data"])))
            items += page["data"]
            if "next" not in page["links"]:
                return items
            assert page["links"]["next"], "next must be absent, never null, on the last page"
        raise AssertionError(f"{member}: still a links.next after {MAX_PAGES} pages")

    def resolve(self, member: str, ident: str) -> dict[str, Any]:
        """GET as an id; on 404 list everything and match as §4 says."""
        try:
            return dict(self.imp(f"{member}.get", ident)["data"])
        except NodeCallError as err:
            if err.status != 404:
                raise
        everything = self.list_all(member)
        keys = {"products": ["name"], "deviceGroups": ["name"],
                "devices": ["mac_address", "agent_id", "name"],
                "deployments": ["sha", "tags", "origin"]}[member]
        for key in keys:
            found = [item for item in everything if _matches(item["attributes"].get(key), ident)]
            if len(found) > 1:
                raise ImptError(f"more than one {member} entity matches {ident!r}")
            if found:
                return dict(found[0])
        raise ImptError(f"no {member} entity matches {ident!r}")

    # -- the commands of §8 ------------------------------------------------------------
    def product_create(self, name: str, descr: str) -> dict[str, Any]:
        return dict(self.imp("products.create", {"name": name, "description": descr})["data"])

    def dg_create(self, name: str, dg_type: str, product: str, target: str | None = None,
                  dut: str | None = None) -> dict[str, Any]:
        prod = self.resolve("products", product)
        refs = [_ref(self.resolve("deviceGroups", g)) for g in (target, dut) if g]
        return dict(self.imp("deviceGroups.create", prod["id"], dg_type.replace("-", "_")
                             + "_devicegroup", {"name": name}, *refs)["data"])

    def build_deploy(self, dg: str, device_code: str, agent_code: str = "", **attrs: Any
                     ) -> dict[str, Any]:
        group = self.resolve("deviceGroups", dg)
        return dict(self.imp("deployments.create", group["id"], group["type"], {
            "device_code": device_code, "agent_code": agent_code, **attrs})["data"])

    def dg_update(self, dg: str, **attrs: Any) -> None:
        group = self.resolve("deviceGroups", dg)
        self.imp("deviceGroups.update", group["id"], group["type"], attrs)

    def dg_set_min_supported(self, dg: str, build: str) -> None:
        group = self.resolve("deviceGroups", dg)
        dep = self.resolve("deployments", build)
        self.imp("deviceGroups.updateMinSupportedDeployment", group["id"], dep["id"])
        self.imp("deviceGroups.update", group["id"], group["type"], {})

    def webhook_create(self, dg: str, url: str, event: str, mime: str) -> dict[str, Any]:
        group = self.resolve("deviceGroups", dg)
        ctype = {"json": "application/json",
                 "urlencoded": "application/x-www-form-urlencoded"}[mime]
        return dict(self.imp("webhooks.create", group["id"], group["type"],
                             {"event": event, "url": url, "content_type": ctype})["data"])

    def device_assign(self, device: str, dg: str) -> None:
        dev = self.resolve("devices", device)
        group = self.resolve("deviceGroups", dg)
        self.imp("deviceGroups.addDevices", group["id"], dev["id"])

    def device_list(self, dg: str) -> list[Any]:
        group = self.resolve("deviceGroups", dg)
        return self.list_all("devices", {"filter[devicegroup.id]": group["id"]})

    def dg_restart(self, dg: str, conditional: bool) -> int:
        """Restarts the group's devices; returns how many there were (0: no call made)."""
        group = self.resolve("deviceGroups", dg)
        devices = self.list_all("devices", {"filter[devicegroup.id]": group["id"]})
        if devices:
            call = "conditionalRestartDevices" if conditional else "restartDevices"
            self.imp(f"deviceGroups.{call}", group["id"])
        return len(devices)

    def build_copy(self, build: str, dg: str) -> dict[str, Any]:
        """Copies the code (the whole deployment is fetched: lists carry no code)."""
        source = self.imp("deployments.get", self.resolve("deployments", build)["id"])["data"]
        group = self.resolve("deviceGroups", dg)
        attrs = source["attributes"]
        return dict(self.imp("deployments.create", group["id"], group["type"], {
            "device_code": attrs["device_code"], "agent_code": attrs["agent_code"]})["data"])

    def dg_reassign(self, from_dg: str, to_dg: str) -> list[str]:
        source = self.resolve("deviceGroups", from_dg)
        target = self.resolve("deviceGroups", to_dg)
        ids = [d["id"] for d in
               self.list_all("devices", {"filter[devicegroup.id]": source["id"]})]
        if ids:
            self.imp("deviceGroups.addDevices", target["id"], *ids)
        return ids

    def dg_unassign(self, dg: str, unbond: str | None) -> list[str]:
        group = self.resolve("deviceGroups", dg)
        ids = [d["id"] for d in
               self.list_all("devices", {"filter[devicegroup.id]": group["id"]})]
        if ids:
            self.imp("deviceGroups.removeDevices", group["id"], unbond, *ids)
        return ids

    def device_unassign(self, device: str) -> None:
        """``impt device unassign --unbond KEY`` never sends the key (§7): neither do we."""
        dev = self.resolve("devices", device)
        self.imp("devices.get", dev["id"])
        group = dev["relationships"]["devicegroup"]
        self.imp("deviceGroups.removeDevices", group["id"], None, dev["id"])

    def log_get(self, device: str, page_number: int, page_size: int) -> list[Any]:
        dev = self.resolve("devices", device)
        return list(self.imp("devices.getLogs", dev["id"], page_number, page_size)["data"])


def _matches(value: Any, ident: str) -> bool:
    return ident in value if isinstance(value, list) else value == ident


def _ref(group: dict[str, Any]) -> dict[str, str]:
    return {"type": group["type"], "id": group["id"]}
