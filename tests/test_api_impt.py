"""IMPCENTRAL_API.md §8, line by line, as ``impt`` would run it over ``imp-central-api``.

``impt`` is not installable here, so ``tests/node/impt_flow.Impt`` composes the
real npm library's calls the way impt's commands do (§4 name resolution: GET as
an id, then list everything and match; §3 paging while ``links.next`` is
present; §6 list-first group commands; the min-supported PUT then empty PATCH).
Each ``# impt ...`` comment is the §8 command the next lines perform. Devices
are the cloud's scripted MQTT devices over the session's broker; the log stream
is read with raw HTTP and no Authorization header, as the client's EventSource
sends it.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).parent / "node"))
from impcentral_node import NodeCallError, NodeClient, api_cloud, node_missing
from impt_flow import Impt, ImptError

from impfactory.cloud.api_client import ApiClient, ApiClientError
from impfactory.cloud.api_thread import ApiThread
from impfactory.cloud.fakedevice import FakeDevice

pytestmark = [pytest.mark.node,
              pytest.mark.skipif(node_missing() is not None, reason=node_missing() or "")]

APP = 'server.log("app");'
APP2 = 'server.log("app rc2");'
DUT = 'server.bless(true, function(ok) {});'
FIXTURE = 'server.factoryblinkup("FactoryWiFi", "pw", hardware.pin1, 0);'


@pytest.fixture
def cloud(broker_url: str, tmp_path: Path) -> Iterator[ApiThread]:
    with api_cloud(tmp_path / "cloud.db", broker_url, "U", "P") as running:
        yield running


def test_section_8_production_setup_the_impt_way(cloud: ApiThread) -> None:
    devices: list[FakeDevice] = []
    with NodeClient(cloud.endpoint) as imp:
        try:
            _section_8(cloud, Impt(imp), devices)
        finally:
            for dev in devices:
                cloud.run(dev.close())


def _line_run(cloud: ApiThread, fixture: FakeDevice, devices: list[FakeDevice], n: int
              ) -> list[FakeDevice]:
    """``n`` DUTs BlinkUp'd by ``fixture`` and blessed."""
    assert cloud.cloud is not None
    made = []
    for _ in range(n):
        token = cloud.run(fixture.factory_token())
        dut = FakeDevice(cloud.cloud.broker_url)
        devices.append(dut)
        cloud.run(dut.connect())
        cloud.run(dut.hello(token.plan_id, token.token))
        assert cloud.run(dut.bless(True)).blessed
        made.append(dut)
    return made


def _section_8(cloud: ApiThread, impt: Impt, devices: list[FakeDevice]) -> None:
    imp = impt.imp
    assert cloud.cloud is not None
    # impt auth login --endpoint http://127.0.0.1:PORT/v5 --user U --pwd P
    tokens = imp("auth.login", "U", "P")
    assert tokens["expires_at"] and tokens["refresh_token"]
    me = imp("accounts.get", "me")["data"]

    # impt product create --name MyProduct --descr "My product"
    impt.product_create("MyProduct", "My product")
    with pytest.raises(NodeCallError) as taken:
        impt.product_create("MyProduct", "again")
    assert taken.value.status == 409

    # impt dg create --name MyPreProductionDG --dg-type pre-production --product MyProduct
    # (the product is named, not an id: GET /products/MyProduct is a 404, then a list)
    impt.pages.clear()
    pre_prod = impt.dg_create("MyPreProductionDG", "pre-production", "MyProduct")
    assert impt.pages == [("products", 1, 1)]
    # impt dg create --name MyPreDUTDG --dg-type pre-dut --product MyProduct
    pre_dut = impt.dg_create("MyPreDUTDG", "pre-dut", "MyProduct")
    # impt dg create --name MyPreFactoryDG --dg-type pre-factory --product MyProduct
    #     --target MyPreProductionDG --dut MyPreDUTDG
    pre_fix = impt.dg_create("MyPreFactoryDG", "pre-factory", "MyProduct",
                             "MyPreProductionDG", "MyPreDUTDG")
    assert pre_fix["relationships"]["production_target"]["id"] == pre_prod["id"]
    assert pre_fix["relationships"]["dut_target"]["id"] == pre_dut["id"]

    # impt build deploy --dg MyPreProductionDG --device-file app.device.nut
    #     --agent-file app.agent.nut --descr "App RC1" --origin MyAppRC1 --tag rc1
    app = impt.build_deploy("MyPreProductionDG", APP, "// agent", description="App RC1",
                            origin="MyAppRC1", tags=["rc1"])
    # impt build deploy --dg MyPreDUTDG --device-file factory.device.nut --origin ...
    impt.build_deploy("MyPreDUTDG", DUT, origin="MyDUTFirmwareRC1")
    # impt build deploy --dg MyPreFactoryDG ... --origin MyFixtureFirmwareRC1 --flagged
    fix = impt.build_deploy("MyPreFactoryDG", FIXTURE, origin="MyFixtureFirmwareRC1",
                            flagged=True)
    assert fix["attributes"]["flagged"] is True
    assert impt.resolve("deployments", "rc1")["id"] == app["id"]  # by tag
    assert impt.resolve("deployments", "MyAppRC1")["id"] == app["id"]  # by origin

    # impt dg update --dg MyPreProductionDG --load-code-after-blessing false
    impt.dg_update("MyPreProductionDG", load_code_after_blessing=False)
    assert impt.resolve("deviceGroups", "MyPreProductionDG")["attributes"][
        "load_code_after_blessing"] is False
    with pytest.raises(NodeCallError) as not_here:  # only (pre-)production groups have it
        impt.dg_update("MyPreDUTDG", load_code_after_blessing=False)
    assert not_here.value.status == 0  # the library refuses before sending; so does the server:
    with pytest.raises(ApiClientError) as server_too:
        ApiClient(cloud.endpoint).login("U", "P").call("PATCH", f"/devicegroups/{pre_dut['id']}", {
            "data": {"type": pre_dut["type"], "id": pre_dut["id"],
                     "attributes": {"load_code_after_blessing": False}}})
    assert server_too.value.status == 400

    # impt webhook create --dg MyPreProductionDG --url http://.../hook --event blessing --mime json
    with socket.socket() as sock:  # blessings below are posted here: a port nothing serves
        sock.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    hook = impt.webhook_create("MyPreProductionDG", nobody, "blessing", "json")
    assert imp("webhooks.get", hook["id"])["data"]["attributes"]["content_type"] == \
        "application/json"

    # impt device assign --device <fixture device id> --dg MyPreFactoryDG
    owner = ApiClient(cloud.endpoint).login("U", "P")
    fixture = FakeDevice(cloud.cloud.broker_url)
    devices.append(fixture)
    enrol = owner.call("POST", "/enrolment_tokens")["data"]["attributes"]
    cloud.run(fixture.connect())
    cloud.run(fixture.hello(enrol["plan_id"], enrol["token"]))
    unassigned = impt.list_all("devices")
    assert [d["id"] for d in unassigned] == [fixture.device_id]
    assert "devicegroup" not in unassigned[0]["relationships"]
    impt.device_assign(fixture.mac, "MyPreFactoryDG")  # by MAC: GET 404, list, match
    imp("devices.update", fixture.device_id, {"name": "Fixture1"})
    assert impt.resolve("devices", "Fixture1")["relationships"]["devicegroup"]["id"] == \
        pre_fix["id"]
    assert impt.resolve("devices", fixture.device_id)["id"] == fixture.device_id

    # a test line run: two DUTs blessed into the pre-production group
    blessed = _line_run(cloud, fixture, devices, 2)

    # impt device list --dg MyPreProductionDG
    listed = impt.device_list("MyPreProductionDG")
    assert sorted(d["id"] for d in listed) == sorted(d.device_id for d in blessed)

    # impt dg restart --dg MyPreProductionDG --conditional
    assert impt.dg_restart("MyPreProductionDG", conditional=True) == 2
    assert cloud.run(_restarted(blessed[0]))
    assert impt.dg_restart("MyPreDUTDG", conditional=True) == 0  # blessed DUTs left it

    # paging: impt lists 120 builds as pages of 100 and 20, then stops (no links.next)
    impt.dg_create("MyBulkDG", "development", "MyProduct")
    bulk = impt.resolve("deviceGroups", "MyBulkDG")
    for i in range(120):
        owner.call("POST", "/deployments", {"data": {"type": "deployment", "attributes": {
            "device_code": f"// {i}", "agent_code": ""}, "relationships": {
            "devicegroup": {"type": bulk["type"], "id": bulk["id"]}}}})
    impt.pages.clear()
    builds = impt.list_all("deployments", {"filter[devicegroup.id]": bulk["id"]})
    assert len(builds) == 120 and len({b["id"] for b in builds}) == 120
    assert impt.pages == [("deployments", 1, 100), ("deployments", 2, 20)]

    # a Production Zone as impt users build it
    for name, kind in (("MyProductionDG", "production"), ("MyDUTDG", "dut")):
        impt.dg_create(name, kind, "MyProduct")
    impt.dg_create("MyFixtureDG", "factory", "MyProduct", "MyProductionDG", "MyDUTDG")

    # impt build copy --build MyAppRC1 --dg MyProductionDG
    copy = impt.build_copy("MyAppRC1", "MyProductionDG")
    assert copy["attributes"]["sha"] == app["attributes"]["sha"]
    with pytest.raises(ImptError):  # §7: identical code, identical sha: now ambiguous
        impt.resolve("deployments", app["attributes"]["sha"])
    impt.build_copy("MyDUTFirmwareRC1", "MyDUTDG")
    impt.build_copy("MyFixtureFirmwareRC1", "MyFixtureDG")
    rc2 = impt.build_deploy("MyPreProductionDG", APP2, origin="MyAppRC2")
    assert impt.build_copy("MyAppRC2", "MyProductionDG")["attributes"]["sha"] == \
        rc2["attributes"]["sha"]  # promoted or not: the Production Zone takes it

    # impt dg update --dg MyPreProductionDG --min-supported-deployment MyAppRC2: PUT, empty PATCH
    assert impt.resolve("deviceGroups", "MyPreProductionDG")["relationships"][
        "min_supported_deployment"]["id"] == app["id"]  # its first build
    impt.dg_update("MyPreProductionDG", min_supported="MyAppRC2")
    assert impt.resolve("deviceGroups", "MyPreProductionDG")["relationships"][
        "min_supported_deployment"]["id"] == rc2["id"]
    with pytest.raises(ImptError, match="earlier"):  # impt checks it before calling
        impt.dg_update("MyPreProductionDG", min_supported="MyAppRC1")
    with pytest.raises(NodeCallError) as kept:  # impt build delete of the min-supported one
        imp("deployments.delete", rc2["id"])
    assert kept.value.status == 409

    # the fixture moves to the production fixture group and blesses two DUTs
    impt.device_assign("Fixture1", "MyFixtureDG")
    in_prod = _line_run(cloud, fixture, devices, 2)
    assert sorted(d["id"] for d in impt.device_list("MyProductionDG")) == \
        sorted(d.device_id for d in in_prod)

    # impt dg reassign --from MyProductionDG --to MyProductionDG2
    impt.dg_create("MyProductionDG2", "production", "MyProduct")
    moved = impt.dg_reassign("MyProductionDG", "MyProductionDG2")
    assert sorted(moved) == sorted(d.device_id for d in in_prod)
    assert impt.device_list("MyProductionDG") == []
    assert impt.dg_reassign("MyProductionDG", "MyProductionDG2") == []  # nothing: no call

    # impt device unassign --device D --unbond KEY: the client drops the key (§7): refused
    with pytest.raises(NodeCallError) as no_key:
        impt.device_unassign(in_prod[0].mac)
    assert no_key.value.status == 403
    with pytest.raises(NodeCallError) as wrong_key:
        impt.dg_unassign("MyProductionDG2", "0" * 32)
    assert wrong_key.value.status == 403
    # impt dg unassign --dg MyProductionDG --unbond KEY (here: the group they moved to)
    gone = impt.dg_unassign("MyProductionDG2", me["attributes"]["unbond_key"])
    assert sorted(gone) == sorted(moved)
    assert all("devicegroup" not in imp("devices.get", i)["data"]["relationships"] for i in gone)
    assert impt.dg_unassign("MyProductionDG2", me["attributes"]["unbond_key"]) == []

    # impt log get --device <device id> --page-number 1 --page-size 20
    logs = impt.log_get(in_prod[0].mac, 1, 20)
    assert 0 < len(logs) <= 20 and all({"ts", "type", "msg"} <= set(e) for e in logs)
    assert any("Blessed" in e["msg"] for e in logs)

    _assert_section_3_shapes(impt)

    # impt log stream: the SSE GET carries no Authorization header and is answered
    sid = imp("logStreams.open", "json")["data"]["id"]
    parts = urlsplit(cloud.endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
    try:
        conn.request("GET", f"{parts.path}/logstream/{sid}?format=json",
                     headers={"Accept": "text/event-stream"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type", "").startswith("text/event-stream")
    finally:
        conn.close()


PRODUCTION_TYPES = {"pre_production_devicegroup", "production_devicegroup"}


def _assert_section_3_shapes(impt: Impt) -> None:
    """Every listed and fetched resource as §3 says: ``relationships`` present on groups,
    deployments and devices, an optional relationship left out (never null), ``tags`` an
    array, ``load_code_after_blessing`` only on (pre-)production groups."""
    def no_nulls(rels: dict[str, Any], what: str) -> None:
        for name, entry in rels.items():
            assert entry is not None, (what, name)
            entries = entry if isinstance(entry, list) else [entry]
            for e in entries:
                assert isinstance(e, dict) and e.get("type") and e.get("id"), (what, name, e)

    for member in ("products", "deviceGroups", "deployments", "devices", "webhooks"):
        for item in impt.list_all(member):
            full = impt.imp(f"{member}.get", item["id"])["data"]
            for res in (item, full):
                what = (member, res["id"])
                assert res["type"] and isinstance(res["attributes"], dict), what
                if member in ("deviceGroups", "deployments", "devices"):
                    assert isinstance(res["relationships"], dict), what
                no_nulls(res.get("relationships", {}), str(what))
                attrs = res["attributes"]
                if member == "deviceGroups":
                    assert set(attrs) >= {"name", "description", "env_vars"}, what
                    assert isinstance(attrs["env_vars"], dict), what
                    production = res["type"] in PRODUCTION_TYPES
                    assert ("load_code_after_blessing" in attrs) == production, what
                    assert ("region" in attrs) == production, what
                    assert "product" in res["relationships"], what
                if member == "deployments":
                    assert isinstance(attrs["tags"], list) and isinstance(attrs["flagged"], bool)
                    assert {"sha", "origin", "description", "created_at"} <= set(attrs), what
                    assert res["relationships"]["devicegroup"]["type"].endswith("_devicegroup")
                if member == "devices":
                    assert {"mac_address", "agent_id", "device_online"} <= set(attrs), what
                    assert isinstance(attrs["device_online"], bool), what
            if member == "deployments":
                assert {"device_code", "agent_code"} <= set(full["attributes"])


async def _restarted(dev: FakeDevice) -> bool:
    from impfactory.protocol import cloudlink as cl

    done, pending = await asyncio.wait(
        [asyncio.ensure_future(dev.expect(cl.ShutdownNotice, 10)),
         asyncio.ensure_future(dev.expect(cl.Restart, 10))],
        return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return bool(done) and next(iter(done)).exception() is None


def test_impt_name_lookups_that_fail_say_so(cloud: ApiThread) -> None:
    """An unknown name is a 404 on GET, then no match in the list: impt's "not found"."""
    with NodeClient(cloud.endpoint) as imp:
        imp("auth.login", "U", "P")
        impt = Impt(imp)
        for member in ("products", "deviceGroups", "devices", "deployments"):
            with pytest.raises(ImptError, match="no"):
                impt.resolve(member, "NoSuchThing")
        with pytest.raises(NodeCallError) as gone:
            imp("webhooks.get", "NoSuchHook")  # webhooks: by id only
        assert gone.value.status == 404
