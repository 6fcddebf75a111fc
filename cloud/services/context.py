"""What every use case shares, and the lookups they all make.

``send`` (cloud-link messages to online devices) is installed by the MQTT link;
``agents`` (who runs the agents) by ``cloud.agents``. Without them messages are
dropped and the device gets the same state at its next ``hello``.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from impfactory.cloud.errors import NotFoundError
from impfactory.cloud.images import ImageCache, sha256
from impfactory.cloud.model import Deployment, Device, DeviceGroup, Owner, Product
from impfactory.cloud.store import Store
from impfactory.cloud.store.repositories import Repositories
from impfactory.protocol import cloudlink as cl

FACTORY_TOKEN_TTL = 600.0
AGENT_BASE_URL = "https://agent.electricimp.com"


class AgentEvents(Protocol):
    """What the service tells whoever runs the agents (``cloud.agents.Agents``)."""

    def device_changed(self, device_id: str, restart: bool = False) -> None:
        """The device connected, left, reported, was assigned, blessed or restarted."""

    def device_message(self, device_id: str, name: str, value: Any) -> None:
        """The device's ``agent.send(name, value)``."""

    def is_running(self, device_id: str) -> bool | None:
        """Whether the device's agent runs (``None``: no agents here to ask)."""


class NoAgents:
    """No agent runs (a service without ``Agents`` attached, e.g. the CLI's read-only use)."""

    def device_changed(self, device_id: str, restart: bool = False) -> None:
        pass

    def device_message(self, device_id: str, name: str, value: Any) -> None:
        pass

    def is_running(self, device_id: str) -> bool | None:
        return None


NO_AGENTS = NoAgents()


class OwnerInfo(Protocol):
    @property
    def plan_id(self) -> str: ...

    @property
    def unbond_key(self) -> str: ...


class AccountDirectory(Protocol):
    """Where owners' plan IDs and unbond keys come from (the REST API's AccountBook fits)."""

    def get(self, account_id: str) -> OwnerInfo | None: ...


class OwnerTable:
    """The cloud's own owner directory, for runs without the REST API."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def get(self, account_id: str) -> Owner | None:
        return self.ctx.repos.owners.get(account_id)

    def ensure(self, account_id: str, plan_id: str | None = None,
               unbond_key: str | None = None) -> Owner:
        with self.ctx.tx():
            found = self.get(account_id)
            if found is not None:
                return found
            owner = Owner(account_id, plan_id or secrets.token_hex(8),
                          unbond_key or secrets.token_hex(16))
            self.ctx.repos.owners.add(owner)
        return owner


def new_id() -> str:
    return str(uuid.uuid4())


def agent_id_for(device_id: str, plan_id: str | None) -> str:
    """A device's agent ID: fixed per (device, plan), as impCloud derives it."""
    digest: str = sha256(f"agent:{device_id}:{plan_id or ''}".encode())
    return digest[:12]


class Context:
    """The store, its repositories, the clock, images and the outside hooks."""

    def __init__(self, store: Store, *, now: Callable[[], float] = time.time,
                 accounts: AccountDirectory | None = None,
                 agent_base_url: str = AGENT_BASE_URL,
                 factory_token_ttl: float = FACTORY_TOKEN_TTL,
                 chunk_size: int = cl.DEFAULT_CHUNK_SIZE) -> None:
        self.store = store
        self.repos = Repositories(store)
        self.now = now
        self.owners = OwnerTable(self)
        self.accounts: AccountDirectory = accounts if accounts is not None else self.owners
        self.agent_base_url = agent_base_url.rstrip("/")
        self.factory_token_ttl = factory_token_ttl
        self.images = ImageCache(self._load_image, chunk_size=chunk_size)
        self.send: Callable[[cl.Message], None] = lambda msg: None
        self.agents: AgentEvents = NO_AGENTS

    def tx(self) -> AbstractContextManager[Store]:
        """One transaction (joining the caller's, if any)."""
        return self.store.transaction()

    # ------------------------------------------------------------ lookups

    def owner(self, owner_id: str) -> OwnerInfo:
        """An owner's plan ID and unbond key: from the account directory, else ``owners``."""
        found: OwnerInfo | None = self.accounts.get(owner_id)
        if found is None and self.accounts is not self.owners:
            found = self.owners.get(owner_id)
        if found is None:
            raise NotFoundError(f"no account {owner_id}")
        return found

    def product(self, product_id: str) -> Product:
        found = self.repos.products.get(product_id)
        if found is None:
            raise NotFoundError(f"no product {product_id}")
        return found

    def group(self, group_id: str) -> DeviceGroup:
        found = self.repos.groups.get(group_id)
        if found is None:
            raise NotFoundError(f"no device group {group_id}")
        return found

    def deployment(self, deployment_id: str) -> Deployment:
        found = self.repos.deployments.get(deployment_id)
        if found is None:
            raise NotFoundError(f"no deployment {deployment_id}")
        return found

    def device(self, device_id: str) -> Device:
        found = self.repos.devices.get(device_id)
        if found is None:
            raise NotFoundError(f"no device {device_id}")
        return found

    def agent_url(self, agent_id: str | None) -> str | None:
        return f"{self.agent_base_url}/{agent_id}" if agent_id else None

    # ------------------------------------------------------------ shared writes

    def log(self, device_id: str, msg: str, type: str = "status") -> None:
        """A line in the device's log (its own transaction, or the caller's)."""
        self.repos.logs.append(device_id, self.now(), type, msg[:cl.MAX_LOG_LENGTH])

    def queue_webhooks(self, group_id: str, event: str, payload: dict[str, Any]) -> None:
        """Queue ``event`` for the group's webhooks (inside the caller's transaction, so
        the event commits with the change that caused it)."""
        self.repos.outbox.queue(group_id, event, payload, self.now())

    def _load_image(self, digest: str) -> bytes | None:
        found = self.repos.releases.image(digest)
        return found if found is not None else self.repos.deployments.code_by_sha(digest)
