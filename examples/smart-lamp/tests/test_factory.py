"""The SmartLamp in the factory: its fixture, its self-test, blessing, the line, Go Live.

Each test is a case of docs/guide.md, on emulated hardware: a lamp (an imp001 on an
impExplorer Kit in the test jig) placed in front of the fixture (an imp005 on a
Factory BlinkUp Box) running factory.device.nut.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from impfactory.tools.pytest_plugin import (
    Product,
    WebhookReceiver,
    assert_led_sequence,
    assert_measurement,
    measurements,
)

MEASUREMENTS = ("supply_voltage", "sensor_id", "board_temp", "jig_loopback")


def test_a_good_lamp_is_blessed_and_shows_green(make_lamp: Callable[..., Product]) -> None:
    lamp = make_lamp(load_code_after_blessing=False)  # keeps the verdict on the light
    fixture = lamp.add_fixture()
    dut = fixture.blinkup()
    assert dut.wait_for("blessed", "test_failed") == "blessed"
    assert_led_sequence(dut, ["waiting_blinkup", "blinkup_ok", "online", "blessed"])
    for name in MEASUREMENTS:
        assert_measurement(dut, name)
    assert_measurement(dut, "board_temp", low=20.0, high=25.0)  # the room is 22.5 degC
    dut.wait_for_log("bless ok")
    assert dut.model("rgb").colors == [(0, 255, 0)]
    assert lamp.device(dut.device_id)["devicegroup"] == lamp.zone.production
    assert lamp.device(dut.device_id)["blessed"]
    # the lamp's agent posted its result to the fixture's agent, which showed it
    fixture.wait_for_log(f"lamp {dut.device_id}: PASS")
    assert fixture.model("lcd").lines == (dut.device_id, "PASS".ljust(16))


@pytest.mark.parametrize(("board", "failing"), [
    ({"voltage": 2.8}, ["supply_voltage"]),
    ({"sensor": False}, ["sensor_id", "board_temp"]),
    ({"faults": ["sensor.wrong_id=0x00"]}, ["sensor_id"]),
    ({"temperature": 55.0}, ["board_temp"]),
    ({"loopback": False}, ["jig_loopback"]),
], ids=["low-supply", "no-sensor", "wrong-sensor", "hot-board", "open-jig"])
def test_a_faulty_lamp_fails_its_own_measurements(lamp: Product, board: dict[str, Any],
                                                  failing: list[str]) -> None:
    fixture = lamp.add_fixture()
    dut = fixture.blinkup(**board)
    assert dut.wait_for("blessed", "test_failed") == "test_failed"
    assert_led_sequence(dut, ["blinkup_ok", "online", "test_failed"])
    for name in failing:
        assert_measurement(dut, name, passed=False)
    assert [m.name for m in measurements(dut).values() if not m.passed] == failing
    dut.wait_for_log("bless failed")
    assert dut.model("rgb").colors == [(255, 0, 0)]
    assert lamp.device(dut.device_id)["devicegroup"] == lamp.zone.dut  # not blessed
    fixture.wait_for_log(f"lamp {dut.device_id}: FAIL")


def test_a_misplaced_lamp_never_takes_the_blinkup(lamp: Product) -> None:
    dut = lamp.add_fixture().blinkup(offset_mm=10.0)
    assert dut.wait_for("blinkup_ok", "blinkup_window_closed") == "blinkup_window_closed"
    assert_led_sequence(dut, ["off", "waiting_blinkup"], exact=True)  # slow amber, still


def test_a_wrong_factory_network_shows_after_the_green(lamp: Product) -> None:
    dut = lamp.add_fixture().blinkup(wifi_password="not-the-factory-key")
    dut.wait_for_led("joining_wifi")  # after the 3 s green
    assert_led_sequence(dut, ["blinkup_ok", "joining_wifi"])  # red, never online
    assert "online" not in dut.led_states


def test_an_impos_update_comes_before_the_self_test(make_lamp: Callable[..., Product]
                                                    ) -> None:
    lamp = make_lamp(min_impos="44.0.1")
    dut = lamp.add_fixture().blinkup(outdated_impos=True)
    assert dut.wait_for("blessed", "test_failed") == "blessed"
    assert_led_sequence(dut, ["blinkup_ok", "online", "updating", "online", "blessed"])
    events = dut.events
    assert events.index("impos_updated") < events.index("testing")


def test_an_already_blessed_lamp_is_not_blessed_again(lamp: Product) -> None:
    fixture = lamp.add_fixture()
    dut = fixture.blinkup()
    dut.wait_for("blessed")
    fixture.blinkup(dut)  # the same lamp back on the line
    dut.wait_for("code_started")  # it goes straight to the application
    again = dut.events[len(dut.events) - 1 - dut.events[::-1].index("powered_on"):]
    assert "testing" not in again and "blessed" not in again
    assert dut.blessed


def test_a_line_of_lamps(lamp: Product) -> None:
    result = lamp.line(duts=6, fixtures=2, faults={"test_fail": 0.5}, seed=2)
    assert result.summary.duts == 6 and 0 < result.summary.blessed < 6
    for record in result.records:
        if record.blessed:
            assert_led_sequence(record, ["blinkup_ok", "online", "blessed"])
            for name in MEASUREMENTS:
                assert_measurement(record, name)
        else:
            assert record.failure_reason == "test_failed"
            found = measurements(record)  # the line records values only: none when a
            assert len(found) < len(MEASUREMENTS) or not all(  # part did not answer
                m.passed for m in found.values())


def test_go_live_announces_each_blessing(lamp: Product,
                                         webhook_receiver: WebhookReceiver) -> None:
    zone = lamp.go_live(production="SmartLamp Production", dut="SmartLamp DUT",
                        fixture="SmartLamp Fixture",
                        webhooks={"blessing": webhook_receiver.url})
    dut = lamp.add_fixture().blinkup()  # a fixture assigned to the new fixture group
    dut.wait_for("blessed")
    [hook] = webhook_receiver.wait_for("blessing")
    assert hook["device_id"] == dut.device_id
    assert lamp.device(dut.device_id)["devicegroup"] == zone.production
