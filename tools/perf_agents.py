"""``impfactory perf agents``: what an agent costs, and how fast it answers.

Starts a broker and the real cloud (agents on, their URLs on a loopback port),
deploys the example factory agent (``firmware/examples/factory_agent.nut``, with
FactoryTools) plus an echo handler to a fixture group, and brings ``--agents``
scripted devices into the group, each getting an agent. Then one device pings its
agent ``--messages`` times (``agent.send`` -> the agent's ``device.on`` ->
``device.send`` back, over the broker both ways) and a plain HTTP client requests
that agent's URL as many times.

Printed: agent start (VM, API, compile, top level; median and p95 ms), memory per
agent (``Vm.heap_bytes``: bytes its start and calls left allocated, median and
max), device -> agent -> device round trip and agent-URL request (p50/p95 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import aiohttp

from impfactory.cloud.broker import BrokerServer
from impfactory.cloud.fakedevice import FakeDevice
from impfactory.cloud.scenario import make_factory
from impfactory.cloud.server import Cloud
from impfactory.firmware.examples import factory_agent_source
from impfactory.protocol import cloudlink as cl

ECHO = """
device.on("ping", function(v) { device.send("pong", v); });
http.onrequest(function(req, res) { res.send(200, "pong"); });
"""


def register(sub: Any) -> None:
    parser = sub.add_parser("agents", help="agent start time, memory and round trips",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=50, help="agents to start (default 50)")
    parser.add_argument("--messages", type=int, default=200,
                        help="round trips to time, each way (default 200)")
    parser.add_argument("--broker", default="auto", help="auto | embedded | mqtt://HOST:PORT")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=_run)


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def measure(url: str, agents: int, messages: int) -> dict[str, Any]:
    async with Cloud(":memory:", url, agent_port=0) as cloud:
        svc = cloud.service
        assert cloud.agents is not None
        svc.ensure_owner("perf")
        setup = make_factory(svc, "perf", agent_code=factory_agent_source() + ECHO)
        devices = []
        try:
            for _ in range(max(1, agents)):
                dev = FakeDevice(url)
                devices.append(dev)
                await dev.connect()
                token = svc.create_development_token("perf")
                await dev.hello(token.plan_id, token.token)
                svc.assign_devices(setup.fixture_group.id, [dev.device_id])
                await dev.expect(cl.CodeOffer)
            while len([a for a in cloud.agents.agents() if a.running]) < len(devices):
                await asyncio.sleep(0.01)
            started = cloud.agents.agents()
            starts = [a.start_s for a in started]
            memory = [a.memory for a in started]
            dev = devices[0]
            trips = []
            for n in range(messages):
                began = time.perf_counter()
                await dev.agent_send("ping", n)
                await dev.expect(cl.DeviceMessage)
                trips.append(time.perf_counter() - began)
            agent_url = svc.agent_url(svc.get_device(dev.device_id).agent_id)
            assert agent_url is not None
            requests = []
            async with aiohttp.ClientSession() as http:
                for _ in range(messages):
                    began = time.perf_counter()
                    async with http.get(agent_url) as answer:
                        await answer.read()
                    requests.append(time.perf_counter() - began)
        finally:
            for dev in devices:
                await dev.close()
    return {
        "agents": len(starts),
        "start_ms_median": round(1000 * statistics.median(starts), 3),
        "start_ms_p95": _ms(starts, 0.95),
        "memory_kib_median": round(statistics.median(memory) / 1024, 1),
        "memory_kib_max": round(max(memory) / 1024, 1),
        "round_trip_ms_p50": _ms(trips, 0.5),
        "round_trip_ms_p95": _ms(trips, 0.95),
        "url_request_ms_p50": _ms(requests, 0.5),
        "url_request_ms_p95": _ms(requests, 0.95),
    }


def _run(args: argparse.Namespace) -> int:
    with BrokerServer(args.broker) as url:
        figures = asyncio.run(measure(url, args.agents, max(1, args.messages)))
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:20} {value}")
    return 0
