"""Electric Imp's own factory example runs unchanged on the emulated line.

``FactoryExampleAsync.device.nut`` (Electric Imp's FactoryTools example, MIT, in
``../shared/imp-libraries`` beside this checkout) with only its WiFi placeholders
filled: the fixture (an imp005 on the Factory BlinkUp Box) shows its banner on
its CFAx33KL LCD and flashes BlinkUp from pinM on a button press; each DUT (an
imp001 Explorer Kit) reads its HTS221, blesses and clears its configuration. The
agent half of the example is the agents' business (issue 11).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from impfactory.clock import VirtualClock
from impfactory.firmware import examples
from impfactory.firmware.device import Device
from impfactory.firmware.identity import DeviceIdentity
from impfactory.firmware.wifi import WifiEnvironment
from impfactory.tools import cli

SHARED = Path(__file__).resolve().parents[2] / "shared" / "imp-libraries"
EXAMPLE = SHARED / "FactoryTools" / "examples" / "FactoryExampleAsync.device.nut"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The example with the line's WiFi in place of its placeholders (nothing else changed)."""
    if not EXAMPLE.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"Electric Imp's example is missing: {EXAMPLE}")
        pytest.skip("the shared imp-libraries are not next to this checkout")
    text = EXAMPLE.read_text(encoding="utf-8")
    filled = text.replace("<FACTORY NETWORK NAME>", "factory-wifi").replace(
        "<FACTORY NETWORK PASSWORD>", "factory-password")
    assert filled.count("factory-wifi") == 1 and filled.count("factory-password") == 1
    out = tmp_path / EXAMPLE.name
    out.write_text(filled, encoding="utf-8")
    return out


def test_the_fixture_shows_its_banner_and_lights_its_button_led(example: Path) -> None:
    clock = VirtualClock()
    fixture = Device(DeviceIdentity.from_serial(3), clock, WifiEnvironment([]),
                     "mqtt://127.0.0.1:1", hardware=examples.fixture_board())
    fixture.config.lib_dirs = (str(SHARED),)
    fixture.configparams = {"factoryfirmware": True, "factory_imp": fixture.mac}
    source = example.read_text()
    assert fixture.runtime.start(source, fixture.engine_for(source))
    clock.advance_sync(1.0)
    assert fixture.logs[:3] == ["DEVICE STARTED...", "This device is running factory firmware",
                                "This device is a BlinkUp fixture"]
    board = fixture.hardware_board
    assert board.model("lcd").lines == ("Electric Imp    ", "Factory Example ")
    board.model("green_btn").press()  # the example lights its green LED while held
    assert board.pin("pinE").level == 1.0


def test_the_example_blesses_every_dut_on_the_line(example: Path, broker_url: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["line", "run", "--fixtures", "1", "--duts", "5", "--firmware",
                       str(example), "--lib", str(SHARED), "--broker", broker_url, "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert status == 0
    assert (summary["duts"], summary["blessed"], summary["failures"]) == (5, 5, {})


def test_device_life_runs_the_example_and_leaves_the_library_path_alone(
        example: Path, broker_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = os.environ.get("IMPFACTORY_LIB_PATH")
    status = cli.main(["device", "life", "--json", "--impos", "", "--broker", broker_url,
                       "--firmware", str(example), "--lib", str(SHARED)])
    out = json.loads(capsys.readouterr().out)
    assert status == 0 and out["blessed"]
    assert f"Blessing PASSED for device {out['device_id']}" in out["logs"]
    assert os.environ.get("IMPFACTORY_LIB_PATH") == before


def test_a_lib_that_is_not_a_folder_is_bad_input(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert cli.main(["line", "run", "--lib", str(missing), "--duts", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--lib {missing}: not a folder" in err
