"""Assemble the REST API: accounts, the cloud service, resource modules, HTTP server.

``ApiService`` is what ``impfactory cloud serve --api-port`` (and the tests) run
on the cloud's own loop::

    book = AccountBook(db)
    svc = CloudService(db, accounts=book)        # the same service the device link uses
    async with ApiService(svc, book, port=0) as api:
        print(api.endpoint)                      # http://127.0.0.1:PORT/v5

Serving on that loop means every call reaches SQLite from the loop's thread.
"""

from __future__ import annotations

from types import TracebackType

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
from impfactory.cloud.api import ImpCentralApi, Router
from impfactory.cloud.api_auth import AccountBook
from impfactory.cloud.api_context import ApiContext
from impfactory.cloud.api_http import HttpServer
from impfactory.cloud.service import CloudService


class ApiService:
    """The REST API over one ``CloudService``, served on ``host:port``."""

    def __init__(self, svc: CloudService, accounts: AccountBook, *, host: str = "127.0.0.1",
                 port: int = 0, backoff: api_webhooks.Backoff | None = None) -> None:
        self.svc = svc
        self.accounts = accounts
        self.ctx = ApiContext(svc, accounts)
        self.dispatcher = api_webhooks.Dispatcher(svc, backoff)
        self.router = Router()
        api_auth.register(self.router, accounts)
        for module in (api_products, api_devicegroups, api_deployments, api_devices,
                       api_webhooks, api_golive, api_enrol, api_logstream):
            module.register(self.router, self.ctx)
        api_openapi.register(self.router)
        self.app = ImpCentralApi(self.router, accounts.authenticate, lambda a: a.role)
        self.http = HttpServer(self.app.handle, host, port)
        self._host = host

    @property
    def endpoint(self) -> str:
        """The base URL clients are given: ``http://HOST:PORT/v5``."""
        return f"http://{self._host}:{self.http.port}/v5"

    async def start(self) -> None:
        """Start serving and delivering webhooks (resuming any left pending)."""
        await self.http.start()
        self.dispatcher.start()

    async def stop(self) -> None:
        """Stop serving and delivering (the database stays open; its owner closes it)."""
        await self.http.stop()
        await self.dispatcher.stop()

    async def __aenter__(self) -> ApiService:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
