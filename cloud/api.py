"""The impCentral API v5 compatible REST API: routing, authentication, answers.

``ImpCentralApi.subapp()`` is the aiohttp application served under ``/v5``::

    /v5/<path>  →  aiohttp route (one per route-table entry)  →  body (cloud.web limits)
                →  bearer token → account  →  role check  →  resource handler(Call)
                →  JSON:API document

Resource modules (``api_auth``, ``api_products``, …) each add their routes with
``Router.add``; the same table drives dispatch and ``/v5/openapi.json``, so the
description can never claim a route that is not served.

Handlers are plain functions run on the cloud's loop (or coroutine functions,
when they must wait: a password hashed off the loop). They raise ``ApiError``
subclasses (or the service's ``CloudError``) for every refusal; ``cloud.web``'s
middleware answers those, and anything else escaping a handler is a bug: logged
with its traceback and answered as a JSON:API 500, which the test suite (which
fuzzes the bodies) treats as a failure.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiohttp import web

from impfactory.cloud.api_jsonapi import (
    Forbidden,
    JsonObj,
    Unauthorized,
    UnsupportedMediaType,
    parse_json,
)
from impfactory.cloud.api_models import Body
from impfactory.cloud.web import expect_continue, json_response, read_body, send_stream

BASE = "/v5"

OWNER = "owner"
BLINKUP_DEVICE = "blinkup_device"
"""The collaborator role that may add a fixture to the owner's account, and nothing else."""
OWNER_ONLY = frozenset({OWNER})
ANY_ROLE = frozenset({OWNER, BLINKUP_DEVICE})


@dataclass
class Call:
    """One API call as a handler sees it."""

    method: str
    path: str
    """The full path, percent-decoded (``/v5/products/…``)."""
    query: dict[str, str]
    """The flattened query string: ``page%5Bsize%5D=2`` → ``{"page[size]": "2"}`` (a
    repeated key keeps its last value; the clients never repeat one)."""
    headers: Mapping[str, str]
    """Case-insensitive."""
    raw_body: bytes
    params: dict[str, str]
    remote: str = ""
    """The peer's address (what per-address limits count by)."""
    account: Any = None  # the caller's account (api_auth.Account) once authenticated
    _body: Any = field(default=None, repr=False)
    _parsed: bool = field(default=False, repr=False)

    def body(self) -> Any:
        """The request body parsed as JSON (``None`` when empty), parsed once."""
        if not self._parsed:
            self._body = parse_json(self.raw_body)
            self._parsed = True
        return self._body

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name."""
        return self.headers.get(name)


@dataclass(frozen=True)
class Answer:
    """A handler's result: a status and a JSON document (``None`` = empty body)."""

    status: int
    document: JsonObj | None = None
    content_type: str = "application/vnd.api+json"
    stream: AsyncIterator[bytes] | None = None


Handler = Callable[[Call], Answer | Awaitable[Answer]]


@dataclass
class Route:
    """One entry of the route table; only accounts of ``roles`` may call it."""

    method: str
    template: str
    handler: Handler
    summary: str
    auth: bool = True
    roles: frozenset[str] = OWNER_ONLY
    query: tuple[str, ...] = ()
    """The query parameters the route reads (``filter[x]``, ``page[number]``, …), for OpenAPI."""
    body: Body | None = None
    """The request body it reads: its model validates it and describes it in OpenAPI."""


class Router:
    """The route table, in registration order."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, summary: str, *,
            auth: bool = True, roles: frozenset[str] = OWNER_ONLY,
            query: tuple[str, ...] = (), body: Body | None = None) -> None:
        """Serve ``method template`` with ``handler``; ``summary``, ``query`` and ``body``
        (what the handler reads) go to OpenAPI."""
        self.routes.append(Route(method, template, handler, summary, auth, roles, query, body))


Authenticator = Callable[[str], Any]
"""Maps a bearer token to an account (raising ``Unauthorized``)."""

RoleOf = Callable[[Any], str]


class ImpCentralApi:
    """Dispatch REST calls to the registered resource handlers."""

    def __init__(self, router: Router, authenticate: Authenticator, role_of: RoleOf) -> None:
        self.router = router
        self._authenticate = authenticate
        self._role_of = role_of

    def subapp(self) -> web.Application:
        """The aiohttp application for ``/v5``: every route of the table (a GET answers
        HEAD too), each reading its body within ``cloud.web``'s limits."""
        app = web.Application()
        for route in self.router.routes:
            serve = partial(self._serve, route)
            app.router.add_route(route.method, route.template, serve,
                                 expect_handler=expect_continue)
            if route.method == "GET":
                app.router.add_route("HEAD", route.template, serve,
                                     expect_handler=expect_continue)
        return app

    async def _serve(self, route: Route, request: web.Request) -> web.StreamResponse:
        call = Call(request.method, request.path, dict(request.query.items()),
                    request.headers, await read_body(request), dict(request.match_info),
                    request.remote or "")
        answer = self.dispatch(route, call)
        if inspect.isawaitable(answer):
            answer = await answer
        if answer.stream is not None:
            return await send_stream(request, answer.status, answer.content_type,
                                     answer.stream)
        return json_response(answer.status, answer.document, answer.content_type)

    def dispatch(self, route: Route, call: Call) -> Answer | Awaitable[Answer]:
        """Check the body's type, authenticate, authorise and run one call."""
        if call.raw_body.strip():
            ctype = (call.header("Content-Type") or "application/json").lower()
            if "json" not in ctype:
                raise UnsupportedMediaType(f"send JSON (application/vnd.api+json), not {ctype}")
        if route.auth:
            auth = call.header("Authorization") or ""
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("send 'Authorization: Bearer <access token>' from POST /auth",
                                   code="MissingToken")
            call.account = self._authenticate(token.strip())
            role = self._role_of(call.account)
            if role not in route.roles:
                raise Forbidden(f"the {role!r} role may not {call.method} {call.path}",
                                code="RoleForbidden")
        return route.handler(call)
