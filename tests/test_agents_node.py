"""Agents as Electric Imp's own client sees them (``imp-central-api`` under node).

``impt device info`` is ``devices.get``: the device's ``agent_id`` and ``agent_url``,
and ``agent_running``; the URL is served by the same server as the REST API and a
plain HTTP client (what curl is) reaches the agent through it. ``impt log get`` is
``devices.getLogs``: the agent's lines are there, typed ``agent.log``/``agent.error``.
The device is the cloud's scripted MQTT device on the session's broker.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "node"))
from impcentral_node import NodeClient, api_cloud, node_missing

from impfactory.cloud.api_thread import ApiThread
from impfactory.cloud.fakedevice import FakeDevice
from impfactory.cloud.scenario import make_factory
from impfactory.protocol import cloudlink as cl

pytestmark = [pytest.mark.node,
              pytest.mark.skipif(node_missing() is not None, reason=node_missing() or "")]

AGENT = """
server.log("agent of " + imp.configparams.deviceid);
http.onrequest(function(req, res) {
    if (req.path == "/fail") server.error("asked to fail");
    res.send(200, "hello from " + http.agenturl() + req.path);
});
"""


@pytest.fixture
def cloud(broker_url: str, tmp_path: Path) -> Iterator[ApiThread]:
    with api_cloud(tmp_path / "cloud.db", broker_url, "owner", "s3cret") as running:
        yield running


def test_impt_device_info_and_log_get_show_the_agent(cloud: ApiThread) -> None:
    assert cloud.cloud is not None
    svc = cloud.cloud.service
    account = cloud.call(lambda: cloud.service.accounts.find("owner"))
    setup = cloud.call(make_factory, svc, account.id, agent_code=AGENT)
    fixture = FakeDevice(cloud.cloud.broker_url)

    async def adopt() -> None:
        await fixture.connect()
        token = svc.create_development_token(account.id)
        await fixture.hello(token.plan_id, token.token)
        svc.assign_devices(setup.fixture_group.id, [fixture.device_id])
        await fixture.run(await fixture.expect(cl.CodeOffer))

    cloud.run(adopt())
    try:
        with NodeClient(cloud.endpoint) as imp:
            imp("auth.login", "owner", "s3cret")
            info = imp("devices.get", fixture.device_id)["data"]["attributes"]
            agent_id, url = info["agent_id"], info["agent_url"]
            assert len(agent_id) == 12 and info["agent_running"] is True
            base = cloud.endpoint.removesuffix("/v5")
            assert url == f"{base}/agent/{agent_id}"
            for path in ("/status", "/fail"):
                with urllib.request.urlopen(url + path, timeout=10) as answer:  # as curl
                    assert answer.status == 200
                    assert answer.read().decode() == f"hello from {url}{path}"
            logs = imp("devices.getLogs", fixture.device_id)["data"]
            seen = {(e["type"], e["msg"]) for e in logs}
            assert ("agent.log", f"agent of {fixture.device_id}") in seen
            assert ("agent.error", "asked to fail") in seen
    finally:
        cloud.run(fixture.close())
