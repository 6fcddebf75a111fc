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
* ``dg update --min-supported-deployment`` first checks, in the client, that the
  build is the group's and not older than the group's min-supported one (reading
  that one's ``created_at``: impt 2.6.1 crashes when the group has none), then PUTs
  the relationship and PATCHes the group with the other attributes (maybe none);
* delete commands (``dg delete``, ``product delete``, ``build cleanup``) collect
  what they remove first and, with ``--force``, unassign the groups' devices
  (never sending an unbond key) and unflag flagged builds before deleting groups
  with targets, then the rest, then builds; a 404 there is "already deleted", a
  400 whose every entry is a 404 "already unassigned".

Every method is one impt command line of Electric Imp's ProductionGuide or
CommandsManual (named in its docstring); the calls are what impt 2.6.1 sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from impcentral_node import NodeCallError, NodeClient

MAX_PAGES = 50
PAGE_SIZE = 100
DG_TYPES = {"development": "development_devicegroup",
            "pre-factory": "pre_factoryfixture_devicegroup",
            "pre-production": "pre_production_devicegroup", "pre-dut": "pre_dut_devicegroup",
            "factory": "factoryfixture_devicegroup", "production": "production_devicegroup",
            "dut": "dut_devicegroup"}
"""``--dg-type`` values (impt's Options) → impCentral group types."""
TARGET_TYPES = {"pre_factoryfixture_devicegroup": ("pre_production_devicegroup",
                                                   "pre_dut_devicegroup"),
                "factoryfixture_devicegroup": ("production_devicegroup", "dut_devicegroup")}


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
        found = self.find(member, ident)
        if found is None:
            raise ImptError(f"no {member} entity matches {ident!r}")
        return found

    def find(self, member: str, ident: str) -> dict[str, Any] | None:
        """``resolve``, but ``None`` when nothing matches (impt's ``findEntity``)."""
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
        return None

    # -- the commands of §8 ------------------------------------------------------------
    def product_create(self, name: str, descr: str) -> dict[str, Any]:
        return dict(self.imp("products.create", {"name": name, "description": descr})["data"])

    def dg_create(self, name: str, dg_type: str, product: str, target: str | None = None,
                  dut: str | None = None, descr: str | None = None, *,
                  create_target: bool = False, create_dut: bool = False) -> dict[str, Any]:
        """``impt dg create --name N --dg-type T --product P [--descr D] [--target G
        [--create-target]] [--dut G [--create-dut]]``: each target is found (by id, then
        name), checked for its type and product, or made when ``--create-*`` says so."""
        prod = self.resolve("products", product)
        kind = DG_TYPES[dg_type]
        refs = []
        for ident, create, want in zip((target, dut), (create_target, create_dut),
                                       TARGET_TYPES.get(kind, (None, None)), strict=True):
            if ident is None:
                continue
            if want is None:
                raise ImptError(f"--target/--dut are for factory groups, not {dg_type}")
            found = self.find("deviceGroups", ident)
            if found is None and create:
                found = dict(self.imp("deviceGroups.create", prod["id"], want,
                                      {"name": ident})["data"])
            if found is None:
                raise ImptError(f"target device group {ident!r} is not found")
            if found["type"] != want or found["relationships"]["product"]["id"] != prod["id"]:
                raise ImptError(f"target {ident!r} must be a {want} of {product}")
            refs.append(_ref(found))
        attrs = {"name": name} if descr is None else {"name": name, "description": descr}
        return dict(self.imp("deviceGroups.create", prod["id"], kind, attrs, *refs)["data"])

    def project_create(self, product: str, name: str, descr: str, dg_type: str = "development",
                       **targets: Any) -> dict[str, Any]:
        """``impt project create --product P --name N --descr D [--pre-factory] [--dut G
        --create-dut] [--target G --create-target] --device-file F --agent-file F``: the
        group as ``dg create`` makes it (the project file and the source files are
        local; no build is made)."""
        return self.dg_create(name, dg_type, product, descr=descr, **targets)

    def build_deploy(self, dg: str, device_code: str, agent_code: str = "", **attrs: Any
                     ) -> dict[str, Any]:
        group = self.resolve("deviceGroups", dg)
        return dict(self.imp("deployments.create", group["id"], group["type"], {
            "device_code": device_code, "agent_code": agent_code, **attrs})["data"])

    def dg_update(self, dg: str, min_supported: str | None = None, **attrs: Any) -> None:
        """``impt dg update --dg G [--min-supported-deployment B] [--load-code-after-blessing
        …]``: impt's client-side checks of B, the PUT, then the PATCH."""
        group = self.resolve("deviceGroups", dg)
        if min_supported is not None:
            new = self.resolve("deployments", min_supported)
            if new["relationships"]["devicegroup"]["id"] != group["id"]:
                raise ImptError(f"build {min_supported!r} is not of device group {dg!r}")
            current = group["relationships"].get("min_supported_deployment")
            if current is None:  # DeviceGroup.js: newMinSupported._isOlderThan(null)
                raise ImptError("TypeError: Cannot read properties of null (reading 'createdAt')")
            old = self.imp("deployments.get", current["id"])["data"]
            if new["attributes"]["created_at"] < old["attributes"]["created_at"]:
                raise ImptError("min supported deployment cannot be set to an earlier one")
            self.imp("deviceGroups.updateMinSupportedDeployment", group["id"], new["id"])
        self.imp("deviceGroups.update", group["id"], group["type"], attrs)

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

    def build_copy(self, build: str, dg: str, *, all_attrs: bool = False) -> dict[str, Any]:
        """``impt build copy --build B --dg G [--all]``: the code (the whole deployment is
        fetched: lists carry no code), with ``--all`` its description, origin, tags and
        flag too."""
        source = self.imp("deployments.get", self.resolve("deployments", build)["id"])["data"]
        group = self.resolve("deviceGroups", dg)
        attrs = source["attributes"]
        body = {"device_code": attrs["device_code"], "agent_code": attrs["agent_code"]}
        if all_attrs:
            body.update({k: attrs[k] for k in ("description", "tags", "flagged")})
            if attrs["origin"] is not None:
                body["origin"] = attrs["origin"]
        return dict(self.imp("deployments.create", group["id"], group["type"], body)["data"])

    def dg_builds(self, dg: str) -> list[Any]:
        """``impt dg builds --dg G``: the group's builds."""
        group = self.resolve("deviceGroups", dg)
        return self.list_all("deployments", {"filter[devicegroup.id]": group["id"]})

    def webhook_delete(self, webhook_id: str) -> None:
        """``impt webhook delete --wh ID --confirmed``: webhooks by id only."""
        self.imp("webhooks.get", webhook_id)
        self.imp("webhooks.delete", webhook_id)

    def build_cleanup(self, product: str | None = None, unflag: bool = False) -> list[str]:
        """``impt build cleanup [--product P] [--unflag] --confirmed``: deletes the builds
        that belong to no device group ("zombies"); returns their ids."""
        filters = {}
        if product is not None:
            filters["filter[product.id]"] = self.resolve("products", product)["id"]
        if not unflag:
            filters["filter[flagged]"] = "false"
        zombies = [b for b in self.list_all("deployments", filters)
                   if "devicegroup" not in b["relationships"]]
        plan = _DeletePlan(builds=zombies,
                           flagged=[b for b in zombies if b["attributes"]["flagged"]])
        self._carry_out(plan)
        return [b["id"] for b in zombies]

    def dg_delete(self, dg: str, *, force: bool = False, builds: bool = False) -> None:
        """``impt dg delete --dg G [--builds] [--force] --confirmed``."""
        group = self.resolve("deviceGroups", dg)
        plan = _DeletePlan(groups=[group])
        if force:
            self._collect_group_force(group, plan)
        if builds:
            plan.builds += self.list_all("deployments", {"filter[devicegroup.id]": group["id"]})
        self._carry_out(plan)

    def product_delete(self, product: str, *, builds: bool = False, force: bool = False
                       ) -> None:
        """``impt product delete --product P [--builds] [--force] --confirmed``."""
        prod = self.resolve("products", product)
        plan = _DeletePlan(products=[prod])
        if force:
            for group in self.list_all("deviceGroups", {"filter[product.id]": prod["id"]}):
                plan.groups.append(group)
                self._collect_group_force(group, plan)
        if builds:
            plan.builds += self.list_all("deployments", {"filter[product.id]": prod["id"]})
        self._carry_out(plan)

    def _collect_group_force(self, group: dict[str, Any], plan: _DeletePlan) -> None:
        plan.devices += self.list_all("devices", {"filter[devicegroup.id]": group["id"]})
        plan.flagged += self.list_all("deployments", {"filter[devicegroup.id]": group["id"],
                                                      "filter[flagged]": "true"})

    def _carry_out(self, plan: _DeletePlan) -> None:
        """DeleteHelper._delete: unassign, unflag, delete groups (those with targets first),
        products, builds; a 404 is "already deleted", a 400 of 404s "already unassigned"."""
        for device in plan.devices:
            dev = self.imp("devices.get", device["id"])["data"]
            group = dev["relationships"].get("devicegroup")
            if group is not None:
                self._tolerating("deviceGroups.removeDevices", group["id"], None, dev["id"])
        for build in plan.flagged:
            self._tolerating("deployments.update", build["id"], {"flagged": False})
        with_targets = [g for g in plan.groups if {"production_target", "dut_target"}
                        & set(g["relationships"])]
        for group in with_targets + [g for g in plan.groups if g not in with_targets]:
            self._tolerating("deviceGroups.delete", group["id"])
        for prod in plan.products:
            self._tolerating("products.delete", prod["id"])
        for build in plan.builds:
            self._tolerating("deployments.delete", build["id"])

    def _tolerating(self, call: str, *args: Any) -> None:
        try:
            self.imp(call, *args)
        except NodeCallError as err:
            errors = err.body.get("errors") or [] if isinstance(err.body, dict) else []
            gone = err.status == 404 or (err.status == 400 and errors and all(
                str(e.get("status")) == "404" for e in errors))
            if not gone:
                raise

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


@dataclass
class _DeletePlan:
    """What a delete command collected before it deletes anything (DeleteHelper)."""

    products: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    builds: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    flagged: list[dict[str, Any]] = field(default_factory=list)


def _matches(value: Any, ident: str) -> bool:
    return ident in value if isinstance(value, list) else value == ident


def _ref(group: dict[str, Any]) -> dict[str, str]:
    return {"type": group["type"], "id": group["id"]}
