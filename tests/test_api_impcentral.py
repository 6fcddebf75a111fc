"""What impCentral answers where Electric Imp's clients read it (issue 15, items 1-7).

Facts from Electric Imp's own sources: ``impt``'s test suite (``spec/MessageHelper.js``)
expects the titles and details of its refusals word for word (impt prints
``title: detail``); its ``spec/dg/device_group_update.spec.js`` sets
``--min-supported-deployment`` on a group with one deployment, which needs the first
deployment to be the min-supported one; its ProductionGuide copies builds straight
into production, DUT and fixture groups; ``imp-central-api``'s own spec creates a
``deployment`` webhook on a development group; impt reads a login key as 16
characters; its DeleteHelper tells "already unassigned" by a 400 whose every entry
has status 404. Each test talks to a live API over real HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from test_api_core import Client

from impfactory.cloud.api_thread import ApiThread
from impfactory.cloud.rules import DeviceRules
from impfactory.protocol import cloudlink as cl


@pytest.fixture
def api() -> Iterator[ApiThread]:
    with ApiThread(":memory:") as running:
        running.call(running.service.accounts.create, "owner", "s3cret")
        yield running


@pytest.fixture
def client(api: ApiThread) -> Iterator[Client]:
    c = Client(api.endpoint)
    c.login("owner", "s3cret")
    yield c
    c.conn.close()


def made(c: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = c("POST", path, body)
    assert status == 201, answer
    return dict(answer["data"])


def product(c: Client, name: str = "P") -> dict[str, Any]:
    return made(c, "/products", {"data": {"type": "product", "attributes": {"name": name}}})


def group(c: Client, prod: dict[str, Any], type_: str, name: str,
          **targets: dict[str, Any]) -> dict[str, Any]:
    rels = {"product": {"type": "product", "id": prod["id"]},
            **{k: {"type": g["type"], "id": g["id"]} for k, g in targets.items()}}
    return made(c, "/devicegroups", {"data": {"type": type_, "attributes": {"name": name},
                                              "relationships": rels}})


def deploy(c: Client, grp: dict[str, Any], code: str, **attrs: Any) -> dict[str, Any]:
    return made(c, "/deployments", {"data": {
        "type": "deployment", "attributes": {"device_code": code, "agent_code": "", **attrs},
        "relationships": {"devicegroup": {"type": grp["type"], "id": grp["id"]}}}})


def refusal(answer: tuple[int, Any]) -> tuple[int, str, str]:
    """(status, the ``title: detail`` impt prints, the code) of a one-entry error answer."""
    status, body = answer
    [err] = body["errors"]
    assert err["status"] == str(status) and err["code"]
    return status, f"{err['title']}: {err['detail']}", err["code"]


def test_refusals_carry_impcentrals_titles_and_details(client: Client) -> None:
    prod = product(client, "Lamp")
    dev = group(client, prod, "development_devicegroup", "Dev")
    assert refusal(client("POST", "/products", {"data": {
        "type": "product", "attributes": {"name": "Lamp"}}})) == (
        409, "Duplicate Resource: Products must have unique names.", "DuplicateResource")
    other = product(client, "Other")
    status, _ = client("PATCH", f"/products/{other['id']}", {"data": {
        "type": "product", "id": other["id"], "attributes": {"name": "Lamp"}}})
    assert status == 409
    assert refusal(client("POST", "/devicegroups", {"data": {
        "type": "pre_dut_devicegroup", "attributes": {"name": "Dev"},
        "relationships": {"product": {"type": "product", "id": prod["id"]}}}})) == (
        409, "Duplicate Resource: Devicegroups must have unique names.", "DuplicateResource")
    assert refusal(client("DELETE", f"/products/{prod['id']}")) == (
        409, "Dependent Devicegroups Exist: Cannot delete a product with associated "
        "devicegroups.", "DependentDevicegroupsExist")
    first = deploy(client, dev, "// 1")
    flagged = deploy(client, dev, "// 2", flagged=True)
    client("PUT", f"/devicegroups/{dev['id']}/relationships/min_supported_deployment",
           {"data": {"type": "deployment", "id": flagged["id"]}})
    client("PATCH", f"/deployments/{first['id']}", {"data": {
        "type": "deployment", "id": first["id"], "attributes": {"flagged": True}}})
    assert refusal(client("DELETE", f"/deployments/{first['id']}")) == (
        409, "Resource Flagged: You cannot delete flagged deployments; set the flagged "
        "attribute to false and try again.", "ResourceFlagged")
    assert refusal(client("DELETE", f"/devicegroups/{dev['id']}")) == (
        409, "Flagged Deployments Exist: Cannot delete a devicegroup with flagged "
        "deployments; delete those first.", "FlaggedDeploymentsExist")
    for bad in ("not a url", "ftp://example.com/hook", "http://"):
        assert refusal(client("POST", "/webhooks", {"data": {"type": "webhook", "attributes": {
            "event": "deployment", "url": bad, "content_type": "application/json"},
            "relationships": {"devicegroup": {"type": dev["type"], "id": dev["id"]}}}})) == (
            400, "Invalid URL: The provided URL is invalid.", "InvalidURL"), bad
    hook = made(client, "/webhooks", {"data": {"type": "webhook", "attributes": {
        "event": "deployment", "url": "http://127.0.0.1:9/h", "content_type": "application/json"},
        "relationships": {"devicegroup": {"type": dev["type"], "id": dev["id"]}}}})
    assert refusal(client("PATCH", f"/webhooks/{hook['id']}", {"data": {
        "type": "webhook", "id": hook["id"], "attributes": {"url": "mailto:x@y"}}}))[1] == \
        "Invalid URL: The provided URL is invalid."


@pytest.mark.parametrize("zone", ["pre_", ""])
def test_a_fixture_group_without_both_targets_is_refused(client: Client, zone: str) -> None:
    prod = product(client)
    production = group(client, prod, f"{zone}production_devicegroup", "Prod")
    dut = group(client, prod, f"{zone}dut_devicegroup", "DUT")
    for given, missing in (({"dut_target": dut}, "production_target"),
                           ({"production_target": production}, "dut_target"),
                           ({}, "production_target")):
        rels = {"product": {"type": "product", "id": prod["id"]},
                **{k: {"type": g["type"], "id": g["id"]} for k, g in given.items()}}
        status, body = client("POST", "/devicegroups", {"data": {
            "type": f"{zone}factoryfixture_devicegroup", "attributes": {"name": "Fix"},
            "relationships": rels}})
        [err] = body["errors"]
        assert (status, err["code"], err["source"]["pointer"]) == (
            400, "MissingRelationship", f"/data/relationships/{missing}"), given
    status, body = client("GET", "/devicegroups")
    assert {g["attributes"]["name"] for g in body["data"]} == {"Prod", "DUT"}
    group(client, prod, f"{zone}factoryfixture_devicegroup", "Fix",
          production_target=production, dut_target=dut)


def test_group_names_are_unique_per_product_not_per_account(client: Client) -> None:
    one, two = product(client, "One"), product(client, "Two")
    group(client, one, "development_devicegroup", "Lab")
    twin = group(client, two, "development_devicegroup", "Lab")
    assert twin["attributes"]["name"] == "Lab"
    status, _ = client("POST", "/devicegroups", {"data": {
        "type": "development_devicegroup", "attributes": {"name": "Lab"},
        "relationships": {"product": {"type": "product", "id": two["id"]}}}})
    assert status == 409


def test_the_first_deployment_is_min_supported_and_an_update_moves_updated_at(
        api: ApiThread, client: Client) -> None:
    prod = product(client)
    dev = group(client, prod, "development_devicegroup", "Dev")
    assert "min_supported_deployment" not in dev["relationships"]
    first = deploy(client, dev, "// 1")
    got = client("GET", f"/devicegroups/{dev['id']}")[1]["data"]["relationships"]
    assert got["min_supported_deployment"] == got["current_deployment"] == {
        "type": "deployment", "id": first["id"]}
    second = deploy(client, dev, "// 2")
    got = client("GET", f"/devicegroups/{dev['id']}")[1]["data"]["relationships"]
    assert (got["min_supported_deployment"]["id"], got["current_deployment"]["id"]) == (
        first["id"], second["id"])
    # impt dg update --min-supported-deployment <second>: the PUT, then the empty PATCH
    assert client("PUT", f"/devicegroups/{dev['id']}/relationships/min_supported_deployment",
                  {"data": {"type": "deployment", "id": second["id"]}})[0] == 204
    assert client("PATCH", f"/devicegroups/{dev['id']}", {"data": {
        "type": dev["type"], "id": dev["id"], "attributes": {}}})[0] == 200

    attrs = first["attributes"]
    assert attrs["updated_at"] == attrs["created_at"]
    svc = api.service.svc
    later = svc.now
    api.call(setattr, svc, "now", lambda: later() + 60)  # a minute on, injected
    status, body = client("PATCH", f"/deployments/{first['id']}", {"data": {
        "type": "deployment", "id": first["id"], "attributes": {"description": "RC1",
                                                                "tags": ["rc1"]}}})
    assert status == 200
    assert body["data"]["attributes"]["created_at"] == attrs["created_at"]
    assert body["data"]["attributes"]["updated_at"] > attrs["updated_at"]


def test_production_zone_groups_take_builds_as_the_production_guide_copies_them(
        client: Client) -> None:
    prod = product(client)
    test_zone = {"production": group(client, prod, "pre_production_devicegroup", "PP"),
                 "dut": group(client, prod, "pre_dut_devicegroup", "PD")}
    live = {"production": group(client, prod, "production_devicegroup", "Prod"),
            "dut": group(client, prod, "dut_devicegroup", "DUT")}
    test_zone["fixture"] = group(client, prod, "pre_factoryfixture_devicegroup", "PF",
                                 production_target=test_zone["production"],
                                 dut_target=test_zone["dut"])
    live["fixture"] = group(client, prod, "factoryfixture_devicegroup", "Fix",
                            production_target=live["production"], dut_target=live["dut"])
    for role in ("production", "dut", "fixture"):
        # impt build copy --build My<role>RC1 --dg <production zone group>: GET, then POST
        rc1 = deploy(client, test_zone[role], f"// {role} rc1", origin=f"{role}RC1")
        source = client("GET", f"/deployments/{rc1['id']}")[1]["data"]["attributes"]
        copy = deploy(client, live[role], source["device_code"])
        assert copy["attributes"]["sha"] == rc1["attributes"]["sha"]
        assert copy["attributes"]["promoted"] is False
        # and impt build deploy of new code straight into it
        fresh = deploy(client, live[role], f"// {role} rc2")
        assert fresh["relationships"]["devicegroup"]["id"] == live[role]["id"]


def test_deployment_webhooks_fit_any_group_blessing_ones_production_groups(
        client: Client) -> None:
    prod = product(client)
    dev = group(client, prod, "development_devicegroup", "Dev")
    pp = group(client, prod, "pre_production_devicegroup", "PP")

    def hook(grp: dict[str, Any], event: str) -> int:
        return client("POST", "/webhooks", {"data": {"type": "webhook", "attributes": {
            "event": event, "url": "http://127.0.0.1:9/h", "content_type": "application/json"},
            "relationships": {"devicegroup": {"type": grp["type"], "id": grp["id"]}}}})[0]

    assert hook(dev, "deployment") == 201
    assert (hook(dev, "blessing"), hook(dev, "blinkup")) == (400, 400)
    assert (hook(pp, "blessing"), hook(pp, "blinkup"), hook(pp, "deployment")) == (201,) * 3


def _enrol(api: ApiThread, client: Client, device_id: str) -> None:
    """A developer's BlinkUp of a new imp into the owner's account (no broker needed)."""
    owner = client("GET", "/accounts/me")[1]["data"]["id"]
    svc = api.service.svc

    def hello() -> None:
        token = svc.create_development_token(owner)
        DeviceRules(svc).handle(cl.Hello(device_id=device_id, mac=device_id[4:], req=1,
                                         plan_id=token.plan_id, token=token.token))
    api.call(hello)


def test_an_unassigned_device_runs_no_agent_and_is_not_found_by_one(
        api: ApiThread, client: Client) -> None:
    device_id = "0c2a690a0b0c0d0e"
    _enrol(api, client, device_id)
    agent_id = api.call(api.service.svc.get_device, device_id).agent_id
    assert agent_id
    attrs = client("GET", f"/devices/{device_id}")[1]["data"]["attributes"]
    assert (attrs["agent_id"], attrs["agent_running"]) == ("", False)
    assert client("GET", f"/devices/{agent_id}")[0] == 404
    dev = group(client, product(client), "development_devicegroup", "Dev")
    assert client("POST", f"/devicegroups/{dev['id']}/relationships/devices",
                  {"data": [{"type": "device", "id": device_id}]})[0] == 204
    attrs = client("GET", f"/devices/{device_id}")[1]["data"]["attributes"]
    assert attrs["agent_id"] == agent_id and attrs["agent_url"].endswith(agent_id)
    assert client("GET", f"/devices/{agent_id}")[1]["data"]["id"] == device_id


def test_unassigning_devices_not_in_the_group_is_a_400_of_404s(
        api: ApiThread, client: Client) -> None:
    """impt's DeleteHelper reads such an answer as "already unassigned"."""
    ids = ["0c2a690a0b0c0d01", "0c2a690a0b0c0d02"]
    for device_id in ids:
        _enrol(api, client, device_id)
    prod = product(client)
    dev = group(client, prod, "development_devicegroup", "Dev")
    client("POST", f"/devicegroups/{dev['id']}/relationships/devices",
           {"data": [{"type": "device", "id": ids[0]}]})
    body = {"data": [{"type": "device", "id": i} for i in ids]}
    status, answer = client("DELETE", f"/devicegroups/{dev['id']}/relationships/devices", body)
    assert status == 400
    assert [e["status"] for e in answer["errors"]] == ["404"]
    assert ids[1] in answer["errors"][0]["detail"]
    attrs = client("GET", f"/devices/{ids[0]}")[1]["data"]
    assert attrs["relationships"]["devicegroup"]["id"] == dev["id"]  # nothing was done
    assert client("DELETE", f"/devicegroups/{dev['id']}/relationships/devices",
                  {"data": [{"type": "device", "id": ids[0]}]})[0] == 204


def test_login_keys_are_16_hex_characters(api: ApiThread, client: Client) -> None:
    status, body = client("POST", "/accounts/me/login_keys", {"data": {
        "type": "login_key", "attributes": {"description": "ci"}}},
        {"X-Electricimp-Password": "s3cret"})
    assert status == 201
    key = body["data"]["id"]
    assert re.fullmatch("[0-9a-f]{16}", key), key
    # impt's tests take the first 16 of [0-9a-z] in its output as the key: the whole key
    assert re.search("[0-9a-z]{16}", f"Login Key:\n  id: {key}\n").group(0) == key
    assert Client(api.endpoint)("POST", "/auth/token", {"key": key})[0] == 200


def test_a_deployment_requiring_an_unknown_library_is_refused_naming_it(
        client: Client) -> None:
    """impCloud resolves ``#require`` at deploy time; so does the emulated cloud."""
    prod = product(client)
    dev = group(client, prod, "development_devicegroup", "Dev")
    status, text, _ = refusal(client("POST", "/deployments", {"data": {
        "type": "deployment",
        "attributes": {"device_code": '#require "NoSuch.lib.nut:1.0.0"\nserver.log(1);\n',
                       "agent_code": ""},
        "relationships": {"devicegroup": {"type": dev["type"], "id": dev["id"]}}}}))
    assert status == 400 and "NoSuch.lib.nut" in text
    major = '#require "HTS221.device.lib.nut:3.0.0"\n'  # the built-in one is 2.0.2
    status, text, _ = refusal(client("POST", "/deployments", {"data": {
        "type": "deployment", "attributes": {"device_code": major, "agent_code": ""},
        "relationships": {"devicegroup": {"type": dev["type"], "id": dev["id"]}}}}))
    assert status == 400 and "3.0.0" in text and "2.0.2" in text
    built_in = deploy(client, dev, '#require "FactoryTools.lib.nut:2.2.0"\nserver.log(1);\n')
    assert built_in["attributes"]["device_code"].startswith("#require")  # stored as written
