"""Every repository over one store, built once and handed to the services."""

from __future__ import annotations

from impfactory.cloud.store.accounts import AccountRepository, OwnerRepository, TokenRepository
from impfactory.cloud.store.agent_store import AgentStoreRepository
from impfactory.cloud.store.deployments import DeploymentRepository, ReleaseRepository
from impfactory.cloud.store.devices import DeviceRepository, LinkRepository, LogRepository
from impfactory.cloud.store.engine import Store
from impfactory.cloud.store.products import GroupRepository, ProductRepository
from impfactory.cloud.store.webhooks import OutboxRepository, WebhookRepository


class Repositories:
    """One repository per aggregate, sharing ``store`` (and its transactions)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.products = ProductRepository(store)
        self.groups = GroupRepository(store)
        self.deployments = DeploymentRepository(store)
        self.releases = ReleaseRepository(store)
        self.devices = DeviceRepository(store)
        self.logs = LogRepository(store)
        self.links = LinkRepository(store)
        self.owners = OwnerRepository(store)
        self.tokens = TokenRepository(store)
        self.accounts = AccountRepository(store)
        self.webhooks = WebhookRepository(store)
        self.outbox = OutboxRepository(store)
        self.agent_store = AgentStoreRepository(store)
