"""What every resource module of the REST API shares: the cloud service and accounts.

The REST API is a view onto ``CloudService`` (cloud/service.py), the one service
layer both the device link and the API call: this package parses requests,
scopes them to the caller's owner account, renders JSON:API, and adds what only
the API has (accounts and tokens, promotion by tag, Go Live, webhook delivery).
Lookups by id are scoped here: another owner's resource is a 404, exactly like a
missing one, so ids leak nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from impfactory.cloud.api_auth import AccountBook
from impfactory.cloud.api_jsonapi import NotFound
from impfactory.cloud.errors import NotFoundError
from impfactory.cloud.model import Account, Deployment, Device, DeviceGroup, Product
from impfactory.cloud.service import CloudService

T = TypeVar("T")


@dataclass
class ApiContext:
    """The service, the accounts, and owner-scoped lookups."""

    svc: CloudService
    accounts: AccountBook

    @staticmethod
    def owner(account: Account) -> str:
        """The account whose data a caller works on (a collaborator's owner)."""
        return account.owner_id

    @staticmethod
    def _scoped(get: Callable[[str], T], ident: str, owner: str, what: str) -> T:
        """``get(ident)`` when it exists and belongs to ``owner``; else a 404 naming it."""
        try:
            found = get(ident)
        except NotFoundError:
            raise NotFound(f"no {what} {ident!r}") from None
        if getattr(found, "owner_id", None) != owner:
            raise NotFound(f"no {what} {ident!r}")
        return found

    def product(self, owner: str, product_id: str) -> Product:
        """This owner's product, or 404."""
        return self._scoped(self.svc.get_product, product_id, owner, "product")

    def group(self, owner: str, group_id: str) -> DeviceGroup:
        """This owner's device group, or 404."""
        return self._scoped(self.svc.get_group, group_id, owner, "device group")

    def deployment(self, owner: str, deployment_id: str) -> Deployment:
        """This owner's deployment, or 404."""
        return self._scoped(self.svc.get_deployment, deployment_id, owner, "deployment")

    def device(self, owner: str, ident: str) -> Device:
        """This owner's device by id, MAC address or agent id (as the client allows), or 404;
        an unassigned device has no agent, so no agent id finds it."""
        found = self.svc.find_device(ident)
        if found is None or found.owner_id != owner:
            lowered = ident.lower().replace(":", "")
            matches = (self.svc.list_devices(owner_id=owner, mac=lowered, limit=1)
                       or [d for d in self.svc.list_devices(owner_id=owner, agent_id=lowered,
                                                            limit=1) if d.group_id])
            found = matches[0] if matches else None
        if found is None:
            raise NotFound(f"no device {ident!r}")
        return found
