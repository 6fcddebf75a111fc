"""Electric Imp's HTS221 library passes its own impUnit tests under ``impfactory test``,
and a broken sensor makes exactly the tests that should notice it fail.

The tests are the library's, unchanged (``tests/imptest_data/HTS221``, checked
against the shared copy when it is next to this checkout), with the
``.impt.test`` the library ships: ``deviceFile`` HTS221.device.lib.nut and impt's
default test-file patterns. They run on the emulated impExplorer Kit (the board
the tests were written for): its HTS221 on i2c89 at 0xBE, its DRDY line on pin1.
Faults are injected into the sensor model from outside (``--fault``, a board
file), never into the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from impfactory.tools.cli import main

DATA = Path(__file__).resolve().parent / "imptest_data"
PROJECT = DATA / "HTS221"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "imp-libraries" / "HTS221"
TESTS = ["testAsyncRead", "testInterrupt", "testSensorDevID", "testSetGetMode",
         "testSetGetSupportedResolution", "testSetGetUnsupportedResolution", "testSyncRead"]


def run_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
             *args: str, home: Path = PROJECT) -> tuple[int, dict]:  # type: ignore[type-arg]
    monkeypatch.chdir(home)
    code = main(["test", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def outcome(report: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {step["method"]: step["status"] for s in report["sessions"] for step in s["steps"]}


def test_the_vendored_project_is_electric_imps_own() -> None:
    if not SHARED.is_dir():
        pytest.skip("the shared imp-libraries are not next to this checkout")
    for name in (".impt.test", "HTS221.device.lib.nut", "tests/Basic.device.test.nut"):
        assert (PROJECT / name).read_bytes() == (SHARED / name).read_bytes(), name


@pytest.mark.parametrize("home", [PROJECT, SHARED], ids=["vendored", "shared"])
def test_the_librarys_own_tests_pass_unchanged(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch,
                                               home: Path) -> None:
    if not home.is_dir():
        pytest.skip("the shared imp-libraries are not next to this checkout")
    monkeypatch.chdir(home)
    assert main(["test"]) == 0
    out = capsys.readouterr().out
    assert "[info] Started at " in out
    assert "Using device source file: HTS221.device.lib.nut" in out
    for name in ["setUp", *TESTS, "tearDown"]:
        assert f"test] BasicTestCase::{name}()\n" in out
    assert "test] Success: Sensor initialized\n" in out
    assert "test] Success: Data ready interrupt triggered as expected\n" in out  # pin1 rose
    assert 'test] "Current Humidity: 40.00 %, Current Temperature: 22.50 °C"\n' in out
    assert "test] Tests: 7, Assertions: 16, Failures: 0\n" in out
    assert 'test] Session "Basic.device.test" succeeded\n' in out
    assert out.rstrip().endswith("info] Testing succeeded")
    assert "Failure:" not in out and "Device Runtime Error" not in out


def test_every_test_passes_and_counts_its_assertions(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    code, report = run_json(capsys, monkeypatch)
    assert code == 0 and report["passed"]
    assert outcome(report) == {name: "passed" for name in ["setUp", *TESTS, "tearDown"]}
    steps = {s["method"]: s for s in report["sessions"][0]["steps"]}
    assert steps["testSyncRead"]["device_s"] == pytest.approx(0.5)  # imp.sleep(0.5) in read()
    assert steps["testInterrupt"]["device_s"] == pytest.approx(1.0)  # the first 1 Hz sample
    assert steps["testSetGetSupportedResolution"]["assertions"] == 4


FAULTS = [
    # a wrong part fitted: only the WHO_AM_I test can tell
    (["--fault", "sensor.wrong_id=0x00"], {"testSensorDevID": "Device id doesn't match datasheet"}),
    # an unprogrammed part: the readings are nonsense, both read tests say so
    (["--fault", "sensor.blank_calibration"],
     {"testSyncRead": "Temperature reading not within acceptable bounds",
      "testAsyncRead": "Test timed out after 30s"}),
    # a part in an oven: the same two
    (["--fault", "sensor.out_of_range=85"],
     {"testSyncRead": "Temperature reading not within acceptable bounds",
      "testAsyncRead": "Test timed out after 30s"}),
    # a unit whose calibration memory says 0 degC at both points
    (["--board", str(DATA / "boards" / "hts221-uncalibrated.json")],
     {"testSyncRead": "Temperature reading not within acceptable bounds",
      "testAsyncRead": "Test timed out after 30s"}),
]


@pytest.mark.parametrize(("args", "failing"), FAULTS, ids=["wrong_id", "blank_calibration",
                                                            "out_of_range", "uncalibrated"])
def test_a_broken_sensor_fails_the_right_tests(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch,
                                               args: list[str], failing: dict[str, str]) -> None:
    code, report = run_json(capsys, monkeypatch, *args)
    assert code == 1 and not report["passed"]
    steps = {s["method"]: s for s in report["sessions"][0]["steps"]}
    assert {m for m, s in steps.items() if s["status"] == "failed"} == set(failing)
    for method, message in failing.items():
        assert steps[method]["message"] == message
    assert report["failures"] == len(failing)


def test_a_failed_assertion_names_its_line(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(PROJECT)
    assert main(["test", "--fault", "sensor.wrong_id=0"]) == 1
    out = capsys.readouterr().out
    lines = (PROJECT / "tests" / "Basic.device.test.nut").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "Device id doesn't match" in text)
    assert "test] Failure: Device id doesn't match datasheet\n" in out
    assert f"info] at tests/Basic.device.test.nut:{line}\n" in out  # in the summary
    assert "test] Tests: 7, Assertions: 16, Failures: 1\n" in out
    assert out.rstrip().endswith("info] Testing failed")


def test_an_assertion_in_a_callback_is_a_device_error_then_a_timeout(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a real imp: the throw escapes the sensor's callback, the promise never settles."""
    monkeypatch.chdir(PROJECT)
    assert main(["test", "--fault", "sensor.out_of_range", "--tests", "::testAsyncRead",
                 "--timeout", "5"]) == 1
    out = capsys.readouterr().out
    assert "test] Device Runtime Error: Temperature not within acceptable bounds\n" in out
    assert "test] Device Runtime Error:   from unknown tests/Basic.device.test.nut:71\n" in out
    assert "test] Failure: Test timed out after 5s\n" in out


def test_a_missing_sensor_fails_setup_and_every_test(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    code, report = run_json(capsys, monkeypatch, "--fault", "sensor.missing")
    assert code == 1
    steps = {s["method"]: s for s in report["sessions"][0]["steps"]}
    assert all(s["status"] == "failed" for s in steps.values())
    assert steps["setUp"]["message"] == "I2C write error: -2"  # the imp001's NACK
    assert steps["setUp"]["location"]["file"] == "HTS221.device.lib.nut"
