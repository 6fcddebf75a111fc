"""The public pytest plugin (docs/pytest-plugin.md), used as a user's suite would use it.

The assertion helpers are checked on every kind of source they take, passing and
failing; the options are checked from outside, in a pytest run of their own; the
``imp_product`` fixture drives the example firmware through the factory: a fixture,
a blessed DUT and a failed one, Go Live with a blessing webhook, production groups
and their targets, the load-code setting, a polite deployment, a whole line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from impfactory.firmware import examples
from impfactory.fixture.line import LineResult
from impfactory.fixture.record import DutRecord, LedEvent, Measurement
from impfactory.tools import pytest_plugin
from impfactory.tools.pytest_plugin import (
    LED_STATES,
    Product,
    WaitTimeout,
    WebhookReceiver,
    assert_led_sequence,
    assert_measurement,
    led_states,
    measurements,
)

FIRMWARE = Path(examples.__file__).parent
RESULT = {"device_id": "d", "passed": False, "measurements": [
    {"name": "supply_voltage", "value": 3.3, "low": 3.0, "high": 3.6, "unit": "V"},
    {"name": "temperature", "value": 60.0, "low": 10.0, "high": 45.0, "unit": "degC"},
    {"name": "sensor_id", "value": None, "low": 188, "high": 188, "unit": ""}]}


# -- the helpers -------------------------------------------------------------------------
def test_every_public_name_is_importable_and_documented() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "pytest-plugin.md").read_text(encoding="utf-8")
    for name in pytest_plugin.__all__:
        assert getattr(pytest_plugin, name) is not None
        assert f"`{name}" in doc, f"{name} is public but docs/pytest-plugin.md does not say so"
    with pytest.raises(AttributeError):
        pytest_plugin.no_such_name  # noqa: B018


def test_every_fixture_the_doc_lists_exists_and_says_what_it_is(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[1] / "docs" / "pytest-plugin.md").read_text(encoding="utf-8")
    table = doc.split("## Fixtures", 1)[1].split("###", 1)[0]
    listed = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \|", table, re.M))
    names = {n for pair in listed for n in pair if n}
    shown = subprocess.run([sys.executable, "-m", "pytest", "--fixtures", "-q", "-p",
                            "no:cacheprovider"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120).stdout
    sections = re.split(r"^-+ fixtures defined from (\S+) -+$", shown, flags=re.M)
    ours = "".join(body for module, body in zip(sections[1::2], sections[2::2], strict=True)
                   if module.startswith("impfactory."))
    defined = set(re.findall(r"^(\w+)(?: \[session scope\])? -- ", ours, re.M))
    assert names == defined
    assert "no docstring available" not in ours


def test_led_sequences_pass_in_order_with_others_between() -> None:
    shown = ["off", "waiting_blinkup", "blinkup_ok", "blinkup_ok", "connecting", "online",
             "blessed"]
    assert led_states(shown) == ["off", "waiting_blinkup", "blinkup_ok", "connecting",
                                 "online", "blessed"]
    assert_led_sequence(shown, ["blinkup_ok", "online", "blessed"])
    with pytest.raises(AssertionError, match="never showed 'blinkup_ok' after 'online'"):
        assert_led_sequence(shown, ["online", "blinkup_ok"])
    with pytest.raises(AssertionError, match="expected exactly"):
        assert_led_sequence(shown, ["blinkup_ok", "online", "blessed"], exact=True)
    assert_led_sequence(shown[1:], ["waiting_blinkup", "blinkup_ok", "connecting", "online",
                                    "blessed"], exact=True)


def test_a_state_name_that_does_not_exist_is_an_error_not_a_failure() -> None:
    with pytest.raises(ValueError, match=r"unknown LED state.*'bleesed'"):
        assert_led_sequence(["blessed"], ["bleesed"])
    with pytest.raises(TypeError):
        assert_led_sequence(["blessed"], "blessed")
    assert "blessed" in LED_STATES and "waiting_blinkup" in LED_STATES


def test_a_bench_name_for_two_looks_matches_either() -> None:
    assert_led_sequence(["off", "blinkup_ok", "updating/blessed"], ["blinkup_ok", "blessed"])
    assert_led_sequence(["updating/blessed"], ["updating"])


def test_led_states_come_from_records_and_json() -> None:
    record = DutRecord("d", "f", 0, led_timeline=[
        LedEvent(0.0, "amber", True, "waiting_blinkup"), LedEvent(1.0, "green", True,
                                                              "blinkup_ok")])
    assert led_states(record) == ["waiting_blinkup", "blinkup_ok"]
    assert led_states(record.to_dict()) == ["waiting_blinkup", "blinkup_ok"]
    life = {"led": [{"t": 0, "state": "off"}, {"t": 1, "state": "waiting_blinkup"}]}
    assert led_states(life) == ["off", "waiting_blinkup"]
    with pytest.raises(TypeError):
        led_states({"nothing": 1})


def test_measurements_by_name_and_limit() -> None:
    assert assert_measurement(RESULT, "supply_voltage") == 3.3  # its own limits
    assert_measurement(RESULT, "supply_voltage", low=3.2, high=3.4)
    with pytest.raises(AssertionError, match=r"supply_voltage = 3.3 V, outside 3.4..None"):
        assert_measurement(RESULT, "supply_voltage", low=3.4)
    with pytest.raises(AssertionError, match=r"outside its limits 10\.0\.\.45\.0 degC"):
        assert_measurement(RESULT, "temperature")
    assert assert_measurement(RESULT, "temperature", passed=False) == 60.0
    assert assert_measurement(RESULT, "sensor_id", passed=False) is None
    with pytest.raises(AssertionError, match="no value"):
        assert_measurement(RESULT, "sensor_id", passed=False, low=0)
    with pytest.raises(AssertionError, match="no measurement 'humidity'; measured: "
                                             "supply_voltage, temperature, sensor_id"):
        assert_measurement(RESULT, "humidity")


def test_measurements_come_from_records_too() -> None:
    record = DutRecord("d", "f", 0, measurements=[Measurement("temperature", 22.5, 10, 45,
                                                              "degC")])
    assert measurements(record)["temperature"].passed
    assert measurements(record.to_dict())["temperature"].unit == "degC"
    assert assert_measurement(record, "temperature", high=23) == 22.5


# -- the options, from outside ----------------------------------------------------------
OPTIONS_TEST = '''
import os

def test_options(broker_url, bench_port, any_broker_url):
    print("BROKER", broker_url, "ANY", any_broker_url, "BENCH", bench_port,
          "LIB", os.environ.get("IMPFACTORY_LIB_PATH"))
'''


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_options.py").write_text(OPTIONS_TEST, encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if k not in ("IMPFACTORY_BROKER", "IMPFACTORY_BENCH_PORT", "IMPFACTORY_LIB_PATH")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                           "test_options.py", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)


def test_options_point_the_same_tests_elsewhere(tmp_path: Path, broker_url: str) -> None:
    result = run_pytest(tmp_path, "--impfactory-broker", broker_url, "--impfactory-bench",
                        "socket://bench.example:4000", "--impfactory-lib", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    words = result.stdout.split("BROKER", 1)[1].split()
    assert words[:6] == [broker_url, "ANY", broker_url, "BENCH", "socket://bench.example:4000",
                         "LIB"]
    assert words[6] == str(tmp_path.resolve())
    assert "1 passed" in result.stdout  # any_broker_url: the outside broker only


def test_a_lib_option_that_is_no_folder_is_a_usage_error(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, "--impfactory-lib", str(tmp_path / "missing"))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "--impfactory-lib: not a folder" in result.stderr


# -- a product through the factory ---------------------------------------------------------
@pytest.fixture
def product(imp_product: Callable[..., Product]) -> Product:
    return imp_product(FIRMWARE / examples.FACTORY, FIRMWARE / examples.APPLICATION,
                       name="Lamp")


def test_a_fixture_blesses_a_good_dut_and_fails_a_hot_one(product: Product) -> None:
    fixture = product.add_fixture()
    assert any("fixture ready" in line for line in fixture.logs)
    good = fixture.blinkup()
    assert good.wait_for("blessed", "test_failed") == "blessed"
    good.wait_for("code_started", after="blessed")  # the application
    assert_led_sequence(good, ["waiting_blinkup", "blinkup_ok", "online", "blessed"])
    assert_measurement(good, "temperature", low=20, high=25)
    assert product.devices(product.zone.production) == [good.device_id]
    assert product.device(good.device_id)["blessed"]
    hot = fixture.blinkup(temperature=60.0)
    assert hot.wait_for("blessed", "test_failed") == "test_failed"
    assert_measurement(hot, "temperature", passed=False)
    assert_led_sequence(hot, ["online", "test_failed"])
    assert product.device(hot.device_id)["devicegroup"] == product.zone.dut
    assert fixture.model("lcd").lines[1].strip() == "impfactory"  # its banner
    with pytest.raises(WaitTimeout, match=r"did not do blinkup_failed within 0.5 s; it did "
                                          r"powered_on > "):
        hot.wait_for("blinkup_failed", timeout=0.5)
    with pytest.raises(ValueError, match="unknown event"):
        hot.wait_for("bleesed")


def test_go_live_with_a_blessing_webhook(product: Product,
                                         webhook_receiver: WebhookReceiver) -> None:
    zone = product.go_live(webhooks={"blessing": webhook_receiver.url})
    assert product.zone == zone and zone.production == "Production"
    dut = product.add_fixture().blinkup()
    dut.wait_for("blessed")
    [hook] = webhook_receiver.wait_for("blessing")
    assert hook["device_id"] == dut.device_id and hook["_path"] == "/hook"
    assert product.device(dut.device_id)["devicegroup"] == "Production"


def test_production_groups_targets_and_moves(product: Product) -> None:
    zone = product.zone
    fixture = product.add_fixture()
    first = fixture.blinkup()
    first.wait_for("blessed")
    product.create_group("Test Production EU", "pre-production")
    product.deploy("Test Production EU", FIRMWARE / examples.APPLICATION)
    product.update_group(zone.fixture, production_target="Test Production EU")
    second = fixture.blinkup()
    second.wait_for("blessed")
    assert product.devices("Test Production EU") == [second.device_id]
    product.assign("Test Production EU", [first.device_id])  # moved, code and all
    assert sorted(product.devices("Test Production EU")) == sorted(
        [first.device_id, second.device_id])
    assert product.devices(zone.production) == []


def test_load_code_after_blessing_off_loads_the_application_at_activation(
        imp_product: Callable[..., Product], webhook_receiver: WebhookReceiver) -> None:
    product = imp_product(FIRMWARE / examples.FACTORY, FIRMWARE / examples.APPLICATION,
                          load_code_after_blessing=False)
    product.add_webhook(product.zone.production, "blinkup", webhook_receiver.url)
    dut = product.add_fixture().blinkup()
    dut.wait_for("blessed")
    dut.wait_for("assigned", after="blessed")  # to production: no code offer came with it
    product.activate(dut)  # the end user's BlinkUp at home
    dut.wait_for_log("application started")
    after = dut.events[dut.events.index("blessed"):]
    assert after.count("code_started") == 1  # the application, only once activated
    assert after.index("code_started") > after.index("powered_on")
    [hook] = webhook_receiver.wait_for("blinkup")
    assert hook["device_id"] == dut.device_id
    assert product.device(dut.device_id)["activated"]


def test_a_polite_deployment_lets_the_application_finish(product: Product) -> None:
    dut = product.add_fixture().blinkup()
    dut.wait_for("blessed")
    product.activate(dut)  # the example firmware cleared its settings once blessed
    dut.wait_for_log("application started")
    product.deploy(product.zone.production, 'server.log("application v2 started");\n')
    product.restart(product.zone.production, conditional=True)
    dut.wait_for_log("application v2 started")
    logs = dut.logs
    told = next(i for i, line in enumerate(logs) if line.startswith("shutdown requested (1)"))
    assert told < next(i for i, line in enumerate(logs) if "v2 started" in line)


def test_a_line_in_front_of_the_fixture_group(product: Product) -> None:
    result = product.line(duts=4, faults={"test_fail": 0.5}, seed=3)
    assert result.summary.duts == 4
    for record in result.records:
        if record.blessed:
            assert_led_sequence(record, ["blinkup_ok", "online", "blessed"])
            assert_measurement(record, "supply_voltage")
        else:
            assert record.failure_reason == "test_failed"
    assert 0 < result.summary.blessed < 4


def test_firmware_that_does_not_compile_fails_at_once_naming_its_line(
        imp_product: Callable[..., Product], tmp_path: Path) -> None:
    broken = tmp_path / "factory.device.nut"
    broken.write_text('server.log("fine");\nlocal x = ;\n', encoding="utf-8")
    with pytest.raises(Exception, match=r"factory.device.nut:2"):
        imp_product(broken, FIRMWARE / examples.APPLICATION)


def test_factory_line_takes_firmware_files(factory_line: Callable[..., LineResult]) -> None:
    result = factory_line(duts=2, fixtures=1, firmware=FIRMWARE / examples.FACTORY,
                          app=FIRMWARE / examples.APPLICATION, lib=[FIRMWARE])
    assert result.summary.blessed == 2
    assert_measurement(result.records[0], "sensor_id", low=0xBC, high=0xBC)
    assert "IMPFACTORY_LIB_PATH" not in os.environ or str(FIRMWARE) not in os.environ[
        "IMPFACTORY_LIB_PATH"]
