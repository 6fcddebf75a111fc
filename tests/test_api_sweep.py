"""Every served route, swept with hostile requests: no 5xx, and every 4xx is JSON:API.

The route table is read from the running service, so a route added later is
swept too. Each route gets unknown ids, ids of the wrong kind, odd characters,
no body, malformed JSON, JSON of the wrong shape, a wrong content type, a body
of a megabyte, and bad query strings; the answer must be below 500 and, when it
is a 4xx, a JSON:API error document (``{"errors": [{status, code, title,
detail}]}``) whose status matches the HTTP status.
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
from test_api_rules import build_test_zone

from impfactory.cloud.api_client import ApiClient
from impfactory.cloud.api_thread import ApiThread


class Raw:
    """Bytes-level requests over one keep-alive connection (reopened when the server closes)."""

    def __init__(self, endpoint: str, token: str) -> None:
        parts = urlsplit(endpoint)
        self.host, self.port, self.base = parts.hostname or "", parts.port or 80, parts.path
        self.token = token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def send(self, method: str, path: str, body: bytes | None = None,
             ctype: str = "application/vnd.api+json") -> tuple[int, str, bytes]:
        headers = {"Content-type": ctype, "Authorization": f"Bearer {self.token}"}
        try:
            self.conn.request(method, self.base + path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            raise
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        return resp.status, resp.getheader("Content-Type", ""), data


def assert_sane(status: int, ctype: str, data: bytes, what: Any) -> None:
    """Below 500; a 4xx carries a JSON:API error document naming the same status."""
    assert status < 500, (what, status, data[:300])
    if status >= 400:
        assert "json" in ctype, (what, status, ctype)
        doc = json.loads(data)
        errors = doc["errors"]
        assert isinstance(errors, list) and errors, (what, doc)
        for err in errors:
            assert err["status"] == str(status), (what, doc)
            assert {"code", "title", "detail"} <= set(err), (what, doc)


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[ApiThread, dict[str, Any], str]]:
    with ApiThread(":memory:") as api:
        api.call(api.service.accounts.create, "owner", "pw")
        owner = ApiClient(api.endpoint).login("owner", "pw")
        zone = build_test_zone(owner)
        assert owner.token is not None
        yield api, zone, owner.token


HUGE = json.dumps({"data": {"type": "product", "attributes": {
    "name": "x" * (1 << 20), "description": "y"}}}).encode()
BODIES: list[tuple[bytes | None, str]] = [
    (None, "application/vnd.api+json"),
    (b"{", "application/vnd.api+json"),
    (b"\xff\xfe\x00", "application/json"),
    (b"[]", "application/vnd.api+json"),
    (b'"data"', "application/vnd.api+json"),
    (b'{"data": []}', "application/vnd.api+json"),
    (b'{"data": {"type": 7, "id": [], "attributes": "x", "relationships": 1}}',
     "application/vnd.api+json"),
    (b'{"data": {"type": "deployment", "id": "x", "attributes": {"name": {}, "tags": "t",'
     b' "flagged": "yes", "device_code": 5, "url": 1, "event": null}}}',
     "application/vnd.api+json"),
    (b'{"data": [{"type": "device", "id": 5}, null]}', "application/vnd.api+json"),
    (b'{"id": 1}', "text/plain"),
    (b"name=x", "application/x-www-form-urlencoded"),
    (HUGE, "application/vnd.api+json"),
]


def _ids(zone: dict[str, Any]) -> list[str]:
    """Path ids to try: unknown, of another kind, odd characters, very long, real."""
    return ["nope", zone["product"]["id"], zone["deps"]["dut"]["id"], zone["pp"]["id"],
            "../products", quote("\x00;'\"<>", safe=""), "%", "x" * 5000, "0" * 16]


def _routes(api: ApiThread) -> list[tuple[str, str]]:
    return [(r.method, r.template) for r in api.service.router.routes]


def test_every_route_with_every_kind_of_id_answers_below_500(
        world: tuple[ApiThread, dict[str, Any], str]) -> None:
    api, zone, token = world
    raw = Raw(api.endpoint, token)
    swept = 0
    for method, template in _routes(api):
        if "{" not in template:
            continue
        for ident in _ids(zone):
            if template == "/logstream/{sid}" and method == "GET" and ident != "nope":
                continue  # only an unknown stream answers at once; a real one streams
            path = re.sub(r"\{\w+\}", ident, template)
            status, ctype, data = raw.send(method, path, b'{"data": {"type": "x"}}')
            assert_sane(status, ctype, data, (method, path[:80]))
            swept += 1
    assert swept > 250


def test_every_route_with_every_hostile_body_answers_below_500(
        world: tuple[ApiThread, dict[str, Any], str]) -> None:
    api, _, token = world
    raw = Raw(api.endpoint, token)
    for method, template in _routes(api):
        if method == "GET" and template == "/logstream/{sid}":
            path = "/logstream/nope"
        else:
            path = re.sub(r"\{\w+\}", "nope", template)
        for body, ctype in BODIES:
            status, got_type, data = raw.send(method, path, body, ctype)
            assert_sane(status, got_type, data, (method, path, (body or b"")[:40], ctype))
            if body is not None and "json" not in ctype:
                assert status == 415, (method, path, ctype, status)


def test_real_ids_with_hostile_bodies_answer_below_500_and_change_nothing(
        world: tuple[ApiThread, dict[str, Any], str]) -> None:
    """Write routes aimed at real resources: bad bodies are refused and leave them be."""
    api, zone, token = world
    raw = Raw(api.endpoint, token)
    owner = ApiClient(api.endpoint)
    owner.token = token
    before = {c: owner.call("GET", c) for c in ("/products", "/devicegroups", "/deployments")}
    real = {"product": zone["product"]["id"], "dg": zone["pp"]["id"],
            "dep": zone["deps"]["production"]["id"]}
    targets = [("PATCH", f"/products/{real['product']}"),
               ("PATCH", f"/devicegroups/{real['dg']}"),
               ("POST", f"/devicegroups/{real['dg']}/relationships/devices"),
               ("DELETE", f"/devicegroups/{real['dg']}/relationships/devices"),
               ("PUT", f"/devicegroups/{real['dg']}/relationships/min_supported_deployment"),
               ("PATCH", f"/deployments/{real['dep']}"),
               ("POST", f"/devicegroups/{zone['pf']['id']}/go_live"),
               ("POST", "/products"), ("POST", "/devicegroups"), ("POST", "/deployments"),
               ("POST", "/webhooks"), ("POST", "/accounts/me/collaborators")]
    for method, path in targets:
        for body, ctype in BODIES[1:]:
            status, got_type, data = raw.send(method, path, body, ctype)
            assert_sane(status, got_type, data, (method, path, (body or b"")[:40]))
            if body == b'{"data": []}' and path.endswith("/relationships/devices"):
                continue  # an empty list of devices is a valid (no-op) assignment
            assert status >= 400, (method, path, (body or b"")[:60], status)
    after = {c: owner.call("GET", c) for c in before}
    assert after == before


@pytest.mark.parametrize("query", [
    "page%5Bsize%5D=0", "page%5Bsize%5D=-1", "page%5Bnumber%5D=x", "page%5Bnumber%5D=0",
    "page%5Bsize%5D=99999999999999999999", "filter%5Bbogus%5D=1", "filter%5Bflagged%5D=maybe",
    "filter=1", "page=1", "%ff%fe=%00", "filter%5Btype%5D=no_such_type",
    "filter%5Bdevicegroup.type%5D=no_such_type"])
def test_every_collection_with_a_bad_query_is_a_400(
        world: tuple[ApiThread, dict[str, Any], str], query: str) -> None:
    api, _, token = world
    raw = Raw(api.endpoint, token)
    for path in ("/products", "/devicegroups", "/deployments", "/devices", "/webhooks",
                 "/accounts", "/devices/nope/logs"):
        status, ctype, data = raw.send("GET", f"{path}?{query}")
        assert_sane(status, ctype, data, (path, query))
        if path == "/devices/nope/logs":
            assert status in (400, 404), (path, query, status)
        elif "filter" in query and "filter%5Btype" not in query and "devicegroup.type" not in query:
            assert status == 400, (path, query, status)


def test_an_over_limit_body_is_a_json_413_and_the_server_lives_on(
        world: tuple[ApiThread, dict[str, Any], str]) -> None:
    api, _, token = world
    parts = urlsplit(api.endpoint)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(b"POST /v5/products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 20000000\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["errors"][0]["status"] == "413"
    assert Raw(api.endpoint, token).send("GET", "/products")[0] == 200


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer forged", "Basic b3duZXI6cHc=",
                                           "bearer  "])
def test_every_token_route_without_a_good_token_is_a_json_401(
        world: tuple[ApiThread, dict[str, Any], str], authorization: str | None) -> None:
    api, zone, _ = world
    parts = urlsplit(api.endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
    try:
        for route in api.service.router.routes:
            if not route.auth:
                continue
            path = parts.path + re.sub(r"\{\w+\}", zone["pp"]["id"], route.template)
            headers = {"Content-type": "application/vnd.api+json"}
            if authorization is not None:
                headers["Authorization"] = authorization
            conn.request(route.method, path, body=b'{"data": {}}', headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            assert resp.status == 401, (route.method, route.template, authorization)
            assert_sane(resp.status, resp.getheader("Content-Type", ""), data, route.template)
    finally:
        conn.close()


def test_other_methods_are_json_405_with_allow_and_head_leaves_a_keep_alive_connection_usable(
        world: tuple[ApiThread, dict[str, Any], str]) -> None:
    api, _, token = world
    raw = Raw(api.endpoint, token)
    for method in ("OPTIONS", "TRACE", "PROPFIND", "PATCH"):
        status, ctype, data = raw.send(method, "/products")
        assert status == 405, method
        assert_sane(status, ctype, data, method)
    status, ctype, data = raw.send("CONNECT", "/products")  # a path is no CONNECT target
    assert 400 <= status < 500
    assert_sane(status, ctype, data, "CONNECT")
    # HEAD: the GET's head alone, so the next answer on the same connection starts right after
    parts = urlsplit(api.endpoint)
    get = Raw(api.endpoint, token).send("GET", "/products")[2]
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"HEAD /v5/products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
                     "\r\n\r\nGET /v5/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close"
                     "\r\n\r\n".encode())
        stream = b""
        while chunk := sock.recv(65536):
            stream += chunk
    head, _, rest = stream.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and f"Content-Length: {len(get)}".encode() in head
    assert rest.startswith(b"HTTP/1.1 200"), rest[:80]


def test_the_routes_that_read_a_body_are_the_ones_openapi_gives_a_request_body(
        world: tuple[ApiThread, dict[str, Any], str]) -> None:
    """Malformed JSON is an ``InvalidJson`` 400 exactly on the routes whose OpenAPI entry
    has a ``requestBody``; a body of a type outside its enum is refused there."""
    api, zone, token = world
    owner = ApiClient(api.endpoint)
    owner.token = token
    pp = zone["pp"]
    hook = owner.call("POST", "/webhooks", {"data": {"type": "webhook", "attributes": {
        "event": "blessing", "url": "http://127.0.0.1:9/h", "content_type": "application/json"},
        "relationships": {"devicegroup": {"type": pp["type"], "id": pp["id"]}}}})["data"]
    parts = urlsplit(api.endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
    conn.request("POST", parts.path + "/accounts/me/login_keys", headers={
        "Authorization": f"Bearer {token}", "X-Electricimp-Password": "pw"})
    login_key = json.loads(conn.getresponse().read())["data"]["id"]
    conn.close()
    real = {"/products/{id}": zone["product"]["id"], "/devicegroups/{id}": pp["id"],
            "/deployments/{id}": zone["deps"]["dut"]["id"], "/webhooks/{id}": hook["id"],
            "/accounts/me/login_keys/{id}": login_key}
    doc = json.loads(Raw(api.endpoint, token).send("GET", "/openapi.json")[2])
    reads_body, declared = set(), set()
    for route in api.service.router.routes:
        if route.method == "GET" and route.template == "/logstream/{sid}":
            continue
        path = route.template.replace("/devicegroups/{id}/go_live",
                                      f"/devicegroups/{zone['pf']['id']}/go_live")
        for prefix, ident in real.items():
            path = path.replace(prefix, prefix.replace("{id}", ident))
        path = re.sub(r"\{\w+\}", "nope", path)
        key = (route.method, route.template)
        if "requestBody" in doc["paths"][route.template][route.method.lower()]:
            declared.add(key)
        if route.template == "/devices/{id}" and route.method == "PATCH":
            continue  # needs an enrolled device; its body is parsed by the same code
        for body, want in ((b"{", "InvalidJson"), (b'{"data": {"type": "zzz"}}', None)):
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
            conn.request(route.method, parts.path + path, body=body, headers={
                "Authorization": f"Bearer {token}", "Content-type": "application/json",
                "X-Electricimp-Password": "pw"})
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            if want and resp.status == 400 and want.encode() in data:
                reads_body.add(key)
            if want is None and key in declared:
                assert 400 <= resp.status < 500, (key, resp.status, data[:200])
    declared.discard(("PATCH", "/devices/{id}"))
    assert reads_body == declared
    assert len(declared) >= 15


def test_auth_never_answers_403(world: tuple[ApiThread, dict[str, Any], str]) -> None:
    """impt reads a 403 from ``POST /auth`` as the two-factor flow (§1): a bad login
    must be a 400, 401 or 415, whatever the body."""
    api, _, token = world
    raw = Raw(api.endpoint, token)
    plain = [b'{"id": "owner", "password": "wrong"}', b'{"id": "nobody", "password": "pw"}',
             b'{"id": "owner"}', b'{"token": "forged"}', b'{"key": "forged"}',
             b'{"id": 5, "password": []}']
    bodies = [*BODIES[1:], *((b, "application/json") for b in plain)]
    for path in ("/auth", "/auth/token"):
        for body, ctype in bodies:
            status, got_type, data = raw.send("POST", path, body, ctype)
            assert status in (400, 401, 415), (path, body[:40] if body else body, status)
            assert_sane(status, got_type, data, path)
