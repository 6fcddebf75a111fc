"""REST rules over plain HTTP: 404s for unknown ids, deployment and group rules,
Go Live refusals that leave nothing behind, webhooks that survive a cloud restart,
and a fuzzed body on every write route that must never produce a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impfactory.backoff import Backoff
from impfactory.cloud.api_client import ApiClient, ApiClientError
from impfactory.cloud.api_thread import ApiThread
from impfactory.cloud.api_webhooks import Delivery


def status_of(client: ApiClient, method: str, path: str, body: Any = None) -> int:
    try:
        client.call(method, path, body)
    except ApiClientError as err:
        return err.status
    return 200


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiThread]:
    with ApiThread(tmp_path / "c.db", backoff=Backoff(first=0.05, cap=0.2)) as running:
        running.call(running.service.accounts.create, "owner", "pw")
        running.call(running.service.accounts.create, "other", "pw")
        yield running


@pytest.fixture
def owner(api: ApiThread) -> ApiClient:
    return ApiClient(api.endpoint).login("owner", "pw")


def group(client: ApiClient, product: str, type_: str, name: str,
          **targets: dict[str, str]) -> dict[str, Any]:
    rels: dict[str, Any] = {"product": {"type": "product", "id": product}, **targets}
    return dict(client.call("POST", "/devicegroups", {"data": {
        "type": type_, "attributes": {"name": name}, "relationships": rels}})["data"])


def deploy(client: ApiClient, grp: dict[str, Any], code: str, **attrs: Any) -> dict[str, Any]:
    return dict(client.call("POST", "/deployments", {"data": {
        "type": "deployment", "attributes": {"device_code": code, "agent_code": "", **attrs},
        "relationships": {"devicegroup": {"type": grp["type"], "id": grp["id"]}}}})["data"])


def build_test_zone(owner: ApiClient) -> dict[str, Any]:
    """A promoted Test Zone (a test fixture group and its two targets) and its parts."""
    product = owner.call("POST", "/products", {"data": {"type": "product",
                                                        "attributes": {"name": "P"}}})["data"]
    pp = group(owner, product["id"], "pre_production_devicegroup", "PP")
    pd = group(owner, product["id"], "pre_dut_devicegroup", "PD")
    pf = group(owner, product["id"], "pre_factoryfixture_devicegroup", "PF",
               production_target={"type": pp["type"], "id": pp["id"]},
               dut_target={"type": pd["type"], "id": pd["id"]})
    deps = {name: deploy(owner, g, f"code {name}", tags=["promoted"])
            for name, g in (("production", pp), ("dut", pd), ("fixture", pf))}
    assert all(d["attributes"]["promoted"] for d in deps.values())
    return {"product": product, "pp": pp, "pd": pd, "pf": pf, "deps": deps}


def test_a_test_zone_is_built_and_promoted_by_tag(owner: ApiClient) -> None:
    zone = build_test_zone(owner)
    listed = owner.call("GET", "/deployments", query={"filter[tags]": "promoted"})["data"]
    assert {d["id"] for d in listed} == {d["id"] for d in zone["deps"].values()}


def test_every_collection_answers_404_for_unknown_and_foreign_ids(
        api: ApiThread, owner: ApiClient) -> None:
    zone = build_test_zone(owner)
    for path in ("/products/nope", "/devicegroups/nope", "/deployments/nope",
                 "/devices/nope", "/webhooks/nope", "/accounts/nope"):
        assert status_of(owner, "GET", path) == 404, path
    other = ApiClient(api.endpoint).login("other", "pw")
    for path in (f"/products/{zone['product']['id']}", f"/devicegroups/{zone['pp']['id']}",
                 f"/deployments/{zone['deps']['dut']['id']}"):
        assert status_of(other, "GET", path) == 404, path
    assert other.call("GET", "/devicegroups")["data"] == []


def test_deployment_rules(owner: ApiClient) -> None:
    zone = build_test_zone(owner)
    pp = zone["pp"]
    old = zone["deps"]["production"]
    newer = deploy(owner, pp, "v2")
    newest = deploy(owner, pp, "v3")
    assert [d["id"] for d in owner.call("GET", "/deployments", query={
        "filter[devicegroup.id]": pp["id"]})["data"]] == [newest["id"], newer["id"], old["id"]]
    owner.call("PUT", f"/devicegroups/{pp['id']}/relationships/min_supported_deployment",
               {"data": {"type": "deployment", "id": newer["id"]}})
    assert status_of(owner, "PUT",
                     f"/devicegroups/{pp['id']}/relationships/min_supported_deployment",
                     {"data": {"type": "deployment", "id": old["id"]}}) == 400  # backwards
    assert status_of(owner, "DELETE", f"/deployments/{newer['id']}") == 409  # min-supported
    assert status_of(owner, "DELETE", f"/deployments/{old['id']}") == 200  # older: allowed
    owner.call("PATCH", f"/deployments/{newest['id']}", {"data": {
        "type": "deployment", "id": newest["id"], "attributes": {"flagged": True}}})
    assert owner.call("GET", "/deployments", query={"filter[flagged]": "true"})["data"][0][
        "id"] == newest["id"]
    got = owner.call("GET", f"/deployments/{newest['id']}")["data"]["attributes"]
    assert got["device_code"] == "v3" and got["flagged"] is True and got["promoted"] is False
    # the promoted extension attribute and the tag are one thing
    owner.call("PATCH", f"/deployments/{newest['id']}", {"data": {
        "type": "deployment", "attributes": {"promoted": True}}})
    got = owner.call("GET", f"/deployments/{newest['id']}")["data"]["attributes"]
    assert got["promoted"] is True and "promoted" in got["tags"]


def test_group_rules(owner: ApiClient) -> None:
    zone = build_test_zone(owner)
    pid = zone["product"]["id"]
    pd = zone["pd"]
    for type_, extra in (("development_devicegroup", {"load_code_after_blessing": False}),
                         ("pre_dut_devicegroup", {"region": "eu"})):
        body = {"data": {"type": type_, "attributes": {"name": f"X{type_}", **extra},
                         "relationships": {"product": {"type": "product", "id": pid}}}}
        assert status_of(owner, "POST", "/devicegroups", body) == 400
    assert status_of(owner, "POST", "/devicegroups", {"data": {  # fixture without targets
        "type": "factoryfixture_devicegroup", "attributes": {"name": "F"},
        "relationships": {"product": {"type": "product", "id": pid}}}}) == 400
    assert status_of(owner, "POST", "/devicegroups", {"data": {  # duplicate name
        "type": "development_devicegroup", "attributes": {"name": "PD"},
        "relationships": {"product": {"type": "product", "id": pid}}}}) == 409
    assert status_of(owner, "DELETE", f"/devicegroups/{pd['id']}") == 409  # a target
    assert status_of(owner, "PATCH", f"/devicegroups/{pd['id']}", {"data": {  # wrong type
        "type": "production_devicegroup", "id": pd["id"], "attributes": {}}}) == 400
    owner.call("PATCH", f"/devicegroups/{pd['id']}", {"data": {
        "type": pd["type"], "id": pd["id"], "attributes": {}}})  # impt's empty PATCH


def test_go_live_refusals_leave_nothing_behind(owner: ApiClient) -> None:
    zone = build_test_zone(owner)
    before = len(owner.call("GET", "/devicegroups")["data"])
    body = {"data": {"type": "go_live", "attributes": {
        "production": {"name": "Prod"}, "dut": {"name": "DUT"}, "fixture": {"name": "PD"}}}}
    assert status_of(owner, "POST", f"/devicegroups/{zone['pf']['id']}/go_live", body) == 409
    assert len(owner.call("GET", "/devicegroups")["data"]) == before
    assert status_of(owner, "POST", f"/devicegroups/{zone['pp']['id']}/go_live", body) == 400
    # a test group without a promoted deployment refuses Go Live too
    owner.call("PATCH", f"/deployments/{zone['deps']['dut']['id']}", {"data": {
        "type": "deployment", "attributes": {"tags": []}}})
    body["data"]["attributes"]["fixture"] = {"name": "Fix"}
    assert status_of(owner, "POST", f"/devicegroups/{zone['pf']['id']}/go_live", body) == 400
    assert len(owner.call("GET", "/devicegroups")["data"]) == before


class Sink:
    """An HTTP receiver that answers ``status`` (changeable) and records bodies (of the
    requests it answered 200, with their paths) and the paths of every request."""

    def __init__(self) -> None:
        self.status = 500
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.answered: list[str] = []
        self.hits = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sink.paths.append(self.path)
                sink.hits += 1
                if sink.status == 200:
                    sink.answered.append(self.path)
                    sink.bodies.append(json.loads(raw))
                self.send_response(sink.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_until(self, ready: Callable[[], bool], timeout: float = 15.0) -> None:
        """Poll ``ready`` until it holds; fail with what arrived if it never does."""
        deadline = time.monotonic() + timeout
        while not ready():
            assert time.monotonic() < deadline, (self.hits, self.paths, self.bodies)
            time.sleep(0.02)


def test_webhook_events_survive_a_cloud_restart(tmp_path: Path) -> None:
    sink = Sink()
    db = tmp_path / "cloud.db"
    try:
        with ApiThread(db, backoff=Backoff(first=0.05, cap=0.1)) as first:
            first.call(first.service.accounts.create, "owner", "pw")
            owner = ApiClient(first.endpoint).login("owner", "pw")
            zone = build_test_zone(owner)
            live = owner.call("POST", f"/devicegroups/{zone['pf']['id']}/go_live", {"data": {
                "type": "go_live", "attributes": {
                    "production": {"name": "Prod"}, "dut": {"name": "DUT"},
                    "fixture": {"name": "Fix"},
                    "webhooks": [{"event": "deployment", "url": sink.url}]}}})
            prod_id = live["data"]["relationships"]["production_devicegroup"]["id"]
            prod = owner.call("GET", f"/devicegroups/{prod_id}")["data"]
            made = deploy(owner, prod, "code production")  # the receiver is failing now
            sink.wait_until(lambda: sink.hits >= 2)  # tried, failed, retried: still queued
            assert sink.bodies == []
        sink.status = 200
        with ApiThread(db, backoff=Backoff(first=0.05, cap=0.1)):
            sink.wait_until(lambda: bool(sink.bodies))
        assert [b["deployment_id"] for b in sink.bodies] == [made["id"]]
        assert sink.bodies[0]["event"] == "deployment" and sink.bodies[0]["event_id"]
    finally:
        sink.server.shutdown()
        sink.server.server_close()


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
        st.sampled_from(["data", "type", "id", "attributes", "relationships", "name", "product",
                         "devicegroup", "production_target", "device_code", "agent_code",
                         "tags", "event", "url", "content_type", "production", "dut",
                         "fixture", "webhooks", "flagged", "promoted"]), kids, max_size=5),
    max_leaves=14)


@pytest.fixture
def fuzz_target(owner: ApiClient) -> tuple[ApiClient, dict[str, Any]]:
    return owner, build_test_zone(owner)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSONISH)
def test_no_body_on_any_write_route_gets_a_5xx(
        fuzz_target: tuple[ApiClient, dict[str, Any]], body: Any) -> None:
    client, zone = fuzz_target
    pp, pf, dep = zone["pp"]["id"], zone["pf"]["id"], zone["deps"]["production"]["id"]
    for method, path in (("POST", "/products"), ("PATCH", f"/products/{zone['product']['id']}"),
                         ("POST", "/devicegroups"), ("PATCH", f"/devicegroups/{pp}"),
                         ("POST", f"/devicegroups/{pp}/relationships/devices"),
                         ("DELETE", f"/devicegroups/{pp}/relationships/devices"),
                         ("PUT", f"/devicegroups/{pp}/relationships/min_supported_deployment"),
                         ("POST", "/deployments"), ("PATCH", f"/deployments/{dep}"),
                         ("POST", "/webhooks"), ("POST", f"/devicegroups/{pf}/go_live")):
        status = status_of(client, method, path, body)
        assert status < 500, (method, path, body)


def test_a_deleted_webhook_gets_none_of_its_queued_events(api: ApiThread, owner: ApiClient
                                                          ) -> None:
    """Events queued while the receiver fails: the deleted webhook's are abandoned, the
    kept webhook's (same group, same backoff) are delivered once the receiver recovers."""
    sink = Sink()
    try:
        zone = build_test_zone(owner)
        pp = zone["pp"]
        made = [owner.call("POST", "/webhooks", {"data": {"type": "webhook", "attributes": {
            "event": "deployment", "url": f"{sink.url}?{name}",
            "content_type": "application/json"}, "relationships": {
            "devicegroup": {"type": pp["type"], "id": pp["id"]}}}})["data"]
            for name in ("kept", "deleted")]
        dep = deploy(owner, pp, "code while failing")
        # both deliveries have failed at least once and are being retried
        sink.wait_until(lambda: {"/hook?kept", "/hook?deleted"} <= set(sink.paths))
        owner.call("DELETE", f"/webhooks/{made[1]['id']}")
        sink.status = 200
        sink.wait_until(lambda: bool(sink.bodies))
        # nothing is left to send once the outbox has no pending event: the kept one
        # delivered, the deleted webhook's abandoned (waited for, not slept on)
        sink.wait_until(lambda: api.call(api.service.svc.pending_webhooks) == [])
        assert [b["deployment_id"] for b in sink.bodies] == [dep["id"]]
        assert sink.answered == ["/hook?kept"]
    finally:
        sink.server.shutdown()
        sink.server.server_close()


def test_webhook_rules(owner: ApiClient) -> None:
    """Webhooks live on (pre-)production groups only, with a known event, an http(s) URL
    and one of the two content types."""
    zone = build_test_zone(owner)
    dev = group(owner, zone["product"]["id"], "development_devicegroup", "D")

    def make(grp: dict[str, Any], **attrs: str) -> int:
        body = {"data": {"type": "webhook", "attributes": {
            "event": "blessing", "url": "http://127.0.0.1:9/h",
            "content_type": "application/json", **attrs}, "relationships": {
            "devicegroup": {"type": grp["type"], "id": grp["id"]}}}}
        return status_of(owner, "POST", "/webhooks", body)

    for grp in (zone["pd"], zone["pf"], dev):
        assert make(grp) == 400, grp["type"]
    for bad in ({"event": "bogus"}, {"url": "ftp://h/x"}, {"url": "not a url"},
                {"content_type": "text/xml"}):
        assert make(zone["pp"], **bad) == 400, bad
    for event in ("blessing", "blinkup", "deployment"):
        assert make(zone["pp"], event=event,
                    content_type="application/x-www-form-urlencoded") == 200
    hooks = owner.call("GET", "/webhooks", query={"filter[devicegroup.id]": zone["pp"]["id"]})
    assert sorted(h["attributes"]["event"] for h in hooks["data"]) == [
        "blessing", "blinkup", "deployment"]


def _zone_with_deployment_hook(api: ApiThread, url: str) -> tuple[ApiClient, dict[str, Any]]:
    """An owner with a test zone whose production group posts ``deployment`` events to
    ``url``; answers the logged-in client and that group."""
    api.call(api.service.accounts.create, "owner", "pw")
    owner = ApiClient(api.endpoint).login("owner", "pw")
    pp = build_test_zone(owner)["pp"]
    owner.call("POST", "/webhooks", {"data": {"type": "webhook", "attributes": {
        "event": "deployment", "url": url, "content_type": "application/json"},
        "relationships": {"devicegroup": {"type": pp["type"], "id": pp["id"]}}}})
    return owner, pp


def test_a_delivery_dies_after_its_last_attempt_and_stays_dead(tmp_path: Path) -> None:
    """Backoff(max_attempts=3): three POSTs to a failing receiver, then none, even once
    the receiver answers again."""
    sink = Sink()
    try:
        with ApiThread(tmp_path / "c.db", backoff=Backoff(first=0.02, cap=0.05, max_attempts=3)
                       ) as api:
            owner, pp = _zone_with_deployment_hook(api, sink.url)
            deploy(owner, pp, "code for a dead receiver")
            (delivery,) = api.call(api.service.svc.pending_webhooks)
            dispatcher = api.service.dispatcher
            # dead is final: the dispatcher never picks a dead delivery again (due()),
            # so once it is dead no fourth attempt can come, however long one waits
            sink.wait_until(lambda: api.call(dispatcher.state_of, delivery.id) is Delivery.DEAD)
            sink.status = 200
            assert sink.hits == 3 and sink.bodies == []
            assert api.call(dispatcher.due) == []
            # and a new event still goes out while the dead one stays where it is
            live = deploy(owner, pp, "code for a live receiver")
            sink.wait_until(lambda: bool(sink.bodies))
            assert [b["deployment_id"] for b in sink.bodies] == [live["id"]]
            assert sink.hits == 4 and api.call(dispatcher.state_of, delivery.id) is Delivery.DEAD
    finally:
        sink.server.shutdown()
        sink.server.server_close()


def test_the_delivery_table_refuses_what_it_does_not_list() -> None:
    from impfactory.cloud.api_webhooks import (
        TRANSITIONS,
        Delivery,
        DeliveryStateError,
        Outcome,
        next_state,
    )

    for state in (Delivery.DELIVERED, Delivery.DEAD):
        for outcome in Outcome:
            with pytest.raises(DeliveryStateError):
                next_state(state, outcome)
    assert {next_state(s, Outcome.OK) for s in (Delivery.PENDING, Delivery.RETRYING)} == {
        Delivery.DELIVERED}
    # every outcome is listed for the two live states, and nothing else is
    assert set(TRANSITIONS) == {(s, o) for s in (Delivery.PENDING, Delivery.RETRYING)
                                for o in Outcome}
    assert set(Delivery) == {Delivery.PENDING, Delivery.RETRYING, Delivery.DELIVERED,
                             Delivery.DEAD}


def test_dead_deliveries_do_not_starve_later_ones(tmp_path: Path) -> None:
    """One delivery per round (``batch = 1``): the first event dies on a failing receiver,
    the second, made after, is still delivered once the receiver answers."""
    sink = Sink()
    try:
        with ApiThread(tmp_path / "c.db", backoff=Backoff(first=0.02, cap=0.05, max_attempts=1)
                       ) as api:
            api.call(setattr, api.service.dispatcher, "batch", 1)
            owner, pp = _zone_with_deployment_hook(api, sink.url)
            deploy(owner, pp, "first, to a failing receiver")
            deadline = time.monotonic() + 15
            while sink.hits < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            sink.status = 200
            second = deploy(owner, pp, "second, to a working receiver")
            while not sink.bodies and time.monotonic() < deadline:
                time.sleep(0.02)
            assert [b["deployment_id"] for b in sink.bodies] == [second["id"]]
    finally:
        sink.server.shutdown()
        sink.server.server_close()


def test_a_redirecting_receiver_is_a_failed_delivery_not_a_get() -> None:
    """A client following the redirect would replay the POST as a bodiless GET to the new
    place; a 3xx is a failure (retried later), and nothing but the POST reaches the
    receiver."""
    from impfactory.cloud.api_webhooks import post_event
    from impfactory.cloud.outbound import Outbound

    async def deliver(url: str) -> tuple[int | None, str | None]:
        async with Outbound(timeout=5) as http:
            reply = await post_event(http, url, b"{}", "application/json", "evt-1")
        return reply.status, reply.error

    seen: list[str] = []

    class Redirecting(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append("POST " + self.path)
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            seen.append("GET " + self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        assert asyncio.run(deliver(url)) == (302, "HTTP 302")
        assert seen == ["POST /hook"]
    finally:
        server.shutdown()
        server.server_close()
