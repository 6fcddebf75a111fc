"""Agent test files, partner files and agent files under ``impfactory test``.

impt runs a ``*.agent.test.nut`` in the device's agent and its partner
``*.device.nut`` on the device; a device test's ``agentFile`` or partner runs in
the agent. The agent side here is the stand-in (``imptest.agent_target``) until
the cloud's agent runtime is handed to the session; the device side is the
emulated imp. Messages cross both ways on the session's clock.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from impfactory.firmware.imptest.agent_target import StandInAgent, agent_id
from impfactory.firmware.imptest.build import build
from impfactory.firmware.imptest.config import config_from_dict, find_test_files
from impfactory.firmware.imptest.session import Session
from impfactory.tools.cli import main


def project(root: Path, files: dict[str, str], config: dict[str, Any]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    (root / ".impt.test").write_text(json.dumps(config))
    return root


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Path,
        *args: str) -> tuple[int, str]:
    monkeypatch.chdir(home)
    code = main(["test", *args])
    return code, capsys.readouterr().out


AGENT_TEST = """
class Conversation extends ImpTestCase {
    _heard = null;

    function setUp() {
        device.on("data", function(data) { _heard = data; }.bindenv(this));
    }

    function testTheDeviceSpeaksFirst() {
        local wait = null;
        return Promise(function(resolve, reject) {
            wait = function() {
                if (_heard == null) {
                    imp.wakeup(1.0, wait);
                } else if (_heard == "Hello from the device") {
                    resolve(_heard);
                } else {
                    reject("heard " + _heard);
                }
            }.bindenv(this);
            imp.wakeup(1.0, wait);
        }.bindenv(this));
    }

    function testARoundTrip() {
        return Promise(function(resolve, reject) {
            device.on("pong", function(n) { resolve("pong " + n); });
            device.send("ping", {"n": 41});
        });
    }

    function testTheAgentApi() {
        this.assertEqual(ENVIRONMENT_AGENT, imp.environment());
        this.assertTrue(device.isconnected());
        this.assertTrue(http.agenturl().find("https://agent.electricimp.com/") == 0);
        local value = {"a": [1, 2.5, "x"]};
        this.assertDeepEqual(value, http.jsondecode(http.jsonencode(value)));
        server.save({"k": 1});
        this.assertEqual(1, server.load().k);
        return this.assertThrowsError(function() { http.get("http://example.com"); }, this);
    }
}
"""

PARTNER_DEVICE = """
imp.wakeup(5.0, function() {
    agent.send("data", "Hello from the device");
});
agent.on("ping", function(msg) { agent.send("pong", msg.n + 1); });
"""


def test_an_agent_test_talks_to_its_partner_device(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {"tests/Talk.agent.test.nut": AGENT_TEST,
                              "tests/Talk.device.nut": PARTNER_DEVICE}, {})
    code, out = run(capsys, monkeypatch, home)
    assert code == 0, out
    assert "info] Found 1 test file(s):\n\ttests/Talk.agent.test.nut (tests/Talk.device.nut)\n" \
        in out
    assert 'info] Using agent test file "tests/Talk.agent.test.nut"' in out
    assert "Test session is agent-only" not in out
    assert "test] Success: Hello from the device\n" in out
    assert "test] Success: pong 42\n" in out
    assert "test] Success: http.get is not modelled by impfactory test's stand-in agent\n" in out
    assert "test] Tests: 3, Assertions: 6, Failures: 0\n" in out


def test_a_device_test_with_an_agent_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {
        "Echo.agent.nut": 'device.on("echo", function(v) { device.send("echoed", v * 2); });',
        "tests/Echo.device.test.nut": """
            class Echo extends ImpTestCase {
                function testEcho() {
                    return Promise(function(resolve, reject) {
                        agent.on("echoed", resolve);
                        agent.send("echo", 21);
                    });
                }
            }"""}, {"agentFile": "Echo.agent.nut"})
    code, out = run(capsys, monkeypatch, home)
    assert code == 0, out
    assert "info] Using agent source file: Echo.agent.nut" in out
    assert "test] Success: 42\n" in out


def test_an_agent_only_session_and_an_agent_runtime_error(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {"lib.agent.nut": "function double(x) { return 2 * x; }",
                              "Lib.agent.test.nut": """
        class Lib extends ImpTestCase {
            function testDouble() { this.assertEqual(4, double(2)); }
            function testTimer() {
                imp.wakeup(0, function() { local t = {}; t.nope; });
            }
            function testNoHardware() { return "hardware" in ::getroottable(); }
        }"""}, {"agentFile": "lib.agent.nut"})
    code, out = run(capsys, monkeypatch, home)
    assert code == 0, out  # a runtime error alone fails nothing (impt's rule)
    assert "info] Test session is agent-only\n" in out
    assert "test] Agent Runtime Error: the index 'nope' does not exist\n" in out
    assert "test] Success: false\n" in out  # an agent has no hardware


def test_the_agent_side_is_pluggable(tmp_path: Path) -> None:
    """The cloud's agent runtime will come in through ``agent_factory``."""
    home = project(tmp_path, {"A.agent.test.nut": """
        class A extends ImpTestCase { function testWho() { return imp.environment(); } }"""},
        {})
    config = config_from_dict({}, home)
    made: list[str] = []

    class Recorded(StandInAgent):
        def start(self, parts: Any, natives: Any) -> bool:
            made.append(self.agent_id)
            return super().start(parts, natives)

    test = find_test_files(config)[0]
    result = Session(build(config, test),
                     agent_factory=lambda c, d, libs, log: Recorded(c, d, libs, log)).run()
    assert result.passed and result.sides == ["agent"]
    assert made == [agent_id(result.device_id or "")]
    assert result.steps[0].message == "2"  # ENVIRONMENT_AGENT, shown as JSON


def test_a_message_that_is_not_data_is_refused(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {"S.agent.test.nut": """
        class S extends ImpTestCase {
            function testSendAFunction() { device.send("f", function() {}); }
        }"""}, {})
    code, out = run(capsys, monkeypatch, home)
    assert code == 1
    assert "cannot be sent as data" in out
