"""Device groups: create (fixture groups with their two targets), change, delete."""

from __future__ import annotations

from typing import Any

from impfactory.cloud.errors import (
    ConflictError,
    DuplicateNameError,
    FlaggedDeploymentsError,
    InvalidError,
)
from impfactory.cloud.model import DeviceGroup, GroupType
from impfactory.cloud.services.checks import check_name, group_type
from impfactory.cloud.services.context import Context, new_id
from impfactory.cloud.services.webhooks import Webhooks
from impfactory.cloud.store import IntegrityViolation

CHANGEABLE = frozenset({"name", "description", "env_vars", "load_code_after_blessing", "region",
                        "production_target", "dut_target", "min_impos_version"})


class Groups:
    def __init__(self, ctx: Context, webhooks: Webhooks) -> None:
        self.ctx = ctx
        self.repo = ctx.repos.groups
        self.webhooks = webhooks

    def create_group(
        self,
        product_id: str,
        type: GroupType | str,
        name: str,
        *,
        description: str = "",
        production_target: str | None = None,
        dut_target: str | None = None,
        load_code_after_blessing: bool | None = None,
        region: str | None = None,
        env_vars: dict[str, Any] | None = None,
        min_impos_version: str | None = None,
    ) -> DeviceGroup:
        """A device group; (pre-)factory fixture groups need both targets, same zone."""
        gtype = group_type(type)
        product = self.ctx.product(product_id)
        check_name(name)
        if (load_code_after_blessing is not None or region is not None) and not gtype.is_production:
            raise InvalidError("load_code_after_blessing and region are for production groups")
        now = self.ctx.now()
        group = DeviceGroup(
            new_id(), product_id, product.owner_id, gtype, name, description, region,
            env_vars or {}, production_target, dut_target,
            True if load_code_after_blessing is None else bool(load_code_after_blessing),
            None, None, min_impos_version, now, now)
        with self.ctx.tx():
            if gtype.is_fixture:
                self._check_targets(gtype, product_id, production_target, dut_target)
            elif production_target or dut_target:
                raise InvalidError(f"{gtype.value} has no targets")
            try:
                self.repo.insert(group)
            except IntegrityViolation as err:
                raise DuplicateNameError("Devicegroup") from err
        return self.ctx.group(group.id)

    def _check_targets(self, gtype: GroupType, product_id: str, production_target: str | None,
                       dut_target: str | None) -> None:
        want_prod, want_dut = gtype.target_types()
        for label, gid, want in (("production_target", production_target, want_prod),
                                 ("dut_target", dut_target, want_dut)):
            if not gid:
                raise InvalidError(f"{gtype.value} needs a {label}")
            target = self.ctx.group(gid)
            if target.type is not want:
                raise InvalidError(f"{label} must be a {want.value}, not {target.type.value}")
            if target.product_id != product_id:
                raise InvalidError(f"{label} must belong to the same product")

    def get_group(self, group_id: str) -> DeviceGroup:
        return self.ctx.group(group_id)

    def list_groups(self, *, owner_id: str | None = None, product_id: str | None = None,
                    type: GroupType | str | None = None) -> list[DeviceGroup]:
        return self.repo.list(owner_id=owner_id, product_id=product_id,
                              type=str(type) if type is not None else None)

    def update_group(self, group_id: str, **changes: Any) -> DeviceGroup:
        """Change name, description, env_vars, load_code_after_blessing, region, targets,
        min_impos_version. Target changes apply to DUTs enrolled or blessed from now on."""
        group = self.ctx.group(group_id)
        unknown = set(changes) - CHANGEABLE
        if unknown:
            raise InvalidError(f"cannot change {sorted(unknown)}")
        if ({"load_code_after_blessing", "region"} & set(changes)) and not group.type.is_production:
            raise InvalidError("load_code_after_blessing and region are for production groups")
        if ({"production_target", "dut_target"} & set(changes)) and not group.type.is_fixture:
            raise InvalidError(f"{group.type.value} has no targets")
        if "name" in changes:
            check_name(changes["name"])
        values = {name: getattr(group, name) for name in CHANGEABLE}
        values.update({k: v for k, v in changes.items() if v is not None})
        with self.ctx.tx():
            if group.type.is_fixture:
                self._check_targets(group.type, group.product_id, values["production_target"],
                                    values["dut_target"])
            try:
                self.repo.update(group_id, values, self.ctx.now())
            except IntegrityViolation as err:
                raise DuplicateNameError("Devicegroup") from err
        return self.ctx.group(group_id)

    def delete_group(self, group_id: str) -> None:
        """Delete an empty, untargeted group with no flagged deployments; its webhooks'
        undelivered events are kept, abandoned."""
        self.ctx.group(group_id)
        repos = self.ctx.repos
        with self.ctx.tx():
            if repos.devices.any_in_group(group_id):
                raise ConflictError("the device group still has devices")
            if self.repo.is_target(group_id):
                raise ConflictError("the device group is a fixture group's target")
            if repos.deployments.any_flagged(group_id):
                raise FlaggedDeploymentsError()
            for hook in repos.webhooks.list(group_id):
                self.webhooks.abandon_outbox(hook.id, "its device group was deleted")
            repos.webhooks.delete_for_group(group_id)
            repos.deployments.delete_for_group(group_id)
            self.repo.delete(group_id)

    def set_min_supported_deployment(self, group_id: str, deployment_id: str) -> DeviceGroup:
        group = self.ctx.group(group_id)
        dep = self.ctx.deployment(deployment_id)
        if dep.group_id != group_id:
            raise InvalidError("the deployment belongs to another device group")
        if group.min_supported_deployment:
            old = self.ctx.deployment(group.min_supported_deployment)
            if dep.seq < old.seq:
                raise InvalidError("min_supported_deployment cannot move to an older deployment")
        with self.ctx.tx():
            self.repo.set_min_supported(group_id, deployment_id, self.ctx.now())
        return self.ctx.group(group_id)
