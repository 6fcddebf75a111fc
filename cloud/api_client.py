"""A small synchronous client for the emulated impCentral API (stdlib only).

For impfactory's own commands (``impfactory golive``, ``impfactory floor``) that
talk to a running cloud over HTTP exactly as any outside tool would. Electric
Imp's ``imp-central-api`` remains the reference client; this one only adds the
extensions it cannot reach (Go Live, enrolment tokens).

Errors come back as ``ApiClientError`` carrying the HTTP status and the
server's ``title: detail``, so the command line prints one line, never a trace.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from impfactory.errors import ImpFactoryError


class ApiClientError(ImpFactoryError, ConnectionError):
    """The API refused a call or could not be reached."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ApiClient:
    """Bearer-token calls to ``endpoint`` (``http://HOST:PORT/v5``)."""

    def __init__(self, endpoint: str, timeout: float = 30.0) -> None:
        self.endpoint = check_endpoint(endpoint)
        self.timeout = timeout
        self.token: str | None = None

    def login(self, user: str, password: str) -> ApiClient:
        """``POST /auth``; keeps the access token for later calls."""
        answer = self.call("POST", "/auth", {"id": user, "password": password}, auth=False)
        self.token = str(answer["access_token"])
        return self

    def call(self, method: str, path: str, body: Any = None, *, auth: bool = True,
             query: dict[str, str] | None = None) -> Any:
        """One request; the decoded JSON answer (``None`` for an empty one)."""
        url = self.endpoint + path + (f"?{urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-type", "application/vnd.api+json" if auth
                       else "application/json")
        if auth and self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raise ApiClientError(_describe(err), err.code) from None
        except (OSError, ValueError) as err:
            raise ApiClientError(f"cannot reach {self.endpoint}: {err}") from err
        try:
            return json.loads(raw) if raw else None
        except ValueError as err:
            raise ApiClientError(f"{method} {path}: the answer is not JSON") from err

    def list_all(self, path: str, filters: dict[str, str] | None = None) -> list[Any]:
        """Every item of a collection, following ``links.next`` as impt does."""
        items: list[Any] = []
        number = 1
        while True:
            query = {f"filter[{k}]": v for k, v in (filters or {}).items()}
            query.update({"page[number]": str(number), "page[size]": "100"})
            page = self.call("GET", path, query=query)
            items += page["data"]
            if "next" not in page.get("links", {}):
                return items
            number += 1

    def find_group(self, ident: str) -> dict[str, Any]:
        """A device group by id, else by unique name (impt's rule)."""
        try:
            return dict(self.call("GET", f"/devicegroups/{quote(ident, safe='')}")["data"])
        except ApiClientError as err:
            if err.status != 404:
                raise
        found = [g for g in self.list_all("/devicegroups") if g["attributes"]["name"] == ident]
        if len(found) != 1:
            raise ApiClientError(f"{'no' if not found else 'more than one'} device group "
                                 f"named {ident!r}", 404)
        return dict(found[0])


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` without a trailing slash, or a typed error when it is no http(s) URL."""
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as err:
        raise ApiClientError(f"bad endpoint {endpoint!r}: {err}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiClientError(f"the endpoint is http://HOST:PORT/v5, got {endpoint!r}")
    return endpoint.rstrip("/")


def _describe(err: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(err.read() or b"{}")
        first = body["errors"][0]
        return f"HTTP {err.code}: {first['title']}: {first['detail']}"
    except (ValueError, KeyError, IndexError, TypeError):
        return f"HTTP {err.code}"
