"""Every list filter narrows to exactly what it names (IMPCENTRAL_API.md §5).

Two products, each with a Test Zone, one flagged deployment, a webhook; a second
account with its own product. Each filter is checked against the set it must
give, so a filter that is accepted but ignored fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_api_rules import deploy, group

from impfactory.cloud.api_client import ApiClient
from impfactory.cloud.api_thread import ApiThread


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db: Path = tmp_path_factory.mktemp("filters") / "c.db"
    with ApiThread(db) as api:
        api.call(api.service.accounts.create, "owner", "pw")
        api.call(api.service.accounts.create, "other", "pw")
        owner = ApiClient(api.endpoint).login("owner", "pw")
        other = ApiClient(api.endpoint).login("other", "pw")
        w: dict[str, Any] = {"owner": owner, "other": other,
                             "me": owner.call("GET", "/accounts/me")["data"]["id"]}
        for tag, client in (("A", owner), ("B", owner), ("X", other)):
            product = client.call("POST", "/products", {"data": {
                "type": "product", "attributes": {"name": f"P{tag}"}}})["data"]
            pp = group(client, product["id"], "pre_production_devicegroup", f"PP{tag}")
            pd = group(client, product["id"], "pre_dut_devicegroup", f"PD{tag}")
            d1 = deploy(client, pp, f"app {tag}", tags=["rc1", tag])
            d2 = deploy(client, pd, f"dut {tag}", flagged=True)
            d3 = deploy(client, pp, "shared code", tags=["rc2"])
            hook = client.call("POST", "/webhooks", {"data": {"type": "webhook", "attributes": {
                "event": "blessing", "url": "http://127.0.0.1:9/h",
                "content_type": "application/json"}, "relationships": {
                "devicegroup": {"type": pp["type"], "id": pp["id"]}}}})["data"]
            w[tag] = {"product": product, "pp": pp, "pd": pd, "deps": [d1, d2, d3],
                      "hook": hook}
        yield w


def ids(client: ApiClient, path: str, **flt: str) -> set[str]:
    return {item["id"] for item in client.list_all(path, flt)}


def test_deployment_filters(world: dict[str, Any]) -> None:
    owner, a, b = world["owner"], world["A"], world["B"]
    mine = {d["id"] for d in a["deps"] + b["deps"]}
    assert ids(owner, "/deployments") == mine
    assert ids(owner, "/deployments", **{"owner.id": world["me"]}) == mine
    assert ids(owner, "/deployments", **{"creator.id": world["me"]}) == mine
    assert ids(owner, "/deployments", **{"owner.id": "someone-else"}) == set()
    assert ids(owner, "/deployments", **{"product.id": a["product"]["id"]}) == \
        {d["id"] for d in a["deps"]}
    assert ids(owner, "/deployments", **{"devicegroup.id": a["pp"]["id"]}) == \
        {a["deps"][0]["id"], a["deps"][2]["id"]}
    assert ids(owner, "/deployments", flagged="true") == {a["deps"][1]["id"], b["deps"][1]["id"]}
    assert ids(owner, "/deployments", flagged="false") == \
        mine - {a["deps"][1]["id"], b["deps"][1]["id"]}
    assert ids(owner, "/deployments", **{"flagger.id": world["me"]}) == \
        {a["deps"][1]["id"], b["deps"][1]["id"]}
    assert ids(owner, "/deployments", sha=a["deps"][2]["attributes"]["sha"]) == \
        {a["deps"][2]["id"], b["deps"][2]["id"]}  # identical code, identical sha
    assert ids(owner, "/deployments", tags="rc1") == {a["deps"][0]["id"], b["deps"][0]["id"]}
    assert ids(owner, "/deployments", tags="rc1,A") == {a["deps"][0]["id"]}


def test_group_product_and_webhook_filters(world: dict[str, Any]) -> None:
    owner, other, a, b, x = world["owner"], world["other"], world["A"], world["B"], world["X"]
    assert ids(owner, "/products") == {a["product"]["id"], b["product"]["id"]}
    assert ids(owner, "/products", **{"owner.id": world["me"]}) == ids(owner, "/products")
    assert ids(other, "/products") == {x["product"]["id"]}
    assert ids(owner, "/devicegroups", **{"product.id": b["product"]["id"]}) == \
        {b["pp"]["id"], b["pd"]["id"]}
    assert ids(owner, "/devicegroups", type="pre_dut_devicegroup") == \
        {a["pd"]["id"], b["pd"]["id"]}
    assert ids(owner, "/devicegroups", **{"owner.id": world["me"]}) == \
        {a["pp"]["id"], a["pd"]["id"], b["pp"]["id"], b["pd"]["id"]}
    assert ids(owner, "/devicegroups", **{"product.id": x["product"]["id"]}) == set()
    assert ids(owner, "/webhooks", **{"devicegroup.id": a["pp"]["id"]}) == {a["hook"]["id"]}
    assert ids(owner, "/webhooks") == {a["hook"]["id"], b["hook"]["id"]}
    assert ids(owner, "/devices", **{"owner.id": "someone-else"}) == set()
    assert ids(owner, "/devices", **{"product.id": a["product"]["id"]}) == set()
