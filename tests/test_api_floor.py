"""``impfactory floor`` against a running cloud, driven from outside as a user would.

The cloud (SQLite, device link over the session broker, REST API) runs in its own
thread; the floor runs as the command line in another; the test plays the user
over HTTP: it builds a Test Zone with the example factory firmware, waits for the
floor's two new imps to show up unassigned, assigns both to the test fixture group,
and watches every fed DUT get blessed into the test production group: the floor
ends only when all of them have an outcome, whichever fixture finishes first.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from impfactory.cloud.api_client import ApiClient
from impfactory.cloud.api_thread import ApiThread
from impfactory.firmware import examples
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID
from impfactory.tools.cli import main as impfactory


def _group(c: ApiClient, product: str, type_: str, name: str, **rels: Any) -> dict[str, Any]:
    body = {"data": {"type": type_, "attributes": {"name": name}, "relationships": {
        "product": {"type": "product", "id": product}, **rels}}}
    return dict(c.call("POST", "/devicegroups", body)["data"])


def _deploy(c: ApiClient, group: dict[str, Any], code: str) -> None:
    c.call("POST", "/deployments", {"data": {"type": "deployment", "attributes": {
        "device_code": code, "agent_code": ""}, "relationships": {
        "devicegroup": {"type": group["type"], "id": group["id"]}}}})


def _unassigned(c: ApiClient) -> list[dict[str, Any]]:
    return [d for d in c.list_all("/devices") if "devicegroup" not in d["relationships"]]


def _until(cond: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = cond()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_two_fixtures_share_the_duts_and_the_floor_reports_every_one(
        broker_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ApiThread(tmp_path / "cloud.db", broker_url=broker_url) as cloud:
        cloud.call(cloud.service.accounts.create, "owner", "pw")
        c = ApiClient(cloud.endpoint).login("owner", "pw")
        product = c.call("POST", "/products", {"data": {"type": "product",
                                                        "attributes": {"name": "Lamp"}}})
        pid = product["data"]["id"]
        prod = _group(c, pid, "pre_production_devicegroup", "TestProd")
        dut = _group(c, pid, "pre_dut_devicegroup", "TestDUT")
        fix = _group(c, pid, "pre_factoryfixture_devicegroup", "TestFixture",
                     production_target={"type": prod["type"], "id": prod["id"]},
                     dut_target={"type": dut["type"], "id": dut["id"]})
        factory = examples.factory_source(FACTORY_SSID, FACTORY_PASSWORD)
        _deploy(c, prod, examples.application_source())
        _deploy(c, dut, factory)
        _deploy(c, fix, factory)

        exit_code: list[int] = []
        floor = threading.Thread(target=lambda: exit_code.append(impfactory([
            "floor", "--cloud", cloud.endpoint, "--broker", broker_url, "--user", "owner",
            "--password", "pw", "--fixtures", "2", "--duts", "3", "--press-every", "1",
            "--scale", "100", "--timeout", "90", "--no-commands", "--json"])), daemon=True)
        floor.start()
        fixtures = _until(lambda: len(_unassigned(c)) == 2 and _unassigned(c))
        c.call("POST", f"/devicegroups/{fix['id']}/relationships/devices",
               {"data": [{"type": "device", "id": f["id"]} for f in fixtures]})
        floor.join(120)
        assert not floor.is_alive()
        blessed = c.list_all("/devices", {"devicegroup.id": prod["id"]})
    out = capsys.readouterr().out
    assert exit_code == [0], out
    summary = json.loads(out)
    assert len(summary["fixtures"]) == 2 and summary["placed"] == 3
    assert [r["outcome"] for r in summary["duts"]] == ["blessed"] * 3, summary
    assert {r["fixture"] for r in summary["duts"]} == set(summary["fixtures"])
    assert len(blessed) == 3 and all(d["attributes"]["blessed"] for d in blessed)
