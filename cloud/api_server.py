"""Assemble the REST API: accounts, the cloud service, resource modules, HTTP stack.

``ApiService`` is what ``impfactory cloud serve --api-port`` (and the tests) run
on the cloud's own loop::

    store = open_store("impcloud.db")
    book = AccountBook(store)
    svc = CloudService(store, accounts=book)     # the same service the device link uses
    async with ApiService(svc, book, port=0) as api:
        print(api.endpoint)                      # http://127.0.0.1:PORT/v5

It owns the cloud's HTTP server (``cloud.web``: the API under ``/v5``, and the
agent URLs under ``/agent`` when given the cloud's ``agents``) and uses the one
HTTP client every outbound request goes through (``cloud.outbound``: webhook
deliveries and agents' requests; the cloud's when given, else its own). Serving
on the cloud's loop means every call reaches the store from the loop's thread.
"""

from __future__ import annotations

from types import TracebackType

from impfactory.backoff import Backoff
from impfactory.cloud import (
    api_auth,
    api_deployments,
    api_devicegroups,
    api_devices,
    api_enrol,
    api_golive,
    api_logstream,
    api_openapi,
    api_products,
    api_webhooks,
)
from impfactory.cloud.agents import PREFIX, Agents, agent_app
from impfactory.cloud.api import BASE, ImpCentralApi, Router
from impfactory.cloud.api_auth import AccountBook
from impfactory.cloud.api_context import ApiContext
from impfactory.cloud.outbound import Outbound
from impfactory.cloud.service import CloudService
from impfactory.cloud.web import Limits, WebServer, build_app


class ApiService:
    """The REST API over one ``CloudService``, served on ``host:port``.

    ``access_log`` writes one line per request (``cloud.web.ACCESS_LOG``); ``limits``
    bound each request; ``http_timeout`` bounds each outbound request of its own
    client. ``outbound``: the cloud's client to use instead (its owner starts and
    stops it). ``agents``: serve their URLs under ``/agent``; the service's agent
    base URL then names this server, unless ``agent_url`` fixes it. ``lease_holder``:
    the webhook dispatcher's name for its leases (``api_webhooks.Dispatcher``).
    """

    def __init__(self, svc: CloudService, accounts: AccountBook, *, host: str = "127.0.0.1",
                 port: int = 0, backoff: Backoff | None = None,
                 access_log: bool = False, limits: Limits | None = None,
                 http_timeout: float = 10.0, outbound: Outbound | None = None,
                 agents: Agents | None = None, agent_url: str | None = None,
                 lease_holder: str | None = None) -> None:
        self.svc = svc
        self.accounts = accounts
        self.ctx = ApiContext(svc, accounts)
        self._owns_outbound = outbound is None
        self.outbound = outbound if outbound is not None else Outbound(timeout=http_timeout)
        self.agents = agents
        self._agent_url = agent_url
        self.dispatcher = api_webhooks.Dispatcher(svc, self.outbound, backoff,
                                                  holder=lease_holder)
        self.router = Router()
        api_auth.register(self.router, accounts)
        for module in (api_products, api_devicegroups, api_deployments, api_devices,
                       api_webhooks, api_golive, api_enrol, api_logstream):
            module.register(self.router, self.ctx)
        api_openapi.register(self.router)
        self.app = ImpCentralApi(self.router, accounts.authenticate, lambda a: a.role)
        subapps = {BASE: self.app.subapp()}
        if agents is not None:
            subapps[PREFIX] = agent_app(agents)
        self.web = WebServer(build_app(subapps, limits or Limits()), host, port,
                             access_log=access_log)
        self._host = host

    @property
    def endpoint(self) -> str:
        """The base URL clients are given: ``http://HOST:PORT/v5``."""
        return f"http://{self._host}:{self.web.port}{BASE}"

    async def start(self) -> None:
        """Start serving and delivering webhooks (resuming any left pending)."""
        if self._owns_outbound:
            await self.outbound.start()
        try:
            await self.web.start()
        except BaseException:
            if self._owns_outbound:
                await self.outbound.stop()
            raise
        if self.agents is not None:
            self.svc.agent_base_url = (self._agent_url or
                                       f"http://{self._host}:{self.web.port}{PREFIX}")
        self.dispatcher.start()

    async def stop(self) -> None:
        """Stop serving and delivering (the database stays open; its owner closes it)."""
        await self.web.stop()
        await self.dispatcher.stop()
        if self._owns_outbound:
            await self.outbound.stop()

    async def __aenter__(self) -> ApiService:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
