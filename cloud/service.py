"""``CloudService``: one object through which rules, the REST API and tools reach the
cloud's use cases.

The use cases live in ``cloud/services`` (one module each); this facade builds
them over one store and exposes their operations under the names callers have
always used (``svc.create_product``, ``svc.assign_devices``...). It holds no logic
of its own. ``send`` (installed by the MQTT link) and ``agents`` (by
``cloud.agents``) are shared with every use case through the context.

Accounts live with the REST API; the service only needs an owner's plan ID and
unbond key, through ``accounts.get(owner_id)``. Without one given, the service
keeps its own ``owners`` table (``ensure_owner``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from impfactory.cloud import offers
from impfactory.cloud.images import ImageCache
from impfactory.cloud.model import Device, Owner
from impfactory.cloud.services.agents import AgentListener, AgentTraffic
from impfactory.cloud.services.assignment import Assignment
from impfactory.cloud.services.blessing import Blessing, BlessOutcome
from impfactory.cloud.services.checks import is_webhook_url
from impfactory.cloud.services.connection import Connection
from impfactory.cloud.services.context import (
    AGENT_BASE_URL,
    FACTORY_TOKEN_TTL,
    NO_AGENTS,
    AccountDirectory,
    AgentEvents,
    Context,
    NoAgents,
    OwnerInfo,
    agent_id_for,
    new_id,
)
from impfactory.cloud.services.deployments import Deployments
from impfactory.cloud.services.devices import Devices, DeviceView
from impfactory.cloud.services.enrolment import PRODUCTION_TOKEN_TTL, Enrolment
from impfactory.cloud.services.groups import Groups
from impfactory.cloud.services.links import Links
from impfactory.cloud.services.logs import Logs
from impfactory.cloud.services.products import Products
from impfactory.cloud.services.releases import Releases
from impfactory.cloud.services.webhooks import PRODUCTION_EVENTS, Webhooks
from impfactory.cloud.store import Store
from impfactory.protocol import cloudlink as cl

__all__ = ["AGENT_BASE_URL", "FACTORY_TOKEN_TTL", "NO_AGENTS", "PRODUCTION_EVENTS",
           "PRODUCTION_TOKEN_TTL", "AccountDirectory", "AgentEvents", "AgentListener",
           "BlessOutcome", "CloudService", "DeviceView", "NoAgents", "OwnerInfo",
           "agent_id_for", "is_webhook_url", "new_id"]


class CloudService:
    """Products, device groups, deployments, devices, tokens, logs and webhooks."""

    def __init__(
        self,
        store: Store,
        *,
        now: Callable[[], float] = time.time,
        accounts: AccountDirectory | None = None,
        agent_base_url: str = AGENT_BASE_URL,
        factory_token_ttl: float = FACTORY_TOKEN_TTL,
        chunk_size: int = cl.DEFAULT_CHUNK_SIZE,
    ) -> None:
        ctx = Context(store, now=now, accounts=accounts, agent_base_url=agent_base_url,
                      factory_token_ttl=factory_token_ttl, chunk_size=chunk_size)
        self.ctx = ctx
        self.store = store
        self.factory_token_ttl = factory_token_ttl
        self.accounts = ctx.accounts
        self.owner = ctx.owner
        self.agent_url = ctx.agent_url

        self.products = products = Products(ctx)
        self.create_product = products.create_product
        self.get_product = products.get_product
        self.list_products = products.list_products
        self.update_product = products.update_product
        self.delete_product = products.delete_product

        self.webhooks = webhooks = Webhooks(ctx)
        self.create_webhook = webhooks.create_webhook
        self.get_webhook = webhooks.get_webhook
        self.list_webhooks = webhooks.list_webhooks
        self.update_webhook = webhooks.update_webhook
        self.delete_webhook = webhooks.delete_webhook
        self.pending_webhooks = webhooks.pending_webhooks
        self.abandoned_webhooks = webhooks.abandoned_webhooks
        self.mark_webhook = webhooks.mark_webhook

        self.groups = groups = Groups(ctx, webhooks)
        self.create_group = groups.create_group
        self.get_group = groups.get_group
        self.list_groups = groups.list_groups
        self.update_group = groups.update_group
        self.delete_group = groups.delete_group
        self.set_min_supported_deployment = groups.set_min_supported_deployment

        self.deployments = deployments = Deployments(ctx)
        self.create_deployment = deployments.create_deployment
        self.get_deployment = deployments.get_deployment
        self.find_deployment = deployments.find_deployment
        self.list_deployments = deployments.list_deployments
        self.update_deployment = deployments.update_deployment
        self.delete_deployment = deployments.delete_deployment

        self.releases = releases = Releases(ctx)
        self.add_impos_release = releases.add_impos_release
        self.impos_releases = releases.impos_releases
        self.is_impos_image = releases.is_impos_image

        self.devices = devices = Devices(ctx)
        self.get_device = devices.get_device
        self.find_device = devices.find_device
        self.list_devices = devices.list_devices
        self.count_devices = devices.count_devices
        self.device_view = devices.device_view
        self.rename_device = devices.rename_device
        self.claim_device = devices.claim_device
        self.delete_device = devices.delete_device

        self.assignment = assignment = Assignment(ctx, self._offers_for)
        self.assign_devices = assignment.assign_devices
        self.unassign_devices = assignment.unassign_devices
        self.restart_group = assignment.restart_group
        self.restart_device = assignment.restart_device

        self.connection = Connection(ctx)
        self.enrolment = enrolment = Enrolment(ctx)
        self.create_production_token = enrolment.create_production_token
        self.create_development_token = enrolment.create_development_token
        self.create_factory_token = enrolment.create_factory_token
        self.get_token = enrolment.get_token
        self.blessing = Blessing(ctx)

        self.logs = logs = Logs(ctx)
        self.append_log = logs.append_log
        self.device_logs = logs.device_logs
        self.logs_since = logs.logs_since

        self.links = links = Links(ctx)
        self.save_link = links.save_link
        self.link_of = links.link_of
        self.set_link_session = links.set_link_session
        self.registrations = links.registrations

        self.agent_traffic = traffic = AgentTraffic(ctx)
        self.add_agent_listener = traffic.add_agent_listener
        self.agent_message = traffic.agent_message
        self.send_to_device = traffic.send_to_device
        self.agent_save = traffic.agent_save
        self.agent_load = traffic.agent_load

    def _offers_for(self, device: Device) -> list[cl.Message]:
        return offers.assignment_messages(self, device)

    # ------------------------------------------------------------ shared state

    def tx(self) -> AbstractContextManager[Store]:
        """One transaction over several calls (nested calls join it): all or nothing."""
        return self.store.transaction()

    @property
    def send(self) -> Callable[[cl.Message], None]:
        """Hands a cloud-link message to an online device (installed by the MQTT link)."""
        return self.ctx.send

    @send.setter
    def send(self, value: Callable[[cl.Message], None]) -> None:
        self.ctx.send = value

    @property
    def agents(self) -> AgentEvents:
        return self.ctx.agents

    @agents.setter
    def agents(self, value: AgentEvents) -> None:
        self.ctx.agents = value

    @property
    def now(self) -> Callable[[], float]:
        """The clock every use case reads (a test may replace it)."""
        return self.ctx.now

    @now.setter
    def now(self, value: Callable[[], float]) -> None:
        self.ctx.now = value

    @property
    def agent_base_url(self) -> str:
        return self.ctx.agent_base_url

    @agent_base_url.setter
    def agent_base_url(self, value: str) -> None:
        self.ctx.agent_base_url = value

    @property
    def images(self) -> ImageCache:
        return self.ctx.images

    def ensure_owner(self, account_id: str, plan_id: str | None = None,
                     unbond_key: str | None = None) -> Owner:
        """Register an owner in the service's own directory (runs without the REST API)."""
        return self.ctx.owners.ensure(account_id, plan_id, unbond_key)

    def close(self) -> None:
        self.store.close()
