"""examples/smart-lamp runs as its README says, in CI: ``impfactory test`` and pytest.

The example is a user's project: its impUnit tests run under ``impfactory test`` in
its folder, and its pytest suite runs in a pytest process of its own (its
``pytest.ini``, the plugin found through the installed entry point), pointed at
this session's broker with ``--impfactory-broker``. Its Python imports nothing of
impfactory but the public plugin's names, and every firmware and agent file
compiles with its library folder.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from impfactory.cloud.brokersec import access_for
from impfactory.devicecode import library_dirs
from impfactory.squirrel import Vm
from impfactory.squirrel import require as sq_require
from impfactory.tools import pytest_plugin

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "smart-lamp"
CLI = [sys.executable, "-m", "impfactory.tools.cli"]
#: The impUnit test methods of tests/SmartLamp.device.test.nut that need the HTS221.
SENSOR_TESTS = {"testBoardTemperatureIsARoomTemperature", "testSensorIsTheRightPart",
                "testRunJudgesEveryMeasurementByItsLimits"}


def impfactory_test(*args: str) -> tuple[int, dict]:
    result = subprocess.run([*CLI, "test", "--json", *args], cwd=EXAMPLE, capture_output=True,
                            text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_its_impunit_tests_pass() -> None:
    code, out = impfactory_test()
    assert (code, out["passed"], out["tests"], out["failures"]) == (0, True, 8, 0)
    assert [s["file"] for s in out["sessions"]] == ["tests/SmartLamp.device.test.nut"]


def test_a_missing_sensor_fails_exactly_the_sensor_tests() -> None:
    code, out = impfactory_test("--fault", "sensor.missing")
    failed = {step["name"].split("::")[-1].rstrip("()") for s in out["sessions"]
              for step in s["steps"] if step["status"] == "failed"}
    assert code == 1 and failed == SENSOR_TESTS


def test_its_pytest_suite_passes_with_the_public_plugin(broker_url: str) -> None:
    # the session's broker is an outside one there: its clouds need the credentials
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--impfactory-broker", access_for(broker_url).cloud_url],
                            cwd=EXAMPLE,
                            capture_output=True, text=True, timeout=600)
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 20, tail
    assert "failed" not in result.stdout.splitlines()[-1] and "skipped" not in tail, tail


def test_the_readme_shows_what_is_run_here() -> None:
    readme = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert block is not None
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    assert lines == ["impfactory test", "impfactory test --fault sensor.missing",
                     "python -m pytest -q"]


def test_it_imports_nothing_of_impfactory_but_the_public_plugin() -> None:
    public = set(pytest_plugin.__all__)
    seen = 0
    for path in sorted(EXAMPLE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("impfactory") for a in node.names), path
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "impfactory"):
                assert node.module == "impfactory.tools.pytest_plugin", (path, node.module)
                names = {a.name for a in node.names}
                assert names <= public, (path, names - public)
                seen += 1
    assert seen >= 3


@pytest.mark.parametrize("path", sorted(EXAMPLE.glob("firmware/*.nut")),
                         ids=lambda p: p.name)
def test_every_firmware_and_agent_file_compiles(path: Path) -> None:
    environment = "agent" if ".agent." in path.name else "device"
    resolved = sq_require.resolve(path.read_text(encoding="utf-8"), path.name,
                                  library_dirs([EXAMPLE / "lib"]))
    vm = Vm(environment=environment)
    try:
        vm.compile(resolved.source, path.name, resolved.line_map)
    finally:
        vm.close()
