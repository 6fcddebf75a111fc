"""Electric Imp's impt ProductionGuide, every command as written, against the emulated cloud.

Each ``# impt ...`` comment is a command line of ``ProductionGuide.md`` (impt 2.6.1),
in the guide's order; the lines under it are the ``imp-central-api`` calls impt
makes for it (``tests/node/impt_flow.Impt``), run by node against a live cloud
whose devices cross the session's MQTT broker. Where the guide leaves a step to
another document (building the release candidates, an end user's BlinkUp) the
comment says which command of the CommandsManual stands in. Two things the guide
writes do not hold in impt itself, and the test says so where they occur: the
fixture group is called ``MyFactoryDG`` in one section and ``MyFixtureDG`` in
another (one group here), and ``impt device unassign --unbond KEY`` never sends
the key (a client bug, refused as impCentral refuses it; ``impt dg unassign``
sends it).

The second test is impt's own ``spec/dg/device_group_update.spec.js``: a group
with one build, then ``impt dg update --min-supported-deployment`` that build.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "node"))
from impcentral_node import NodeCallError, NodeClient, api_cloud, node_missing
from impt_flow import Impt, ImptError
from test_api_impt import APP, APP2, DUT, FIXTURE, _line_run

from impfactory.cloud.api_client import ApiClient
from impfactory.cloud.api_thread import ApiThread
from impfactory.cloud.fakedevice import FakeDevice
from impfactory.protocol import cloudlink as cl

pytestmark = [pytest.mark.node,
              pytest.mark.skipif(node_missing() is not None, reason=node_missing() or "")]

HOOK = "http://127.0.0.1:9/hook"  # nothing listens: deliveries are queued and retried


@pytest.fixture
def cloud(broker_url: str, tmp_path: Path) -> Iterator[ApiThread]:
    with api_cloud(tmp_path / "cloud.db", broker_url, "U", "P") as running:
        yield running


def test_the_production_guide_as_written(cloud: ApiThread) -> None:
    devices: list[FakeDevice] = []
    with NodeClient(cloud.endpoint) as imp:
        imp("auth.login", "U", "P")
        try:
            _production_guide(cloud, Impt(imp), devices)
        finally:
            for dev in devices:
                cloud.run(dev.close())


def _production_guide(cloud: ApiThread, impt: Impt, devices: list[FakeDevice]) -> None:
    imp = impt.imp
    assert cloud.cloud is not None
    # -- Product Creation
    # impt product create --name MyProduct --descr "My product"
    impt.product_create("MyProduct", "My product")

    # -- Production Testing Device Groups
    # impt dg create --name MyPreProductionDG --descr "Pre-production Device Group for application"
    #     --dg-type pre-production --product MyProduct
    pre_prod = impt.dg_create("MyPreProductionDG", "pre-production", "MyProduct",
                              descr="Pre-production Device Group for application")
    # impt dg create --name MyPreDUTDG --descr "Development DUT Firmware"
    #     --dg-type pre-dut --product MyProduct
    pre_dut = impt.dg_create("MyPreDUTDG", "pre-dut", "MyProduct",
                             descr="Development DUT Firmware")
    # impt project create --pre-factory --product MyProduct --name MyPreFactoryDG
    #     --descr "Development Fixture Firmware"
    #     --dut MyPreDUTDG --create-dut
    #     --target MyPreProductionDG --create-target
    #     --device-file factory.device.nut --agent-file factory.agent.nut
    pre_fix = impt.project_create("MyProduct", "MyPreFactoryDG", "Development Fixture Firmware",
                                  "pre-factory", dut="MyPreDUTDG", create_dut=True,
                                  target="MyPreProductionDG", create_target=True)
    assert pre_fix["relationships"]["production_target"]["id"] == pre_prod["id"]
    assert pre_fix["relationships"]["dut_target"]["id"] == pre_dut["id"]  # found, not made
    # impt dg update --dg MyPreProductionDG --load-code-after-blessing false
    impt.dg_update("MyPreProductionDG", load_code_after_blessing=False)
    assert impt.resolve("deviceGroups", "MyPreProductionDG")["attributes"][
        "load_code_after_blessing"] is False

    # the release candidates the guide copies later, made in the Test Zone (CommandsManual:
    # impt build deploy --dg G --device-file F --origin O)
    app = impt.build_deploy("MyPreProductionDG", APP, origin="MyAppRC1")
    impt.build_deploy("MyPreDUTDG", DUT, origin="MyDUTFirmwareRC1")
    impt.build_deploy("MyPreFactoryDG", FIXTURE, origin="MyFixtureFirmwareRC1")

    # -- Production Device Groups: "created in exactly the same way"
    # impt dg create --name MyFixtureDG --dg-type factory --product MyProduct
    #     --dut MyDUTDG --create-dut --target MyProductionDG --create-target
    fixture_dg = impt.dg_create("MyFixtureDG", "factory", "MyProduct", target="MyProductionDG",
                                dut="MyDUTDG", create_target=True, create_dut=True)
    prod_dg = impt.resolve("deviceGroups", "MyProductionDG")
    dut_dg = impt.resolve("deviceGroups", "MyDUTDG")
    assert (prod_dg["type"], dut_dg["type"]) == ("production_devicegroup", "dut_devicegroup")
    assert fixture_dg["relationships"]["production_target"]["id"] == prod_dg["id"]
    assert fixture_dg["relationships"]["dut_target"]["id"] == dut_dg["id"]

    # -- Deployments
    # impt build copy --build MyAppRC1 --dg MyProductionDG
    copied = impt.build_copy("MyAppRC1", "MyProductionDG")
    assert copied["attributes"]["sha"] == app["attributes"]["sha"]
    # impt build copy --build MyFixtureFirmwareRC1 --dg MyFixtureDG
    impt.build_copy("MyFixtureFirmwareRC1", "MyFixtureDG")
    # impt build copy --build MyDUTFirmwareRC1 --dg MyDUTDG
    impt.build_copy("MyDUTFirmwareRC1", "MyDUTDG")
    for group in (prod_dg, fixture_dg, dut_dg):  # each one's first build: current, min-supported
        rels = impt.resolve("deviceGroups", group["id"])["relationships"]
        assert rels["current_deployment"] == rels["min_supported_deployment"]

    # -- Monitoring Production With Webhooks
    # impt webhook create --dg MyProductionDG --url <webhook_url> --event blessing --mime json
    blessing = impt.webhook_create("MyProductionDG", HOOK, "blessing", "json")
    # impt webhook create --dg MyProductionDG --url <webhook_url> --event blinkup --mime urlencoded
    impt.webhook_create("MyProductionDG", HOOK, "blinkup", "urlencoded")

    # -- BlinkUp Fixtures: BlinkUp'd into the account with the mobile app, then assigned
    owner = ApiClient(cloud.endpoint).login("U", "P")
    fixture = FakeDevice(cloud.cloud.broker_url)
    devices.append(fixture)
    enrol = owner.call("POST", "/enrolment_tokens")["data"]["attributes"]
    cloud.run(fixture.connect())
    cloud.run(fixture.hello(enrol["plan_id"], enrol["token"]))
    # impt device assign --device <device_id> --dg MyFactoryDG   (the guide's other name
    # for MyFixtureDG)
    impt.device_assign(fixture.device_id, "MyFixtureDG")

    # -- DUTs: factory BlinkUp, then blessing into the production target
    blessed = _line_run(cloud, fixture, devices, 3)

    # -- Production Devices
    # impt device list --dg MyProductionDG
    listed = impt.device_list("MyProductionDG")
    assert sorted(d["id"] for d in listed) == sorted(d.device_id for d in blessed)
    assert all(d["attributes"]["blessed"] and d["attributes"]["agent_id"] for d in listed)

    # -- Unblessing Production Devices
    # impt device unassign --device <device_id> --unbond <unbond_key>
    # impt 2.6.1 never sends the key it is given (Device._unassign reads the class's
    # Options.unbond, always undefined): refused, as impCentral refuses a keyless unbless
    with pytest.raises(NodeCallError) as keyless:
        impt.device_unassign(blessed[0].device_id)
    assert keyless.value.status == 403

    # -- Device Logging
    # impt log get -device <device_id>
    logs = impt.log_get(blessed[0].device_id, 1, 20)
    assert any("Blessed" in e["msg"] for e in logs)

    # -- New Application Versions (MyRC2 made in the Test Zone first)
    impt.build_deploy("MyPreProductionDG", APP2, origin="MyRC2")
    # impt build copy --build MyRC2 --dg MyProductionDG
    rc2 = impt.build_copy("MyRC2", "MyProductionDG")
    assert impt.resolve("deviceGroups", "MyProductionDG")["relationships"][
        "current_deployment"]["id"] == rc2["id"]
    # impt dg restart --dg MyProductionDG
    assert impt.dg_restart("MyProductionDG", conditional=False) == 3
    for dut in blessed:
        assert cloud.run(dut.expect(cl.Restart, 10)).reason == "restart"
    # impt dg create --dg-type production   (a group for a subset of the devices)
    impt.dg_create("MyProductionDG2", "production", "MyProduct")
    # impt device assign --device <device_id> --dg MyProductionDG2
    impt.device_assign(blessed[0].device_id, "MyProductionDG2")
    # impt dg reassign --from MyProductionDG --to MyProductionDG2   (all of them)
    moved = impt.dg_reassign("MyProductionDG", "MyProductionDG2")
    assert sorted(moved) == sorted(d.device_id for d in blessed[1:])
    assert impt.device_list("MyProductionDG") == []

    # -- Cleaning Up
    # impt dg builds --dg MyProductionDG
    assert {b["id"] for b in impt.dg_builds("MyProductionDG")} == {copied["id"], rc2["id"]}
    # impt webhook delete --wh <webhook_id>
    impt.webhook_delete(blessing["id"])
    # impt dg unassign --dg MyProductionDG2 --unbond <unbond_key>   (CommandsManual: the
    # unblessing that does send the key), then impt dg delete --dg MyProductionDG2
    unbond = imp("accounts.get", "me")["data"]["attributes"]["unbond_key"]
    assert sorted(impt.dg_unassign("MyProductionDG2", unbond)) == sorted(
        d.device_id for d in blessed)
    impt.dg_delete("MyProductionDG2")
    # impt build cleanup
    assert impt.build_cleanup() == []  # no build outlives its group here
    # impt product delete --product MyProduct --builds --force
    impt.product_delete("MyProduct", builds=True, force=True)
    for member in ("products", "deviceGroups", "deployments", "webhooks"):
        assert impt.list_all(member) == [], member
    assert all("devicegroup" not in d["relationships"] for d in impt.list_all("devices"))


def test_impts_own_device_group_update_spec(cloud: ApiThread) -> None:
    """spec/dg/device_group_update.spec.js, 'update device group by project'."""
    with NodeClient(cloud.endpoint) as imp:
        imp("auth.login", "U", "P")
        impt = Impt(imp)
        # impt product create -n __impt_dg_product
        impt.product_create("__impt_dg_product", "")
        # impt dg create -n __impt_dg_device_group -s "impt temp device group description"
        #     -p __impt_dg_product
        group = impt.dg_create("__impt_dg_device_group", "development", "__impt_dg_product",
                               descr="impt temp device group description")
        # impt build deploy --dg <dg_id>
        deploy_id = impt.build_deploy(group["id"], "")["id"]
        # impt dg update -n __impt_dg_new_device_group -s "impt new device group description"
        #     --min-supported-deployment <deploy_id> -e '{"foo":"bar"}'
        impt.dg_update(group["id"], min_supported=deploy_id, name="__impt_dg_new_device_group",
                       description="impt new device group description", env_vars={"foo": "bar"})
        got = impt.resolve("deviceGroups", group["id"])
        assert got["attributes"]["name"] == "__impt_dg_new_device_group"
        assert got["attributes"]["env_vars"] == {"foo": "bar"}
        assert got["relationships"]["min_supported_deployment"]["id"] == deploy_id
        with pytest.raises(ImptError, match="is not of device group"):  # impt checks first
            other = impt.dg_create("Other", "development", "__impt_dg_product")
            impt.dg_update(other["id"], min_supported=deploy_id)
