"""A whole production set-up driven by Electric Imp's ``imp-central-api`` under node.

The cloud runs for real: SQLite, the device link over the session's MQTT broker,
the REST API on a free port. Devices are the cloud's scripted protocol devices
(``cloud/fakedevice.py``), so every device step crosses the broker. The owner
works only through the npm client (and ``impfactory golive`` for the one
extension the client cannot reach); the webhook receiver is a real HTTP server
that fails its first request, so a retry is proven too.

The story, in IMPCENTRAL_API.md §8 order: the seven group types, deployments,
promotion by tag, Go Live, a fixture added by a BlinkUp Device collaborator and
assigned, webhooks set, a line run (factory token → DUTs → blessing), blessed
devices listed in the production group, some moved to a second production
group, a conditional restart, an unbless with the unbond key.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

sys.path.insert(0, str(Path(__file__).parent / "node"))
from impcentral_node import NodeCallError, NodeClient, library_missing, node_missing

from impfactory.backoff import Backoff
from impfactory.cloud.api_client import ApiClient, ApiClientError
from impfactory.cloud.api_thread import ApiThread
from impfactory.cloud.fakedevice import FakeDevice
from impfactory.protocol import cloudlink as cl
from impfactory.tools.cli import main as impfactory

pytestmark = [pytest.mark.node,
              pytest.mark.skipif(node_missing() is not None, reason=node_missing() or "")]

APP = 'server.log("app " + imp.getmacaddress());'
DUT = 'server.bless(true, function(ok) { server.log("blessed " + ok); });'
FIXTURE = 'server.factoryblinkup("FactoryWiFi", "pw", hardware.pin1, 0);'


class Receiver:
    """A real HTTP webhook receiver on a free loopback port; fails the first ``fail`` POSTs."""

    def __init__(self, fail: int = 1) -> None:
        self.fail = fail
        self.seen: list[tuple[int, str, dict[str, Any], dict[str, str]]] = []
        self.accepted: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ctype = self.headers.get("Content-Type", "")
                body = (json.loads(raw) if ctype == "application/json"
                        else {k: v[0] for k, v in parse_qs(raw.decode()).items()})
                with receiver.lock:
                    status = 503 if len(receiver.seen) < receiver.fail else 200
                    receiver.seen.append((status, ctype, body, dict(self.headers)))
                    if status == 200:
                        receiver.accepted.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    """Poll ``predicate`` until true (webhooks are delivered asynchronously)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def cloud(broker_url: str, tmp_path: Path) -> Iterator[ApiThread]:
    missing = library_missing()
    if missing:
        pytest.fail(missing)
    with ApiThread(tmp_path / "cloud.db", broker_url=broker_url,
                   backoff=Backoff(first=0.05, cap=0.5)) as running:
        running.call(running.service.accounts.create, "owner", "s3cret")
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=1)
    yield r
    r.close()


def test_a_whole_production_setup_through_the_real_client(
        cloud: ApiThread, receiver: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    imp = NodeClient(cloud.endpoint)
    devices: list[FakeDevice] = []
    try:
        _story(cloud, imp, receiver, devices, capsys)
    finally:
        for dev in devices:
            cloud.run(dev.close())
        imp.close()


def _story(cloud: ApiThread, imp: NodeClient, receiver: Receiver, devices: list[FakeDevice],
           capsys: pytest.CaptureFixture[str]) -> None:
    imp("auth.login", "owner", "s3cret")
    me = imp("accounts.get", "me")["data"]
    product = imp("products.create", {"name": "Lamp", "description": "A lamp"})["data"]

    def create(type_: str, name: str, *targets: Any) -> dict[str, Any]:
        return dict(imp("deviceGroups.create", product["id"], type_, {"name": name}, *targets)
                    ["data"])

    def ref(group: dict[str, Any]) -> dict[str, str]:
        return {"type": group["type"], "id": group["id"]}

    # -- the Test Zone, and every one of the seven types -------------------------------
    dev_group = create("development_devicegroup", "LampDev")
    pre_prod = create("pre_production_devicegroup", "LampPreProd")
    pre_dut = create("pre_dut_devicegroup", "LampPreDUT")
    pre_fix = create("pre_factoryfixture_devicegroup", "LampPreFixture", ref(pre_prod),
                     ref(pre_dut))
    assert pre_fix["relationships"]["production_target"] == ref(pre_prod)
    spare_prod = create("production_devicegroup", "LampSpare")
    with pytest.raises(NodeCallError) as wrong_zone:  # a test fixture targets test groups
        create("pre_factoryfixture_devicegroup", "Bad", ref(spare_prod), ref(pre_dut))
    assert wrong_zone.value.status == 400
    imp("deviceGroups.delete", spare_prod["id"])

    app = imp("deployments.create", pre_prod["id"], pre_prod["type"], {
        "device_code": APP, "agent_code": "", "description": "App RC1", "origin": "AppRC1",
        "tags": ["rc1"]})["data"]
    dut = imp("deployments.create", pre_dut["id"], pre_dut["type"], {
        "device_code": DUT, "agent_code": "", "origin": "DUTRC1"})["data"]
    fix = imp("deployments.create", pre_fix["id"], pre_fix["type"], {
        "device_code": FIXTURE, "agent_code": "", "origin": "FixRC1", "flagged": True})["data"]
    imp("deviceGroups.update", pre_prod["id"], pre_prod["type"],
        {"load_code_after_blessing": False})
    assert imp("deviceGroups.get", pre_prod["id"])["data"]["attributes"][
        "load_code_after_blessing"] is False

    # a Production Zone group takes a build straight away (the ProductionGuide's
    # `impt build copy`); promotion is a mark that Go Live reads
    prod_b = create("production_devicegroup", "LampProdB")
    copy = imp("deployments.create", prod_b["id"], prod_b["type"],  # what `impt build copy` does
               {"device_code": APP, "agent_code": "", "origin": "AppRC1"})["data"]
    assert copy["attributes"]["sha"] == app["attributes"]["sha"]
    assert copy["attributes"]["promoted"] is False
    for d in (app, dut, fix):  # promotion by tag: what the npm client and impt can send
        imp("deployments.update", d["id"], {"tags": [*d["attributes"]["tags"], "promoted"]})
    assert imp("deployments.get", app["id"])["data"]["attributes"]["promoted"] is True

    with pytest.raises(NodeCallError) as flagged:
        imp("deployments.delete", fix["id"])
    assert flagged.value.status == 409

    # -- Go Live, through the command line ---------------------------------------------
    code = impfactory(["golive", "--endpoint", cloud.endpoint, "--user", "owner",
                       "--password", "s3cret", "--from", "LampPreFixture",
                       "--production", "LampProd:Production A", "--dut", "LampDUT",
                       "--fixture", "LampFixture", "--load-code-after-blessing", "yes",
                       "--webhook", f"blessing={receiver.url}/bless",
                       "--webhook", f"deployment={receiver.url}/deploy,form", "--json"])
    assert code == 0
    live = json.loads(capsys.readouterr().out)
    rels = live["data"]["relationships"]
    prod = imp("deviceGroups.get", rels["production_devicegroup"]["id"])["data"]
    dut_group = imp("deviceGroups.get", rels["dut_devicegroup"]["id"])["data"]
    fixture_group = imp("deviceGroups.get", rels["factoryfixture_devicegroup"]["id"])["data"]
    assert prod["attributes"]["name"] == "LampProd"
    assert prod["attributes"]["description"] == "Production A"
    assert fixture_group["relationships"]["production_target"] == ref(prod)
    assert fixture_group["relationships"]["dut_target"] == ref(dut_group)
    listed = imp("deviceGroups.list", {"filter[product.id]": product["id"]})["data"]
    assert {g["type"] for g in listed} == {
        "development_devicegroup", "pre_production_devicegroup", "pre_dut_devicegroup",
        "pre_factoryfixture_devicegroup", "production_devicegroup", "dut_devicegroup",
        "factoryfixture_devicegroup"}
    live_dep = imp("deployments.list", {"filter[devicegroup.id]": prod["id"]})["data"][0]
    assert live_dep["attributes"]["sha"] == app["attributes"]["sha"]
    assert len(imp("webhooks.list", {"filter[devicegroup.id]": prod["id"]})["data"]) == 2

    # -- a factory operator (BlinkUp Device role) adds the fixture; the owner assigns it --
    operator = ApiClient(cloud.endpoint).login("owner", "s3cret")
    operator.call("POST", "/accounts/me/collaborators", {"data": {"type": "account",
                  "attributes": {"username": "factory", "password": "op",
                                 "role": "blinkup_device"}}})
    operator.login("factory", "op")
    enrol = operator.call("POST", "/enrolment_tokens")["data"]["attributes"]
    with pytest.raises(ApiClientError) as refused:
        operator.call("GET", "/products")
    assert refused.value.status == 403

    assert cloud.cloud is not None
    fixture = FakeDevice(cloud.cloud.broker_url)
    devices.append(fixture)
    cloud.run(fixture.connect())
    cloud.run(fixture.hello(enrol["plan_id"], enrol["token"]))
    unassigned = [d for d in imp("devices.list")["data"] if d["id"] == fixture.device_id]
    assert unassigned and "devicegroup" not in unassigned[0]["relationships"]
    imp("deviceGroups.addDevices", dev_group["id"], fixture.device_id)  # tried in dev first
    imp("deviceGroups.addDevices", fixture_group["id"], fixture.device_id)
    got = imp("devices.get", fixture.device_id)["data"]
    assert got["relationships"]["devicegroup"] == ref(fixture_group)

    # -- a line run: factory token → DUT enrolment → blessing ---------------------------
    blessed_ids = []
    for i in range(3):
        token = cloud.run(fixture.factory_token())
        dut_dev = FakeDevice(cloud.cloud.broker_url)
        devices.append(dut_dev)
        cloud.run(dut_dev.connect())
        cloud.run(dut_dev.hello(token.plan_id, token.token))
        assert imp("devices.get", dut_dev.device_id)["data"]["relationships"][
            "devicegroup"] == ref(dut_group)
        answer = cloud.run(dut_dev.bless(i != 1))  # the second DUT fails its tests
        assert answer.blessed is (i != 1)
        if answer.blessed:
            blessed_ids.append(dut_dev.device_id)

    in_prod = imp("devices.list", {"filter[devicegroup.id]": prod["id"]})["data"]
    assert sorted(d["id"] for d in in_prod) == sorted(blessed_ids)
    by_type = imp("devices.list", {"filter[devicegroup.type]": "production_devicegroup"})
    assert sorted(d["id"] for d in by_type["data"]) == sorted(blessed_ids)

    # -- the blessing webhooks arrive (after one refused POST), each with an event id ----
    wait_for(lambda: len([b for b in receiver.accepted if b.get("event") == "blessing"]) == 2)
    blessings = [b for b in receiver.accepted if b.get("event") == "blessing"]
    assert sorted(b["device_id"] for b in blessings) == sorted(blessed_ids)
    assert len({b["event_id"] for b in receiver.accepted}) == len(receiver.accepted)
    assert receiver.seen[0][0] == 503  # the first delivery failed and was retried
    retried_id = receiver.seen[0][2]["event_id"]
    assert any(b["event_id"] == retried_id for b in receiver.accepted)

    # -- an end user activates a production device: the blinkup webhook ----------------
    imp("webhooks.create", prod["id"], prod["type"], {
        "event": "blinkup", "url": f"{receiver.url}/blinkup", "content_type": "application/json"})
    end_user = operator.login("owner", "s3cret").call("POST", "/enrolment_tokens", {"data": {
        "type": "enrolment_token", "attributes": {"kind": "production"}}})["data"]["attributes"]
    activated = next(d for d in devices if d.device_id == blessed_ids[1])
    cloud.run(activated.hello(end_user["plan_id"], end_user["token"]))
    wait_for(lambda: any(b.get("event") == "blinkup" for b in receiver.accepted))
    blinkup = next(b for b in receiver.accepted if b.get("event") == "blinkup")
    assert blinkup["device_id"] == activated.device_id
    assert blinkup["plan_id"] == end_user["plan_id"]

    # -- move one production device to a second production group of the product --------
    imp("deviceGroups.addDevices", prod_b["id"], blessed_ids[0])
    assert [d["id"] for d in imp("devices.list", {"filter[devicegroup.id]": prod_b["id"]})
            ["data"]] == [blessed_ids[0]]
    with pytest.raises(NodeCallError) as by_hand:  # nobody assigns to production by hand
        imp("deviceGroups.addDevices", prod_b["id"], fixture.device_id)
    assert by_hand.value.status == 403

    # -- a new build in the production group: the form-encoded deployment webhook -------
    redeploy = imp("deployments.create", prod["id"], prod["type"], {
        "device_code": APP, "agent_code": "", "description": "App RC1 again"})["data"]
    wait_for(lambda: any(b.get("event") == "deployment" for b in receiver.accepted))
    form = next(seen for seen in receiver.seen if seen[2].get("event") == "deployment")
    assert form[1] == "application/x-www-form-urlencoded"
    assert form[2]["deployment_id"] == redeploy["id"]
    assert form[3]["X-Impfactory-Event-Id"] == form[2]["event_id"]

    # -- a conditional restart reaches the moved device ---------------------------------
    imp("deviceGroups.conditionalRestartDevices", prod_b["id"])
    moved = next(d for d in devices if d.device_id == blessed_ids[0])
    notice = cloud.run(_expect_restart(moved))
    assert isinstance(notice, cl.ShutdownNotice | cl.Restart)

    # -- unbless: refused without the unbond key, done with it --------------------------
    with pytest.raises(NodeCallError) as no_key:
        imp("deviceGroups.removeDevices", prod["id"], None, blessed_ids[1])
    assert no_key.value.status == 403
    imp("deviceGroups.removeDevices", prod["id"], me["attributes"]["unbond_key"],
        blessed_ids[1])
    gone = imp("devices.get", blessed_ids[1])["data"]
    assert "devicegroup" not in gone["relationships"]

    logs = imp("devices.getLogs", blessed_ids[0], 1, 20)["data"]
    assert any("Blessed" in entry["msg"] for entry in logs)


async def _expect_restart(dev: FakeDevice) -> cl.Message:
    done, pending = await asyncio.wait(
        [asyncio.ensure_future(dev.expect(cl.ShutdownNotice, 10)),
         asyncio.ensure_future(dev.expect(cl.Restart, 10))],
        return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return next(iter(done)).result()


def test_log_stream_carries_a_device_log_line_to_the_real_client(cloud: ApiThread) -> None:
    """``impt log stream``: a line a device logs over MQTT reaches the npm client's
    EventSource; another device's line does not."""
    assert cloud.cloud is not None
    owner = ApiClient(cloud.endpoint).login("owner", "s3cret")
    watched, other = FakeDevice(cloud.cloud.broker_url), FakeDevice(cloud.cloud.broker_url)
    with NodeClient(cloud.endpoint) as imp:
        try:
            for dev in (watched, other):
                enrol = owner.call("POST", "/enrolment_tokens")["data"]["attributes"]
                cloud.run(dev.connect())
                cloud.run(dev.hello(enrol["plan_id"], enrol["token"]))
            imp("auth.login", "owner", "s3cret")
            sid = imp("logStreams.open", "json")["data"]["id"]
            imp("logStreams.addDevice", sid, watched.mac)  # by MAC, as impt allows
            with pytest.raises(NodeCallError) as foreign:
                imp("logStreams.addDevice", sid, "0" * 16)
            assert foreign.value.status == 404
            cloud.run(other.log("not streamed"))
            cloud.run(watched.log("hello from the line"))

            def arrived() -> list[dict[str, Any]]:
                got = [json.loads(m["message"]) for m in imp("logStreams.drain")
                       if "message" in m]
                seen.extend(got)
                return [m for m in seen if m["msg"] == "hello from the line"]

            seen: list[dict[str, Any]] = []
            wait_for(lambda: bool(arrived()))
            assert {m["device_id"] for m in seen} == {watched.device_id}
            imp("logStreams.removeDevice", sid, watched.device_id)
        finally:
            for dev in (watched, other):
                cloud.run(dev.close())
