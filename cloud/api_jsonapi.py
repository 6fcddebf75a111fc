"""JSON:API shapes as impCentral API v5 and its clients use them.

Errors, documents, pagination and request-body checks, shared by every resource
module. The rules come from the clients (see docs/api.md):

* every error answer is ``{"errors": [{"status", "code", "title", "detail"}]}``:
  ``imp-central-api`` shows ``title: detail`` of the first entry;
* a list carries ``links`` always, and ``links.next`` only when another page
  exists (``impt`` loops while the key is present, even when it is null);
* an optional relationship is left out, never ``null``.

Request bodies are checked against their models (``api_models``), which raise
``BadRequest`` (a 400 with a pointer to the offending member), so a malformed body
never reaches the store.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from impfactory.cloud.errors import CloudError
from impfactory.errors import ImpFactoryError

JsonObj = dict[str, Any]

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class ApiError(ImpFactoryError):
    """An answer with a 4xx (or 5xx) status and a JSON:API error body.

    Each subclass carries its ``status`` and default ``code``; the title is the
    status's reason phrase, as impCentral writes it, unless a refusal has its own
    (``Duplicate Resource``).
    """

    status = 400
    code = "BadRequest"
    headers: dict[str, str] | None = None
    """Response headers the answer carries (``Retry-After`` of a 429)."""

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None,
                 title: str | None = None, pointer: str | None = None,
                 meta: JsonObj | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.title = title or HTTPStatus(self.status).phrase
        self.pointer = pointer
        self.meta = meta

    def as_errors(self) -> list[JsonObj]:
        """The entries this error adds to the ``errors`` array (one, but see ``Several``)."""
        return [self.as_error()]

    @classmethod
    def refusal(cls, err: CloudError) -> ApiError:
        """The API error for a refusal of the cloud service: status, code and title are
        the error class's own (``CloudError.http_status``, ``.code``, ``.title``)."""
        return cls(str(err), code=err.code, status=err.http_status, title=err.title)

    def as_error(self) -> JsonObj:
        """The error object for the ``errors`` array."""
        err: JsonObj = {"status": str(self.status), "code": self.code,
                        "title": self.title, "detail": self.detail}
        if self.pointer:
            err["source"] = {"pointer": self.pointer}
        if self.meta:
            err["meta"] = self.meta
        return err


class BadRequest(ApiError, ValueError):
    """The request is malformed or breaks a rule of the model."""


class Several(BadRequest):
    """A 400 listing one entry per item of a request that failed, each with its own
    status: impCentral answers a list of devices that are not there this way, and
    ``impt`` tells "already unassigned" by every entry's status being 404."""

    def __init__(self, detail: str, errors: Sequence[ApiError]) -> None:
        super().__init__(detail, code="MultipleErrors")
        self.errors = list(errors)

    def as_errors(self) -> list[JsonObj]:
        return [e.as_error() for e in self.errors]


class Unauthorized(ApiError, PermissionError):
    """No valid credentials: clients refresh their token and retry once."""

    status = 401
    code = "Unauthorized"


class Forbidden(ApiError, PermissionError):
    """Valid credentials, but this account's role does not allow the call."""

    status = 403
    code = "Forbidden"


class NotFound(ApiError, LookupError):
    """No such resource (or not visible to this account); impt then looks up by name."""

    status = 404
    code = "NotFound"


class MethodNotAllowed(ApiError):
    """The path exists but not with this method (the answer names those in ``Allow``)."""

    status = 405
    code = "MethodNotAllowed"


class RequestTimeout(ApiError, TimeoutError):
    """The request body did not arrive in time."""

    status = 408
    code = "RequestTimeout"


class Conflict(ApiError):
    """The request clashes with the current state (a duplicate name, a bound device)."""

    status = 409
    code = "Conflict"


class PayloadTooLarge(ApiError):
    """The request body is over the server's limit."""

    status = 413
    code = "PayloadTooLarge"


class UnsupportedMediaType(ApiError):
    """The body is not JSON."""

    status = 415
    code = "UnsupportedMediaType"


class TooManyRequests(ApiError):
    """Over a rate (failed logins): try again after ``retry_after`` seconds."""

    status = 429
    code = "TooManyRequests"

    def __init__(self, detail: str, retry_after: int, **kw: Any) -> None:
        super().__init__(detail, **kw)
        self.retry_after = max(1, retry_after)
        self.headers = {"Retry-After": str(self.retry_after)}
        self.meta = {"retry_after": self.retry_after}


class InternalError(ApiError):
    """A bug in the emulated cloud: never raised, only rendered (the suite fails on any 5xx)."""

    status = 500
    code = "InternalError"


def error_body(errors: Sequence[ApiError]) -> bytes:
    """Serialise one or more errors as a JSON:API error document."""
    return json.dumps({"errors": [entry for e in errors for entry in e.as_errors()]}).encode()


def iso(ts: float) -> str:
    """Seconds since the epoch → ISO 8601 UTC with milliseconds, as impCentral writes."""
    moment = dt.datetime.fromtimestamp(ts, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def rel(type_: str, id_: str | None) -> JsonObj | None:
    """A relationship entry, or ``None`` meaning "leave the key out"."""
    return {"type": type_, "id": id_} if id_ else None


def resource(type_: str, id_: str, attributes: JsonObj,
             relationships: Mapping[str, JsonObj | None] | None = None) -> JsonObj:
    """A resource object; relationships that are ``None`` are left out."""
    out: JsonObj = {"type": type_, "id": id_, "attributes": attributes}
    if relationships is not None:
        out["relationships"] = {k: v for k, v in relationships.items() if v is not None}
    return out


MAX_DEPTH = 64
"""Arrays and objects nested deeper than this are refused (clients nest a few levels)."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json(body: bytes) -> Any:
    """The request body as JSON; an empty body is ``None``.

    Refused with a 400 (``InvalidJson``), besides what is not JSON: ``NaN`` and
    ``Infinity`` (which Python's reader takes), numbers beyond a double (``1e999``),
    nesting deeper than ``MAX_DEPTH``, and strings holding a lone surrogate
    (``"\\ud800"`` is valid JSON, but no UTF-8 store or answer can carry it).
    """
    if not body.strip():
        return None
    try:
        value = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise BadRequest(f"the body nests deeper than {MAX_DEPTH} levels",
                         code="InvalidJson") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise BadRequest(f"the body is not valid JSON: {err}", code="InvalidJson") from err
    _check_tree(value)
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:20]} is beyond a double")
    return number


def _check_tree(value: Any) -> None:
    """Walk a parsed body (without recursion): depth and strings, keys included."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise BadRequest("the body holds a lone UTF-16 surrogate (\\ud800-\\udfff)",
                                 code="InvalidJson")
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise BadRequest(f"the body nests deeper than {MAX_DEPTH} levels",
                                 code="InvalidJson")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


# -- pagination and filters -------------------------------------------------------


PAGE_QUERY = ("page[number]", "page[size]")

JSONAPI = "application/vnd.api+json"


def list_query(allowed_filters: Iterable[str] = ()) -> tuple[str, ...]:
    """The query parameters a paginated, filtered list reads (for ``Router.add(query=...)``)."""
    return (*(f"filter[{name}]" for name in allowed_filters), *PAGE_QUERY)


def page_args(query: dict[str, str]) -> tuple[int, int]:
    """``page[number]`` (from 1) and ``page[size]`` (1..100) from a flat query."""
    number = _positive_int(query.get("page[number]", "1"), "page[number]")
    size = _positive_int(query.get("page[size]", str(DEFAULT_PAGE_SIZE)), "page[size]")
    if size > MAX_PAGE_SIZE:
        raise BadRequest(f"page[size] must be at most {MAX_PAGE_SIZE}, got {size}",
                         code="InvalidPageSize")
    return number, size


def _positive_int(text: str, name: str) -> int:
    if not text.isdigit() or int(text) < 1 or len(text) > 9:
        raise BadRequest(f"{name} must be a positive integer, got {text!r}",
                         code="InvalidPagination")
    return int(text)


def filters(query: dict[str, str], allowed: Iterable[str]) -> dict[str, str]:
    """The ``filter[x.y]`` entries of a query; an unknown filter is a 400."""
    allowed = set(allowed)
    out: dict[str, str] = {}
    for key, value in query.items():
        if key.startswith("filter[") and key.endswith("]"):
            name = key[len("filter["):-1]
            if name not in allowed:
                raise BadRequest(f"unknown filter {name!r}; allowed: {sorted(allowed)}",
                                 code="InvalidFilter")
            out[name] = value
        elif not key.startswith("page[") and key not in ("format",):
            raise BadRequest(f"unknown query parameter {key!r}", code="InvalidQuery")
    return out


def paginate(items: Sequence[Any], query: dict[str, str], base_path: str,
             allowed_filters: Iterable[str] = (),
             render: Callable[[Any], JsonObj] | None = None) -> JsonObj:
    """A list document for one page of ``items`` with ``links`` as impt expects.

    The query is checked here too, so no list answers a filter it ignored; only
    the page's items are passed through ``render``.
    """
    filters(query, allowed_filters)
    number, size = page_args(query)
    start = (number - 1) * size
    data = [render(i) if render else i for i in items[start:start + size]]

    def link(n: int) -> str:
        q = {k: v for k, v in query.items() if not k.startswith("page[")}
        q["page[number]"] = str(n)
        q["page[size]"] = str(size)
        return f"{base_path}?{urlencode(q)}"

    last = max(1, -(-len(items) // size))
    links: JsonObj = {"self": link(number), "first": link(1), "last": link(last)}
    if number > 1:
        links["prev"] = link(min(number - 1, last))
    if start + size < len(items):
        links["next"] = link(number + 1)
    return {"data": data, "links": links, "meta": {"total": len(items)}}
