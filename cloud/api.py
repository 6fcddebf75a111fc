"""The impCentral API v5 compatible REST API: routing, authentication, answers.

``ImpCentralApi`` turns an ``HttpRequest`` into an ``HttpResponse``::

    /v5/<path>  →  route table (method, path template)  →  bearer token → account
                →  role check  →  resource handler(Call)  →  JSON:API document

Resource modules (``api_auth``, ``api_products``, …) each add their routes with
``Router.add``; the same table drives dispatch and ``/v5/openapi.json``, so the
description can never claim a route that is not served.

Handlers raise ``ApiError`` subclasses for every refusal; anything else escaping
a handler is a bug: it is logged with its traceback and answered as a JSON:API
500, and the test suite (which fuzzes the bodies) treats any 5xx as a failure.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from impfactory.cloud.api_http import HttpRequest, HttpResponse
from impfactory.cloud.api_jsonapi import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    InternalError,
    JsonObj,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    UnsupportedMediaType,
    error_body,
    parse_json,
)
from impfactory.cloud.errors import (
    CloudError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    TokenError,
)

log = logging.getLogger(__name__)

BASE = "/v5"

OWNER = "owner"
BLINKUP_DEVICE = "blinkup_device"
"""The collaborator role that may add a fixture to the owner's account, and nothing else."""
OWNER_ONLY = frozenset({OWNER})
ANY_ROLE = frozenset({OWNER, BLINKUP_DEVICE})


@dataclass
class Call:
    """One authenticated API call as a handler sees it."""

    request: HttpRequest
    params: dict[str, str]
    account: Any = None  # the caller's account (api_auth.Account) once authenticated
    _body: Any = field(default=None, repr=False)
    _parsed: bool = field(default=False, repr=False)

    @property
    def query(self) -> dict[str, str]:
        """The flattened query string."""
        return self.request.query

    def body(self) -> Any:
        """The request body parsed as JSON (``None`` when empty), parsed once."""
        if not self._parsed:
            self._body = parse_json(self.request.body)
            self._parsed = True
        return self._body

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name."""
        return self.request.headers.get(name.lower())


@dataclass(frozen=True)
class Answer:
    """A handler's result: a status and a JSON document (``None`` = empty body)."""

    status: int
    document: JsonObj | None = None
    content_type: str = "application/vnd.api+json"
    stream: AsyncIterator[bytes] | None = None


Handler = Callable[[Call], Answer]


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
    body: JsonObj | None = None
    """The request body it reads (``api_jsonapi.resource_body`` / ``plain_body``), for OpenAPI."""
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template)
        self.pattern = re.compile(regex + r"\Z")


class Router:
    """The route table, in registration order."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, summary: str, *,
            auth: bool = True, roles: frozenset[str] = OWNER_ONLY,
            query: tuple[str, ...] = (), body: JsonObj | None = None) -> None:
        """Serve ``method template`` with ``handler``; ``summary``, ``query`` and ``body``
        (what the handler reads) go to OpenAPI."""
        self.routes.append(Route(method, template, handler, summary, auth, roles, query, body))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for ``method path``: 404 for an unknown path, 405 for a wrong method."""
        seen_path = False
        for route in self.routes:
            m = route.pattern.match(path)
            if m:
                seen_path = True
                if route.method == method:
                    return route, m.groupdict()
        if seen_path:
            raise MethodNotAllowed(f"{method} is not allowed on {path}")
        raise NotFound(f"no such path: {BASE}{path}", code="UnknownPath")


Authenticator = Callable[[str], Any]
"""Maps a bearer token to an account (raising ``Unauthorized``)."""

RoleOf = Callable[[Any], str]


class ImpCentralApi:
    """Dispatch REST calls to the registered resource handlers."""

    def __init__(self, router: Router, authenticate: Authenticator, role_of: RoleOf) -> None:
        self.router = router
        self._authenticate = authenticate
        self._role_of = role_of

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """The ``HttpServer`` handler: never raises, always answers."""
        try:
            answer = self.dispatch(request)
        except ApiError as err:
            return HttpResponse(err.status, error_body([err]))
        except CloudError as err:  # the service's refusals, mapped to their statuses
            api_err = _from_cloud(err)
            return HttpResponse(api_err.status, error_body([api_err]))
        except Exception:  # a bug: log it loudly; the suite fails on any 5xx
            log.exception("unhandled error serving %s %s", request.method, request.path)
            bug = InternalError("the emulated cloud hit a bug; see its log")
            return HttpResponse(bug.status, error_body([bug]))
        payload = b"" if answer.document is None else json.dumps(answer.document).encode()
        return HttpResponse(answer.status, payload, answer.content_type, stream=answer.stream)

    def dispatch(self, request: HttpRequest) -> Answer:
        """Route, authenticate, authorise and run one request."""
        path = request.path
        if not path.startswith(BASE + "/") and path != BASE:
            raise NotFound(f"the API lives under {BASE}; no such path: {path}",
                           code="UnknownPath")
        path = path[len(BASE):].rstrip("/") or "/"
        route, params = self.router.match(request.method, path)
        call = Call(request, params)
        if request.body.strip():
            ctype = request.headers.get("content-type", "application/json").lower()
            if "json" not in ctype:
                raise UnsupportedMediaType(f"send JSON (application/vnd.api+json), not {ctype}")
        if route.auth:
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("send 'Authorization: Bearer <access token>' from POST /auth",
                                   code="MissingToken")
            call.account = self._authenticate(token.strip())
            role = self._role_of(call.account)
            if role not in route.roles:
                raise Forbidden(f"the {role!r} role may not {request.method} {BASE}{path}",
                                code="RoleForbidden")
        return route.handler(call)



def _from_cloud(err: CloudError) -> ApiError:
    """The API error for a refusal raised by the cloud service."""
    name = type(err).__name__.removesuffix("Error") or "Invalid"
    kind: type[ApiError]
    if isinstance(err, NotFoundError):
        kind = NotFound
    elif isinstance(err, ForbiddenError):
        kind = Forbidden
    elif isinstance(err, ConflictError):
        kind = Conflict
    elif isinstance(err, TokenError):
        kind, name = BadRequest, err.code
    else:
        kind = BadRequest
    if err.title is None:
        return kind(str(err), code=name)
    known = kind(str(err), code="".join(err.title.split()))  # impCentral's title and detail
    known.title = err.title
    return known
