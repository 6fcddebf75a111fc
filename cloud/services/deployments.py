"""Deployments: immutable builds; a new one becomes its group's current one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from impfactory.cloud.errors import ConflictError, ResourceFlaggedError
from impfactory.cloud.images import sha256
from impfactory.cloud.libraries import check_requires
from impfactory.cloud.model import Deployment
from impfactory.cloud.services.context import Context, new_id


class Deployments:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.repo = ctx.repos.deployments

    def create_deployment(
        self,
        group_id: str,
        device_code: str,
        agent_code: str = "",
        *,
        description: str = "",
        origin: str | None = None,
        tags: Iterable[str] = (),
        flagged: bool = False,
        promoted: bool = False,
    ) -> Deployment:
        """A new immutable deployment, now the group's current one; a group's first
        deployment is also its min-supported one, as in impCentral.

        Any group takes a deployment, a Production Zone one too (``impt build deploy``
        and ``impt build copy`` into production, DUT and fixture groups, as Electric
        Imp's ProductionGuide does); ``promoted`` is only a mark on a deployment. Devices
        pick it up at restart or next connection; the group's ``deployment`` webhooks
        fire (queued in the same transaction).
        """
        group = self.ctx.group(group_id)
        check_requires(device_code, "device code")
        check_requires(agent_code, "agent code")
        device_bytes, agent_bytes = device_code.encode(), agent_code.encode()
        code_sha = sha256(b"device\0" + device_bytes + b"\0agent\0" + agent_bytes)
        now = self.ctx.now()
        dep = Deployment(new_id(), 0, group_id, group.product_id, group.owner_id, code_sha,
                         device_code, agent_code, sha256(device_bytes), sha256(agent_bytes),
                         description, origin, tuple(sorted(set(tags))), flagged, promoted,
                         now, now)
        with self.ctx.tx():
            self.repo.insert(dep)
            self.ctx.repos.groups.set_current(group_id, dep.id, now)
            self.ctx.queue_webhooks(group_id, "deployment",
                                    {"deployment_id": dep.id, "devicegroup_id": group_id,
                                     "sha": code_sha})
        self.ctx.images.put(device_bytes)
        self.ctx.images.put(agent_bytes)
        return self.ctx.deployment(dep.id)

    def get_deployment(self, deployment_id: str) -> Deployment:
        return self.ctx.deployment(deployment_id)

    def find_deployment(self, deployment_id: str | None) -> Deployment | None:
        return self.repo.get(deployment_id) if deployment_id else None

    def list_deployments(self, *, owner_id: str | None = None, product_id: str | None = None,
                         group_id: str | None = None, sha: str | None = None,
                         flagged: bool | None = None, tag: str | None = None) -> list[Deployment]:
        found = self.repo.list(owner_id=owner_id, product_id=product_id, group_id=group_id,
                               sha=sha, flagged=flagged)
        return [d for d in found if tag is None or tag in d.tags]

    def update_deployment(self, deployment_id: str, *, description: str | None = None,
                          flagged: bool | None = None, tags: Iterable[str] | None = None,
                          promoted: bool | None = None) -> Deployment:
        """Only the metadata of a deployment changes; its code never does."""
        dep = self.ctx.deployment(deployment_id)
        changed = replace(
            dep, description=dep.description if description is None else description,
            tags=tuple(sorted(set(dep.tags if tags is None else tags))),
            flagged=dep.flagged if flagged is None else flagged,
            promoted=dep.promoted if promoted is None else promoted)
        with self.ctx.tx():
            self.repo.update_meta(changed, self.ctx.now())
        return self.ctx.deployment(deployment_id)

    def delete_deployment(self, deployment_id: str) -> None:
        dep = self.ctx.deployment(deployment_id)
        if dep.flagged:
            raise ResourceFlaggedError()
        group = self.ctx.group(dep.group_id)
        if group.min_supported_deployment:
            floor = self.ctx.deployment(group.min_supported_deployment)
            if dep.seq >= floor.seq:
                raise ConflictError("the deployment is its group's min-supported one or newer")
        if group.current_deployment == deployment_id:  # a group from before min-supported
            raise ConflictError("the deployment is its group's current one")  # was always set
        with self.ctx.tx():
            self.repo.delete(deployment_id)
