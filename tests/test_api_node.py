"""The REST API driven by Electric Imp's own ``imp-central-api`` client under node.

These tests need node and ``tests/node/node_modules`` (``cd tests/node && npm ci``);
CI installs both. Without node they are skipped with that reason.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "node"))
from impcentral_node import NodeCallError, NodeClient, library_missing, node_missing

from impfactory.cloud.api_thread import ApiThread

pytestmark = [pytest.mark.node,
              pytest.mark.skipif(node_missing() is not None, reason=node_missing() or "")]


@pytest.fixture
def api() -> Iterator[ApiThread]:
    missing = library_missing()
    if missing:
        pytest.fail(missing)
    with ApiThread(":memory:") as running:
        running.call(running.service.accounts.create, "owner", "s3cret")
        yield running


@pytest.fixture
def imp(api: ApiThread) -> Iterator[NodeClient]:
    with NodeClient(api.endpoint) as client:
        client("auth.login", "owner", "s3cret")
        yield client


def test_login_refresh_and_accounts_me_through_the_real_client(api: ApiThread) -> None:
    with NodeClient(api.endpoint) as client:
        with pytest.raises(NodeCallError) as bad:
            client("auth.login", "owner", "wrong")
        assert bad.value.status == 401 and "Unauthorized" in bad.value.message
        tokens = client("auth.login", "owner", "s3cret")
        me = client("accounts.get", "me")
        assert me["data"]["attributes"]["username"] == "owner"
        client("auth.refreshAccessToken", tokens["refresh_token"])
        assert client("accounts.get", "me")["data"]["id"] == me["data"]["id"]


def test_login_keys_through_the_real_client(imp: NodeClient) -> None:
    made = imp("accounts.createLoginKey", "s3cret", {"description": "ci"})
    keys = imp("accounts.listLoginKeys")
    assert [k["id"] for k in keys["data"]] == [made["data"]["id"]]
    imp("auth.getAccessToken", made["data"]["id"])
    imp("accounts.deleteLoginKey", made["data"]["id"], "s3cret")
    with pytest.raises(NodeCallError) as gone:
        imp("accounts.getLoginKey", made["data"]["id"])
    assert gone.value.status == 404


def test_refresh_tokens_are_listed_and_revoked_through_the_real_client(imp: NodeClient) -> None:
    second = imp("auth.login", "owner", "s3cret")["refresh_token"]
    listed = imp("auth.getRefreshTokens")["data"]
    assert len(listed) == 2
    for entry in listed:
        imp("auth.deleteRefreshToken", entry["id"])
    assert imp("auth.getRefreshTokens")["data"] == []
    with pytest.raises(NodeCallError) as revoked:
        imp("auth.refreshAccessToken", second)
    assert revoked.value.status == 401


def test_the_rest_of_the_library_surface(broker_url: str, tmp_path: Path) -> None:
    """The library calls no other test makes, each with the answer it must give: products
    get/update/delete, account list, login-key update, webhook update/delete, group and
    device restarts reaching the device, device delete, log stream close."""
    from impfactory.cloud.api_client import ApiClient
    from impfactory.cloud.fakedevice import FakeDevice
    from impfactory.protocol import cloudlink as cl

    missing = library_missing()
    if missing:
        pytest.fail(missing)
    with ApiThread(tmp_path / "c.db", broker_url=broker_url) as api, \
            NodeClient(api.endpoint) as imp:
        api.call(api.service.accounts.create, "owner", "s3cret")
        imp("auth.login", "owner", "s3cret")
        me = imp("accounts.get", "me")["data"]
        assert [a["id"] for a in imp("accounts.list")["data"]] == [me["id"]]
        key = imp("accounts.createLoginKey", "s3cret", {"description": "old"})["data"]["id"]
        imp("accounts.updateLoginKey", key, "s3cret", {"description": "new"})
        assert imp("accounts.getLoginKey", key)["data"]["attributes"]["description"] == "new"
        with pytest.raises(NodeCallError) as bad_pwd:
            imp("accounts.updateLoginKey", key, "wrong", {"description": "x"})
        assert bad_pwd.value.status == 403  # as over plain HTTP (test_api_core)

        product = imp("products.create", {"name": "Lamp"})["data"]
        imp("products.update", product["id"], {"name": "Lamp2", "description": "d"})
        got = imp("products.get", product["id"])["data"]["attributes"]
        assert (got["name"], got["description"]) == ("Lamp2", "d")
        dev_group = imp("deviceGroups.create", product["id"], "development_devicegroup",
                        {"name": "Dev"})["data"]
        with pytest.raises(NodeCallError) as not_empty:
            imp("products.delete", product["id"])
        assert not_empty.value.status == 409
        pre_prod = imp("deviceGroups.create", product["id"], "pre_production_devicegroup",
                       {"name": "PP"})["data"]
        hook = imp("webhooks.create", pre_prod["id"], pre_prod["type"], {
            "event": "blessing", "url": "http://127.0.0.1:9/a",
            "content_type": "application/json"})["data"]
        imp("webhooks.update", hook["id"], {"url": "http://127.0.0.1:9/b",
                                             "content_type": "application/x-www-form-urlencoded"})
        attrs = imp("webhooks.get", hook["id"])["data"]["attributes"]
        assert attrs["url"].endswith("/b") and attrs["content_type"].startswith("application/x")
        imp("webhooks.delete", hook["id"])
        with pytest.raises(NodeCallError) as gone:
            imp("webhooks.get", hook["id"])
        assert gone.value.status == 404

        assert api.cloud is not None
        dev = FakeDevice(api.cloud.broker_url)
        try:
            enrol = ApiClient(api.endpoint).login("owner", "s3cret").call(
                "POST", "/enrolment_tokens")["data"]["attributes"]
            api.run(dev.connect())
            api.run(dev.hello(enrol["plan_id"], enrol["token"]))
            imp("deviceGroups.addDevices", dev_group["id"], dev.device_id)
            for call, arg, reason in (("devices.restart", dev.device_id, "restart"),
                                      ("devices.conditionalRestart", dev.device_id,
                                       "conditional"),  # no code yet: a plain restart
                                      ("deviceGroups.restartDevices", dev_group["id"],
                                       "restart")):
                imp(call, arg)
                got = api.run(dev.expect(cl.Restart, 10))
                assert got.reason == reason, (call, got)
            with pytest.raises(NodeCallError) as assigned:
                imp("devices.delete", dev.device_id)
            assert assigned.value.status == 409  # unassign it first: a conflict, not bad input
            imp("deviceGroups.removeDevices", dev_group["id"], None, dev.device_id)
            imp("devices.delete", dev.device_id)
            assert imp("devices.list")["data"] == []
        finally:
            api.run(dev.close())

        imp("deviceGroups.delete", dev_group["id"])
        imp("deviceGroups.delete", pre_prod["id"])
        imp("products.delete", product["id"])
        assert imp("products.list")["data"] == []

        sid = imp("logStreams.open", "json")["data"]["id"]
        imp("logStreams.close", sid)
        with pytest.raises(NodeCallError):
            imp("logStreams.close", sid)



def test_an_expired_token_is_a_401_that_a_refresh_cures(api: ApiThread) -> None:
    """What impt does on a 401: refresh with the refresh token and retry (the library
    keeps the new access token). The book's clock is moved past the token's life."""
    import time

    from impfactory.cloud.api_auth import ACCESS_TTL

    with NodeClient(api.endpoint) as imp:
        tokens = imp("auth.login", "owner", "s3cret")
        assert imp("accounts.get", "me")["data"]["attributes"]["username"] == "owner"
        book = api.service.accounts
        api.call(setattr, book, "now", lambda: time.time() + ACCESS_TTL + 60)
        with pytest.raises(NodeCallError) as expired:
            imp("accounts.get", "me")
        assert expired.value.status == 401
        assert expired.value.body["errors"][0]["code"] == "InvalidToken"
        fresh = imp("auth.refreshAccessToken", tokens["refresh_token"])
        assert fresh["access_token"] != tokens["access_token"]
        assert imp("accounts.get", "me")["data"]["attributes"]["username"] == "owner"
