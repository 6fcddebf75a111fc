"""Agents run by the emulated impCloud: lifecycle, the agent API, agent URLs, outbound
HTTP, limits and the sandbox.

Each test starts a cloud (device link, agents, agent URLs on a loopback port of
their own) on the session's broker, with a factory whose deployments carry the
test's agent code, and drives devices with the scripted ``FakeDevice`` that knows
only the wire protocol. HTTP receivers are aiohttp servers on free loopback ports.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from impfactory.cloud.agents import AgentLimits
from impfactory.cloud.fakedevice import FakeDevice
from impfactory.cloud.scenario import FactorySetup, make_factory
from impfactory.cloud.server import Cloud
from impfactory.cloud.service import CloudService
from impfactory.protocol import cloudlink as cl

OWNER = "owner-1"


class World:
    def __init__(self, cloud: Cloud, setup: FactorySetup, url: str) -> None:
        self.cloud = cloud
        self.svc: CloudService = cloud.service
        self.f = setup
        self.url = url
        self.devices: list[FakeDevice] = []

    async def fixture(self) -> FakeDevice:
        """A fixture, adopted into the fixture group, running its deployment."""
        fx = FakeDevice(self.url)
        self.devices.append(fx)
        await fx.connect()
        token = self.svc.create_development_token(OWNER)
        await fx.hello(token.plan_id, token.token)
        self.svc.assign_devices(self.f.fixture_group.id, [fx.device_id])
        await fx.run(await fx.expect(cl.CodeOffer))
        await until(lambda: self.running(fx))
        return fx

    async def dut(self, fixture: FakeDevice) -> FakeDevice:
        """A DUT factory-BlinkUp'd by ``fixture``, running the DUT deployment."""
        token = await fixture.factory_token()
        dut = FakeDevice(self.url)
        self.devices.append(dut)
        await dut.connect()
        await dut.hello(token.plan_id, token.token)
        await dut.run(await dut.expect(cl.CodeOffer))
        await until(lambda: self.running(dut))
        return dut

    def running(self, dev: FakeDevice) -> bool:
        assert self.cloud.agents is not None
        return bool(self.cloud.agents.is_running(dev.device_id))

    def logs(self, dev: FakeDevice, kind: str | None = None) -> list[str]:
        return [e.msg for e in self.svc.device_logs(dev.device_id, size=1000)
                if kind is None or e.type == kind]

    def url_of(self, dev: FakeDevice) -> str:
        url = self.svc.agent_url(self.svc.get_device(dev.device_id).agent_id)
        assert url is not None
        return url


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def run(test: Callable[[World], Awaitable[None]], url: str, agent: str, *,
        limits: AgentLimits | None = None, **setup: Any) -> None:
    async def main() -> None:
        async with Cloud(":memory:", url, agent_port=0, agent_limits=limits) as cloud:
            cloud.service.ensure_owner(OWNER)
            world = World(cloud, make_factory(cloud.service, OWNER, agent_code=agent, **setup),
                          url)
            try:
                await asyncio.wait_for(test(world), 60)
            finally:
                for dev in world.devices:
                    await dev.close()

    asyncio.run(main())


@asynccontextmanager
async def receiver(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> AsyncIterator[str]:
    """An HTTP server on a free loopback port answering every path with ``handler``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def squirrel(text: str) -> str:
    return json.dumps(text)


# ---------------------------------------------------------------- messages


ECHO = """
server.log("agent up");
device.on("ping", function(v) { device.send("pong", v); });
device.on("burst", function(n) { for (local i = 0; i < n; i++) device.send("seq", i); });
"""


def test_messages_cross_both_ways_in_order(broker_url: str) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        assert w.logs(fx, "agent.log") == ["agent up"]
        for n in range(50):  # device -> agent -> device, each answer in the order sent
            await fx.agent_send("ping", {"n": n, "tags": ["a", None], "ok": True})
        got = [await fx.expect(cl.DeviceMessage) for _ in range(50)]
        assert [(m.name, m.value) for m in got] == [
            ("pong", {"n": n, "tags": ["a", None], "ok": True}) for n in range(50)]
        await fx.agent_send("burst", 100)
        seq = [await fx.expect(cl.DeviceMessage) for _ in range(100)]
        assert [m.value for m in seq] == list(range(100))

    run(test, broker_url, ECHO)


def test_no_handler_and_offline_are_what_impcloud_does(broker_url: str) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        await fx.agent_send("nobody", 1)  # no device.on for it: dropped, an agent error
        await until(lambda: 'ERROR: no handler for agent.send(): "nobody"' in w.logs(
            fx, "agent.error"))
        agent = w.cloud.agents.agent(fx.device_id)  # type: ignore[union-attr]
        assert agent is not None
        await fx.close()
        await until(lambda: not w.svc.get_device(fx.device_id).online)
        await until(lambda: not agent.device_online)
        assert w.running(fx)  # the agent outlives its device's connection
        # the device is offline: device.send drops the message (noted, never queued)
        assert not w.svc.send_to_device(fx.device_id, "pong", 1)

    run(test, broker_url, ECHO)


CONNECTION = """
device.onconnect(function() { server.log("connected " + device.isconnected()); });
device.ondisconnect(function(unused) { server.log("disconnected " + device.isconnected()); });
server.log("start " + device.isconnected());
"""


def test_onconnect_and_ondisconnect_follow_the_device(broker_url: str) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        await fx.close()
        await until(lambda: "disconnected false" in w.logs(fx))
        again = FakeDevice(w.url, fx.device_id, mac=fx.mac)
        w.devices.append(again)
        await again.connect()
        await again.hello()
        await until(lambda: "connected true" in w.logs(fx))
        assert w.logs(fx, "agent.log") == ["start true", "disconnected false", "connected true"]

    run(test, broker_url, CONNECTION)


# ---------------------------------------------------------------- lifecycle


COUNTER = """
local saved = server.load();
local starts = ("starts" in saved ? saved.starts : 0) + 1;
server.save({"starts": starts});
server.log("start " + starts + " of " + imp.configparams.deviceid + " at " + http.agenturl());
device.on("big", function(n) { server.save({"blob": array(n, "x")}); });
"""


def test_agents_start_on_assignment_restart_on_restarts_and_keep_their_table(
        broker_url: str) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        url = w.url_of(fx)
        assert w.logs(fx, "agent.log") == [f"start 1 of {fx.device_id} at {url}"]
        w.svc.restart_device(fx.device_id)  # the device is told to restart; so is its agent
        await until(lambda: len(w.logs(fx, "agent.log")) == 2)
        w.svc.restart_group(w.f.fixture_group.id)
        await until(lambda: len(w.logs(fx, "agent.log")) == 3)
        assert w.logs(fx, "agent.log")[-1].startswith("start 3 of ")  # server.save kept
        # a new deployment reaches the agent with its device
        w.svc.create_deployment(w.f.fixture_group.id, "// v2", 'server.log("v2");')
        await until(lambda: len(w.logs(fx, "agent.log")) == 3)  # not before the device
        w.svc.restart_device(fx.device_id)
        await fx.hello()  # the restarted device comes back and is offered v2
        await fx.expect(cl.Assignment)
        await fx.run(await fx.expect(cl.CodeOffer))
        await until(lambda: w.logs(fx, "agent.log")[-1] == "v2")
        # unassigned: no agent
        w.svc.unassign_devices([fx.device_id])
        await until(lambda: not w.running(fx))

    run(test, broker_url, COUNTER)


def test_server_save_refuses_a_table_over_64_kb(broker_url: str) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        await fx.agent_send("big", 100)
        await fx.agent_send("big", 40_000)  # 40,000 x "x" is 160 KB of JSON
        await until(lambda: any("over the 64 KB limit" in m for m in w.logs(fx, "agent.error")))
        agent_id = w.svc.get_device(fx.device_id).agent_id
        assert agent_id is not None
        assert json.loads(w.svc.agent_load(agent_id) or "{}") == {"blob": ["x"] * 100}

    run(test, broker_url, COUNTER)


FACTORY = """
#require "FactoryTools.lib.nut:2.2.0"
server.log(http.jsonencode({
    "env": imp.environment() == ENVIRONMENT_AGENT,
    "fixture": FactoryTools.isFactoryFixture(),
    "dut": FactoryTools.isDeviceUnderTest(),
    "url": FactoryTools.getFactoryFixtureURL(),
    "params": imp.configparams}));
"""


def test_a_duts_agent_knows_its_fixtures_agent_url(broker_url: str) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        dut = await w.dut(fx)
        seen_fx = json.loads(w.logs(fx, "agent.log")[0])
        seen_dut = json.loads(w.logs(dut, "agent.log")[0])
        fx_url = w.url_of(fx)
        assert seen_fx == {"env": True, "fixture": True, "dut": False, "url": fx_url,
                           "params": seen_fx["params"]}
        assert seen_fx["params"]["deviceid"] == fx.device_id
        assert "factory_fixture_url" not in seen_fx["params"]
        assert seen_dut["dut"] and not seen_dut["fixture"] and seen_dut["url"] == fx_url
        assert seen_dut["params"]["factory_fixture_url"] == fx_url
        assert seen_dut["params"]["deviceid"] == dut.device_id
        # blessed: the DUT loads the application, which has no agent code here
        w.svc.create_deployment(w.f.production_group.id, 'server.log("app");', "")
        assert (await dut.bless(True)).blessed
        assert w.running(dut)  # until the device runs the application
        await dut.expect(cl.Assignment)
        await dut.run(await dut.expect(cl.CodeOffer))
        await until(lambda: not w.running(dut))

    run(test, broker_url, FACTORY)


# ---------------------------------------------------------------- agent URLs


SERVER = """
http.onrequest(function(req, res) {
    if (req.path == "/boom") throw "boom";
    if (req.path == "/never") return;
    res.header("X-Agent", "yes");
    res.send(201, http.jsonencode({"method": req.method, "path": req.path, "query": req.query,
                                   "type": "content-type" in req.headers
                                           ? req.headers["content-type"] : null,
                                   "body": req.body}));
});
"""


def test_agent_urls_are_served_over_real_http(broker_url: str) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        url = w.url_of(fx)
        assert url.startswith("http://127.0.0.1:") and "/agent/" in url
        async with aiohttp.ClientSession() as http:
            async with http.put(url + "/led?state=on&level=5", data=b"hello",
                                headers={"Content-Type": "text/plain"}) as r:
                assert r.status == 201 and r.headers["X-Agent"] == "yes"
                assert await r.json(content_type=None) == {
                    "method": "PUT", "path": "/led", "query": {"state": "on", "level": "5"},
                    "type": "text/plain", "body": "hello"}
            async with http.get(url) as r:
                assert (r.status, json.loads(await r.text())["path"]) == (201, "")
            async with http.get(url + "/boom") as r:
                assert r.status == 500
            async with http.get(url.rsplit("/", 1)[0] + "/000000000000") as r:
                assert r.status == 404
        await until(lambda: any("boom" in m for m in w.logs(fx, "agent.error")))

    run(test, broker_url, SERVER)


def test_an_agent_that_does_not_answer_is_a_504_and_one_without_a_handler_a_404(
        broker_url: str) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        async with aiohttp.ClientSession() as http, http.get(w.url_of(fx) + "/never") as r:
            assert r.status == 504

    run(test, broker_url, SERVER, limits=AgentLimits(response_timeout_s=0.3))

    async def no_handler(w: World) -> None:
        fx = await w.fixture()
        async with aiohttp.ClientSession() as http, http.get(w.url_of(fx)) as r:
            assert r.status == 404

    run(no_handler, broker_url, 'server.log("no handler");')


# ---------------------------------------------------------------- outbound HTTP


POSTER = """
device.on("post", function(job) {
    local req = http.post(job.url, {"Content-Type": "application/json", "X-N": job.n},
                          http.jsonencode(job));
    local done = function(resp) {
        device.send("answer", {"n": job.n, "status": resp.statuscode, "body": resp.body,
                               "header": "x-reply" in resp.headers ? resp.headers["x-reply"]
                                                                    : null});
    };
    if ("timeout" in job) req.sendasync(done, null, job.timeout); else req.sendasync(done);
});
device.on("sync", function(url) {
    local resp = http.get(url).sendsync();
    device.send("synced", {"status": resp.statuscode, "body": resp.body});
});
device.on("tick", function(v) { device.send("tock", v); });
http.onrequest(function(req, res) { res.send(200, "agent " + req.body); });
"""


def test_outbound_requests_reach_a_real_receiver_and_failures_are_below_100(
        broker_url: str) -> None:
    got: list[tuple[str, dict[str, Any]]] = []
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        got.append((request.headers["X-N"], body))
        if request.path == "/slow":
            await release.wait()  # past the request's 0.3 s deadline
        return web.Response(status=202, text="thanks", headers={"X-Reply": "r"})

    async def test(w: World) -> None:
        fx = await w.fixture()
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
        try:
            async with receiver(handler) as base:
                jobs = [{"n": 0, "url": base + "/results"},
                        {"n": 1, "url": f"http://127.0.0.1:{closed.getsockname()[1]}/x"},
                        {"n": 2, "url": base + "/slow", "timeout": 0.3},
                        {"n": 3, "url": "http://[::1/x"},
                        {"n": 4, "url": "ftp://127.0.0.1/x"},
                        {"n": 5, "url": "file:///etc/passwd"}]
                for job in jobs:
                    await fx.agent_send("post", job)
                answers = {}
                while len(answers) < len(jobs):
                    m = await fx.expect(cl.DeviceMessage)
                    answers[m.value["n"]] = m.value  # type: ignore[index]
                release.set()
        finally:
            closed.close()
        assert answers[0] == {"n": 0, "status": 202, "body": "thanks", "header": "r"}
        assert got[0] == ("0", jobs[0])
        assert [answers[n]["status"] for n in range(1, 6)] == [7, 28, 3, 1, 1]
        assert all(answers[n]["body"] for n in range(1, 6))  # the reason, in the body
        assert "Timeout" in answers[2]["body"]

    run(test, broker_url, POSTER)


def test_sendsync_waits_without_blocking_the_cloud(broker_url: str) -> None:
    """A sendsync to another agent of the same cloud is answered (the loop keeps
    serving while the caller waits), and another agent keeps working meanwhile."""

    async def test(w: World) -> None:
        fx = await w.fixture()
        dut = await w.dut(fx)
        async with receiver(slow) as base:
            await dut.agent_send("sync", base + "/slow")  # the DUT's agent waits ~0.5 s
            await asyncio.sleep(0.05)
            began = time.perf_counter()
            await fx.agent_send("tick", 1)  # the fixture's agent answers meanwhile
            assert (await fx.expect(cl.DeviceMessage)).name == "tock"
            assert time.perf_counter() - began < 0.4
            synced = await dut.expect(cl.DeviceMessage)
            assert synced.value == {"status": 200, "body": "slow"}
        await dut.agent_send("sync", w.url_of(fx) + "/x")
        synced = await dut.expect(cl.DeviceMessage)
        assert synced.value == {"status": 200, "body": "agent "}

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(text="slow")

    run(test, broker_url, POSTER)


def test_a_restart_while_a_call_waits_in_sendsync_ends_that_call_quietly(
        broker_url: str) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        reached, release = asyncio.Event(), asyncio.Event()

        async def never(request: web.Request) -> web.Response:
            reached.set()
            await release.wait()
            return web.Response(text="late")

        async with receiver(never) as base:
            await fx.agent_send("sync", base + "/never")
            await asyncio.wait_for(reached.wait(), 10)
            old = w.cloud.agents.agent(fx.device_id)  # type: ignore[union-attr]
            w.svc.restart_device(fx.device_id)
            await until(lambda: w.cloud.agents.agent(fx.device_id) not in (None, old))  # type: ignore[union-attr]
            assert old is not None and old.vm is None  # stopped, its VM freed
            await fx.agent_send("tick", 2)  # the new agent answers at once
            assert (await fx.expect(cl.DeviceMessage)).value == 2
            release.set()
        assert w.logs(fx, "agent.error") == []  # a restart is no error

    run(test, broker_url, POSTER)


# ---------------------------------------------------------------- limits and the sandbox


HOG = """
device.on("spin", function(v) { while (true) {} });
device.on("grow", function(v) {
    local a = [];
    while (true) a.append(format("%d-padding", a.len()));
});
device.on("ping", function(v) { device.send("pong", v); });
"""


def test_cpu_and_memory_limits_stop_only_the_agent_that_passes_them(broker_url: str) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        dut = await w.dut(fx)
        began = time.perf_counter()
        await fx.agent_send("spin", 1)
        await until(lambda: not w.running(fx))
        assert time.perf_counter() - began < 5
        errors = w.logs(fx, "agent.error")
        assert any("time limit of 0.2 s" in m for m in errors), errors
        assert any("in unknown agent.nut:2" in m or "agent.nut:2" in m for m in errors), errors
        await dut.agent_send("grow", 1)
        await until(lambda: not w.running(dut))
        errors = w.logs(dut, "agent.error")
        assert any("over its limit of 1024 KiB" in m for m in errors), errors
        # the others go on; a restart brings a stopped agent back
        w.svc.restart_device(fx.device_id)
        await until(lambda: w.running(fx))
        await fx.agent_send("ping", 7)
        assert (await fx.expect(cl.DeviceMessage)).value == 7

    run(test, broker_url, HOG, limits=AgentLimits(callback_cpu_s=0.2, memory=1 << 20))


SANDBOX = """
local names = ["system", "file", "dofile", "loadfile", "getenv", "compilestring", "newthread",
               "collectgarbage", "setroottable", "getstackinfos", "remove", "rename"];
local present = [];
foreach (name in names) if (name in getroottable()) present.append(name);
server.log("present: " + http.jsonencode(present));
try { device.info(); } catch (e) { server.log("caught: " + e); }
http.get("file:///etc/passwd").sendasync(function(r) {
    server.log("file: " + r.statuscode + " " + (r.body.find("root:") == null));
});
"""


def test_the_agent_cannot_reach_the_machine(broker_url: str) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        await until(lambda: len(w.logs(fx, "agent.log")) == 3)
        assert w.logs(fx, "agent.log") == [
            "present: []", "caught: device.info is not modelled by the impfactory emulator",
            "file: 1 true"]

    run(test, broker_url, SANDBOX)


TOOLS = """
local t = http.jsondecode("{\\"a\\": [1, 2.5, \\"x\\", null, true], \\"big\\": 12345678901}");
server.log(http.jsonencode(t));
server.log(http.urlencode({"q": "a b&c"}) + " " + http.jsonencode(http.urldecode("x=1&y=%20z")));
local raw = http.base64decode("aGVsbG8=");
server.log(http.base64encode("hello") + " " + (typeof raw) + " " + raw.len() + " " + raw[0]);
server.log((typeof time()) + " " + date().year + " " + (clock() >= 0));
imp.wakeup(0.05, function() { server.log("woke"); });
local h = imp.wakeup(0.01, function() { server.log("never"); });
imp.cancelwakeup(h);
"""


def test_encoders_timers_and_time(broker_url: str) -> None:
    async def test(w: World) -> None:
        fx = await w.fixture()
        await until(lambda: "woke" in w.logs(fx, "agent.log"))
        logs = w.logs(fx, "agent.log")
        decoded = json.loads(logs[0])  # a number past 32 bits is a (32-bit) float
        assert decoded["a"] == [1, 2.5, "x", None, True]
        assert abs(decoded["big"] - 12345678901) < 1e3 and isinstance(decoded["big"], float)
        assert logs[1].startswith("q=a%20b%26c ")
        assert json.loads(logs[1].split(" ", 1)[1]) == {"x": "1", "y": " z"}
        assert logs[2] == "aGVsbG8= blob 5 104"
        assert logs[3].startswith("integer 20") and logs[3].endswith(" true")
        assert "never" not in logs

    run(test, broker_url, TOOLS)


def test_perf_agents_prints_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    from impfactory.tools.cli import main

    assert main(["perf", "agents", "--agents", "2", "--messages", "3", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["agents"] == 2
    assert figures["start_ms_median"] > 0 and figures["memory_kib_median"] > 0
    assert 0 < figures["round_trip_ms_p50"] <= figures["round_trip_ms_p95"]
