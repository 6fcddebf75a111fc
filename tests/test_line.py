"""The line end to end: real broker, real cloud, emulated fixtures and DUTs.

Kept small (a few DUTs each) so the whole file runs in seconds, except the
link-drop case, which waits for the DUT's own MQTT client to notice the dead link.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from impfactory.fixture.faults import plan_dut
from impfactory.fixture.line import LineResult
from impfactory.fixture.report import write_reports

Line = Callable[..., LineResult]


def test_fault_free_line_blesses_every_dut(factory_line: Line, tmp_path: Path) -> None:
    result = factory_line(fixtures=2, duts=6, seed=3, outdated_impos=0.5)
    s = result.summary
    assert (s.duts, s.blessed, s.failed, s.failures) == (6, 6, 0, {})
    assert len({r.fixture_id for r in result.records}) == 2
    assert len({r.dut_id for r in result.records}) == 6
    for r in result.records:
        names = [st.name for st in r.stages]
        for stage in ("blinkup", "connect", "download", "test", "application"):
            assert stage in names, (r.index, names)
        assert ("impos_update" in names) == plan_dut(3, r.index, {}, 0.5).outdated_impos
        assert [m.name for m in r.measurements] == ["supply_voltage", "sensor_id",
                                                    "temperature", "humidity", "pin_loopback"]
        assert all(m.passed for m in r.measurements)
        times = [e.t_s for e in r.led_timeline]
        assert times == sorted(times) and times[0] >= 0.0
        states = [e.state for e in r.led_timeline]
        assert states.index("blinkup_ok") < states.index("online") < states.index("blessed")
    assert any("outdated_impos" in r.faults for r in result.records)
    paths = write_reports(tmp_path, result.records, s)
    root = ET.parse(paths["junit"]).getroot()
    assert root.get("tests") == "6" and root.get("failures") == "0"
    for path in paths.values():  # reports travel: no WiFi key or enrolment token in them
        text = path.read_text()
        assert "factory-password" not in text and "token" not in text
        assert "blinkup_ok" in text or path.suffix == ".html"


@pytest.mark.parametrize(("fault", "reason"), [
    ("misplaced", "blinkup_failed"),
    ("wrong_wifi", "wifi_join_failed"),
    ("test_fail", "test_failed"),
    ("link_drop", "link_lost"),
])
def test_each_fault_has_its_own_reason(factory_line: Line, fault: str, reason: str) -> None:
    result = factory_line(fixtures=1, duts=2, seed=1, faults={fault: 1.0},
                  dut_timeout_wall=45.0)
    assert result.summary.failures == {reason: 2}
    for r in result.records:
        assert r.faults == [fault] and r.failure_reason == reason
        if fault == "test_fail":
            assert any(not m.passed for m in r.measurements)


def test_same_seed_same_outcomes(factory_line: Line) -> None:
    faults = {"misplaced": 0.3, "wrong_wifi": 0.3, "test_fail": 0.3}

    def outcomes(seed: int) -> list[tuple[int, bool, str | None, list[str]]]:
        # the LED state a failed DUT was left in depends on when the operator gave up;
        # the verdict and its reason do not
        result = factory_line(fixtures=2, duts=6, seed=seed, faults=faults)
        return [(r.index, r.blessed, r.failure_reason, r.faults) for r in result.records]

    first = outcomes(11)
    assert first == outcomes(11)
    assert any(reason for _, _, reason, _ in first) and any(not f for *_, f in first)


def test_own_firmware_that_never_blesses(factory_line: Line) -> None:
    """A user's firmware whose DUT part forgets ``server.bless``: the line says so."""
    from impfactory.firmware.examples import factory_source

    good = factory_source("factory-wifi", "factory-password")
    broken = good.replace("        server.bless(passed, function(blessed) {",
                          "        if (false) server.bless(passed, function(blessed) {")
    assert broken != good
    result = factory_line(fixtures=1, duts=1, firmware=broken, dut_timeout_wall=3.0)
    assert result.summary.failures == {"no_bless": 1}


def test_a_sensor_that_does_not_answer_is_a_failed_measurement_not_a_missing_one(
        factory_line: Line) -> None:
    import xml.etree.ElementTree as ET

    from impfactory.fixture.report_junit import junit_tree

    result = factory_line(fixtures=2, duts=2, seed=5, faults={"test_fail": 1.0})
    silent = [r for r in result.records
              if any(m.name == "sensor_id" and m.value is None for m in r.measurements)]
    assert silent, "no DUT drew the missing-sensor fault"
    for record in silent:
        assert record.failure_reason == "test_failed"
        names = [m.name for m in record.measurements]
        assert names == ["supply_voltage", "sensor_id", "temperature", "humidity",
                         "pin_loopback"]  # all five recorded, the silent ones failed
        assert not any(m.passed for m in record.measurements if m.value is None)
    junit = ET.tostring(junit_tree(result.records, result.summary).getroot(), encoding="unicode")
    assert "sensor_id = no reading" in junit


@pytest.mark.parametrize(("order", "done"), [
    # the usual order: the blessing, then the production group's code
    (["assigned:pre_dut_devicegroup", "code_started", "blessed",
      "assigned:pre_production_devicegroup", "code_started"], [False] * 4 + [True]),
    # the link lost while the blessing went through (docs/scale.md): back online the
    # welcome puts it in production and its application starts before the repeated
    # bless request is answered; the DUT is done then, not at the 60 s timeout
    (["assigned:pre_dut_devicegroup", "code_started", "online",
      "assigned:pre_production_devicegroup", "code_started", "blessed"], [False] * 5 + [True]),
    # the factory test's code starting is never the application
    (["assigned:pre_dut_devicegroup", "code_started", "code_started"], [False] * 3),
])
def test_a_blessed_dut_is_done_once_its_application_runs_in_either_order(
        order: list[str], done: list[bool]) -> None:
    from types import SimpleNamespace

    from impfactory.firmware.events import DeviceEvent, DeviceRecord
    from impfactory.fixture.line import LineConfig, _DutRun

    line = SimpleNamespace(config=LineConfig(), observer=SimpleNamespace(
        stage=lambda index, name: None))
    run = _DutRun(line, 0, SimpleNamespace())  # type: ignore[arg-type]
    run.dut = SimpleNamespace(sees_application=True)  # type: ignore[assignment]
    seen = []
    for n, step in enumerate(order):
        kind, _, detail = step.partition(":")
        run._on_event(DeviceRecord(float(n), DeviceEvent(kind), detail or None))
        seen.append(run.finished.is_set())
    assert seen == done
