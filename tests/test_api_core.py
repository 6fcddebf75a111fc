"""The REST API's HTTP and JSON:API layer: auth, errors, pagination, hostile requests.

Each test talks to a live ``ApiService`` on a free loopback port over real HTTP
(``http.client``), the way any client would.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impfactory.cloud.api_jsonapi import paginate
from impfactory.cloud.api_thread import ApiThread


class Client:
    """A tiny JSON client over one keep-alive connection, like the node client's."""

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        self.host, self.port, self.base = parts.hostname or "", parts.port or 80, parts.path
        self.token: str | None = None
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def raw(self, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        hdrs = {"Content-type": "application/vnd.api+json"}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        hdrs.update(headers or {})
        self.conn.request(method, self.base + path, body=body, headers=hdrs)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None

    def __call__(self, method: str, path: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return self.raw(method, path, None if body is None else json.dumps(body).encode(), headers)

    def login(self, user: str, password: str) -> dict[str, Any]:
        status, body = self("POST", "/auth", {"id": user, "password": password})
        assert status == 200, body
        self.token = body["access_token"]
        return body


@pytest.fixture
def api() -> Iterator[ApiThread]:
    with ApiThread(":memory:") as running:
        running.call(running.service.accounts.create, "owner", "s3cret", email="o@example.com")
        yield running


@pytest.fixture
def client(api: ApiThread) -> Iterator[Client]:
    c = Client(api.endpoint)
    c.login("owner", "s3cret")
    yield c
    c.conn.close()


def _is_error_doc(body: Any, status: int) -> bool:
    return (isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]
            and body["errors"][0]["status"] == str(status)
            and {"title", "detail", "code"} <= set(body["errors"][0]))


def test_login_gives_tokens_that_open_accounts_me(api: ApiThread) -> None:
    c = Client(api.endpoint)
    tokens = c.login("o@example.com", "s3cret")  # login by email works too
    assert {"access_token", "refresh_token", "expires_at", "expires_in"} <= set(tokens)
    assert tokens["expires_in"] > 180  # impt refreshes when under 3 minutes remain
    status, me = c("GET", "/accounts/me")
    assert status == 200
    assert me["data"]["type"] == "account"
    assert me["data"]["attributes"]["username"] == "owner"
    assert me["data"]["attributes"]["email"] == "o@example.com"


def test_wrong_password_and_missing_token_are_401_with_error_objects(api: ApiThread) -> None:
    c = Client(api.endpoint)
    status, body = c("POST", "/auth", {"id": "owner", "password": "nope"})
    assert status == 401 and _is_error_doc(body, 401)
    status, body = c("GET", "/accounts/me")
    assert status == 401 and _is_error_doc(body, 401)
    c.token = "forged"
    status, body = c("GET", "/accounts/me")
    assert status == 401 and _is_error_doc(body, 401)


def test_refresh_token_and_login_key_give_new_access_tokens(api: ApiThread, client: Client
                                                            ) -> None:
    refresh = client.login("owner", "s3cret")["refresh_token"]
    status, fresh = client("POST", "/auth/token", {"token": refresh})
    assert status == 200 and fresh["access_token"] != client.token and "expires_at" in fresh
    client.token = fresh["access_token"]
    assert client("GET", "/accounts/me")[0] == 200

    body = {"data": {"type": "login_key", "attributes": {"description": "ci"}}}
    status, _ = client("POST", "/accounts/me/login_keys", body)
    assert status == 403  # the password header is required
    status, made = client("POST", "/accounts/me/login_keys", body,
                          {"X-Electricimp-Password": "s3cret"})
    assert status == 201
    key = made["data"]["id"]
    status, fresh = Client(api.endpoint)("POST", "/auth/token", {"key": key})
    assert status == 200
    status, body = client("DELETE", f"/accounts/me/login_keys/{key}", None,
                          {"X-Electricimp-Password": "s3cret"})
    assert status == 204
    status, body = Client(api.endpoint)("POST", "/auth/token", {"key": key})
    assert status == 401


def test_unknown_paths_and_ids_are_404_and_wrong_methods_405(client: Client) -> None:
    assert client("GET", "/no/such/thing")[0] == 404
    assert client("GET", "/accounts/0123456789abcdef")[0] == 404
    status, body = client("DELETE", "/accounts/me")
    assert status == 405 and _is_error_doc(body, 405)


def test_malformed_bodies_are_400_not_500(client: Client) -> None:
    for raw in (b"{", b"[]", b'"x"', b"\xff\xfe", b'{"data": 5}'):
        status, body = client.raw("POST", "/accounts/me/collaborators", raw)
        assert status == 400, (raw, body)
        assert _is_error_doc(body, 400)
    status, body = client.raw("POST", "/auth", b"not json", {"Content-type": "text/plain"})
    assert status == 415


def test_pagination_leaves_next_out_on_the_last_page() -> None:
    items = [{"id": str(i)} for i in range(5)]
    first = paginate(items, {"page[number]": "1", "page[size]": "2"}, "/v5/x")
    assert [i["id"] for i in first["data"]] == ["0", "1"] and "next" in first["links"]
    last = paginate(items, {"page[number]": "3", "page[size]": "2"}, "/v5/x")
    assert [i["id"] for i in last["data"]] == ["4"] and "next" not in last["links"]
    beyond = paginate(items, {"page[number]": "9", "page[size]": "2"}, "/v5/x")
    assert beyond["data"] == [] and "next" not in beyond["links"]


def test_bad_pagination_and_filters_are_400(client: Client) -> None:
    for query in ("page%5Bsize%5D=0", "page%5Bnumber%5D=x", "page%5Bsize%5D=101",
                  "filter%5Bbogus%5D=1", "what=1"):
        status, body = client("GET", f"/accounts?{query}")
        assert status == 400, (query, body)


def test_openapi_lists_the_served_routes(api: ApiThread) -> None:
    status, doc = Client(api.endpoint)("GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    served = {(r.method.lower(), r.template) for r in api.service.router.routes}
    described = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert described == served
    assert "post" in doc["paths"]["/auth"]


def test_openapi_is_a_valid_description_whose_query_parameters_are_served(
        api: ApiThread, client: Client) -> None:
    """The document validates as OpenAPI 3.1, and every query parameter it lists for a
    route is one the route reads (accepted, not refused as unknown)."""
    from openapi_spec_validator import validate

    status, doc = Client(api.endpoint)("GET", "/openapi.json")
    validate(doc)
    values = {"page[number]": "1", "page[size]": "5", "filter[flagged]": "true",
              "filter[type]": "production_devicegroup",
              "filter[devicegroup.type]": "production_devicegroup"}
    checked = 0
    for path, ops in doc["paths"].items():
        query = [p["name"] for p in ops.get("get", {}).get("parameters", []) if p["in"] == "query"]
        if not query or "{" in path:
            continue
        for name in query:
            status, body = client("GET", f"{path}?{quote(name)}={quote(values.get(name, 'x'))}")
            assert status == 200 or (status == 404 and name.endswith(".id]")), (path, name, body)
            checked += 1
        status, body = client("GET", f"{path}?filter%5Bundescribed%5D=1")
        assert status == 400 and _is_error_doc(body, 400), path
    assert checked >= 20
    logs = doc["paths"]["/devices/{id}/logs"]["get"]["parameters"]
    assert {p["name"] for p in logs if p["in"] == "query"} == {"page[number]", "page[size]"}


def test_collaborator_with_blinkup_device_role_is_refused_beyond_its_role(
        api: ApiThread, client: Client) -> None:
    body = {"data": {"type": "account", "attributes": {
        "username": "operator", "password": "op", "role": "blinkup_device"}}}
    status, made = client("POST", "/accounts/me/collaborators", body)
    assert status == 201 and made["data"]["attributes"]["role"] == "blinkup_device"
    op = Client(api.endpoint)
    op.login("operator", "op")
    status, me = op("GET", "/accounts/me")
    assert status == 200 and "unbond_key" not in me["data"]["attributes"]
    status, body = op("POST", "/accounts/me/collaborators", {"data": {"type": "account"}})
    assert status == 403 and _is_error_doc(body, 403)
    assert op("GET", "/accounts/me/login_keys")[0] == 403


def test_oversized_and_garbage_requests_get_4xx_and_the_server_lives_on(api: ApiThread) -> None:
    host, port = urlsplit(api.endpoint).hostname, urlsplit(api.endpoint).port
    for garbage in (b"NONSENSE\r\n\r\n", b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                    b"POST /v5/auth HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n",
                    b"GET /v5/" + b"x" * 10000 + b" HTTP/1.1\r\n\r\n"):
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(garbage)
            answer = s.recv(4096)
        assert re.match(rb"HTTP/1\.[01] 4\d\d ", answer), (garbage, answer)
    assert Client(api.endpoint)("GET", "/openapi.json")[0] == 200


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["data", "type", "id", "attributes", "relationships",
                                       "username", "password", "role", "token", "key"]),
                      children, max_size=5),
    max_leaves=12))
def test_no_body_makes_the_server_answer_5xx(client: Client, body: Any) -> None:
    for method, path in (("POST", "/auth"), ("POST", "/auth/token"),
                         ("POST", "/accounts/me/collaborators")):
        status, answer = client(method, path, body)
        assert status < 500, (method, path, body, answer)


def test_blinkup_device_collaborator_is_refused_every_owner_route(
        api: ApiThread, client: Client) -> None:
    """The role allows reading its account and minting an enrolment token: nothing else."""

    client("POST", "/accounts/me/collaborators", {"data": {"type": "account", "attributes": {
        "username": "op", "password": "op", "role": "blinkup_device"}}})
    op = Client(api.endpoint)
    op.login("op", "op")
    allowed = {("GET", "/accounts/me"), ("GET", "/accounts"), ("GET", "/accounts/{id}"),
               ("POST", "/enrolment_tokens"), ("GET", "/accounts/me/refresh_tokens"),
               ("DELETE", "/accounts/me/refresh_tokens/{id}")}
    checked = 0
    for route in api.service.router.routes:
        if not route.auth:
            continue
        path = re.sub(r"\{\w+\}", "x", route.template)
        status, body = op(route.method, path, {"data": {"type": "product"}})
        if (route.method, route.template) in allowed:
            assert status != 403, route.template
        else:
            assert status == 403, (route.method, route.template, status)
            assert _is_error_doc(body, 403)
            checked += 1
    assert checked > 30
    status, token = op("POST", "/enrolment_tokens")
    assert status == 201 and len(token["data"]["attributes"]["plan_id"]) == 16
    status, _ = op("POST", "/enrolment_tokens", {"data": {"type": "enrolment_token",
                                                          "attributes": {"kind": "production"}}})
    assert status == 403  # end-user (production) tokens are the owner's alone
