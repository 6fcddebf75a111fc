"""Electric Imp's FactoryTools example runs unchanged on the emulated line, agents included.

The issue's "done when", as a user runs it: ``impfactory line run --fixtures 1
--duts 5 --firmware FactoryExampleAsync.device.nut --agent FactoryExample.agent.nut
--lib ../shared/imp-libraries``, with the example's placeholders filled (the
factory WiFi, and ``WEBHOOK_URL`` pointed at a loopback HTTP receiver this test
starts) and nothing else changed. Then:

* every DUT is blessed;
* the receiver gets each DUT's test result, posted by the DUT's agent;
* the fixture's agent receives each DUT's post at its agent URL (the DUT's agent
  gets its 200) and passes it to the fixture, whose virtual LCD shows
  ``Passed = true`` under the DUT's ID;
* the cloud's log holds the agents' lines (``agent.log``).

Electric Imp's libraries and examples are found beside the repository
(``../shared/imp-libraries``, or ``IMPFACTORY_SHARED``); under CI they must be there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from impfactory.loopthread import LoopThread

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMPFACTORY_SHARED", ROOT.parent / "shared")) / "imp-libraries"
EXAMPLES = SHARED / "FactoryTools" / "examples"
CLI = [sys.executable, "-m", "impfactory.tools.cli"]


def _libraries() -> Path:
    if not (EXAMPLES / "FactoryExample.agent.nut").is_file():
        message = f"Electric Imp's imp-libraries are not at {SHARED}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED


class Receiver(LoopThread):
    """The factory's web service for test results: an aiohttp server on a free port."""

    def __init__(self) -> None:
        super().__init__("results-receiver")
        self.posts: list[tuple[str, str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _take(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.posts.append((request.method, request.path, json.loads(body)))
        return web.Response(text="stored")

    def __enter__(self) -> Receiver:
        self.start_loop()

        async def boot() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._take)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", 0).start()
            self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

        self.run(boot())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            self.run(self._runner.cleanup())
        self.stop_loop()


def test_electric_imps_factory_example_blesses_every_dut_through_its_agents(
        tmp_path: Path) -> None:
    libraries = _libraries()
    device = (EXAMPLES / "FactoryExampleAsync.device.nut").read_text()
    agent = (EXAMPLES / "FactoryExample.agent.nut").read_text()
    with Receiver() as receiver:
        filled_device = (device.replace("<FACTORY NETWORK NAME>", "factory-wifi")
                         .replace("<FACTORY NETWORK PASSWORD>", "factory-password"))
        filled_agent = agent.replace("<YOUR WEBHOOK's BASEURL>", receiver.url)
        assert filled_device != device and filled_agent != agent  # the placeholders were there
        (tmp_path / "FactoryExampleAsync.device.nut").write_text(filled_device)
        (tmp_path / "FactoryExample.agent.nut").write_text(filled_agent)
        done = subprocess.run(
            [*CLI, "line", "run", "--fixtures", "1", "--duts", "5",
             "--firmware", "FactoryExampleAsync.device.nut",
             "--agent", "FactoryExample.agent.nut", "--lib", str(libraries),
             "--db", "cloud.db", "--report", "report", "--json"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(done.stdout)
        posts = list(receiver.posts)

    assert (summary["duts"], summary["blessed"]) == (5, 5)
    duts = json.loads((tmp_path / "report" / "duts.json").read_text())["duts"]
    ids = {d["dut_id"] for d in duts}
    assert len(ids) == 5 and all(d["blessed"] for d in duts)

    # the webhook receiver got each DUT's result from the DUT's agent
    results = [body for method, path, body in posts
               if (method, path) == ("POST", "/testresult.json") and "success" in body]
    assert sorted(r["deviceInfo"]["deviceId"] for r in results) == sorted(ids)
    assert all(r["success"] is True for r in results)

    # each DUT's agent posted to the fixture's agent URL and got its 200; the fixture
    # showed the DUT's result on its LCD
    for d in duts:
        to_fixture = [e for e in d["agent"] if e["kind"] == "http" and e["to_agent"]]
        assert [e["status"] for e in to_fixture] == [200], d["agent"]
        assert d["fixture_lcd"] == [d["dut_id"], "Passed = true"]

    # the fixture's agent took every post (its log, as impt log get shows it)
    fixture_id = duts[0]["fixture_id"]
    logs = subprocess.run([*CLI, "cloud", "logs", fixture_id, "--db", "cloud.db", "--json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert logs.returncode == 0, logs.stderr
    lines = [json.loads(line) for line in logs.stdout.splitlines()]
    agent_lines = [e["msg"] for e in lines if e["type"] == "agent.log"]
    assert "AGENT RUNNING" in agent_lines and "Its device is a BlinkUp fixture" in agent_lines
    assert agent_lines.count("Sending device results to display.") == 5
    device_lines = [e["msg"] for e in lines if e["type"] == "server.log"]
    assert device_lines.count("Device Blessing Complete") == 5
