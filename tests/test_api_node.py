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
