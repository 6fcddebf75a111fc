"""Report writers on synthetic records: JSON round trip, JUnit counts, HTML content."""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from impfactory.fixture.record import (
    BLESSED,
    AgentEvent,
    DutRecord,
    LedEvent,
    LineSummary,
    Measurement,
    RecordError,
    Stage,
)
from impfactory.fixture.report import read_json, write_reports
from impfactory.fixture.report_html import render_html, sample_records
from impfactory.fixture.report_junit import junit_tree

REASONS = ["blinkup_failed", "wifi_join_failed", "test_failed", "link_lost"]


def synthetic(n: int, seed: int = 1) -> list[DutRecord]:
    """A made-up line: random stage times, some failures of each reason."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        t = 0.0
        stages = []
        for name in ("blinkup", "connect", "download", "test", "bless"):
            d = rng.uniform(0.5, 4.0)
            stages.append(Stage(name, t, t + d))
            t += d
        reason = rng.choice([None, None, None, *REASONS])
        volts = rng.uniform(3.2, 3.4) if reason != "test_failed" else 2.9
        rec = DutRecord(
            dut_id=f"{i:04x}0c2a69{i:06x}",
            fixture_id=f"fx{i % 3}",
            index=i,
            final_state=BLESSED if reason is None else "failed",
            failure_reason=reason,
            stages=stages,
            measurements=[Measurement("supply", volts, 3.1, 3.5, "V"),
                          Measurement("loopback", 1.0, 1.0, None)],
            led_timeline=[LedEvent(0.0, "amber", True), LedEvent(0.5, "amber", False),
                          LedEvent(1.0, "green", True),
                          LedEvent(t, "green" if reason is None else "red", True)],
        )
        records.append(rec)
    return records


def test_measurement_outcome_follows_limits() -> None:
    assert Measurement("v", 3.3, 3.1, 3.5).outcome == "pass"
    assert Measurement("v", 3.6, 3.1, 3.5).outcome == "fail"
    assert Measurement("v", 3.0, 3.1, None).outcome == "fail"
    assert Measurement("v", -9.0).passed


def test_summary_counts_and_failures_sum() -> None:
    records = synthetic(40)
    s = LineSummary.of(records, wall_s=2.0, fixtures=3, seed=5)
    d = s.to_dict()
    assert d["duts"] == 40
    assert d["blessed"] + d["failed"] == 40
    assert sum(d["failures"].values()) == d["failed"]
    assert d["yield"] == pytest.approx(d["blessed"] / 40, abs=1e-4)
    assert d["duts_per_s"] == pytest.approx(20.0)
    assert list(d["failures"].values()) == sorted(d["failures"].values(), reverse=True)


def test_json_round_trip(tmp_path: Path) -> None:
    records = synthetic(25)
    summary = LineSummary.of(records, 1.0)
    paths = write_reports(tmp_path / "r", records, summary)
    summary_back, back = read_json(paths["json"])
    assert back == records
    assert summary_back == json.loads(json.dumps(summary.to_dict()))
    raw = json.loads(paths["json"].read_text())
    assert raw["duts"][0]["measurements"][0]["outcome"] in ("pass", "fail")


def test_read_json_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    for text in ("not json", "{}", '{"summary": {}, "duts": [{"dut_id": 1}]}'):
        bad.write_text(text)
        with pytest.raises(RecordError):
            read_json(bad)
    with pytest.raises(RecordError):
        read_json(tmp_path / "missing.json")


def test_junit_parses_with_right_counts(tmp_path: Path) -> None:
    records = synthetic(30, seed=2)
    summary = LineSummary.of(records, 3.0)
    path = write_reports(tmp_path, records, summary)["junit"]
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 30 == int(root.get("tests", "-1"))
    failures = root.findall("./testsuite/testcase/failure")
    expected_failed = [r for r in records if not r.blessed]
    assert len(failures) == len(expected_failed) == int(root.get("failures", "-1"))
    assert Counter(f.get("type") for f in failures) == Counter(
        r.failure_reason for r in expected_failed)
    for suite in root.findall("testsuite"):
        assert int(suite.get("tests", "-1")) == len(suite.findall("testcase"))
        assert int(suite.get("failures", "-1")) == len(suite.findall("testcase/failure"))
    test_failed = [f for f in failures if f.get("type") == "test_failed"]
    assert test_failed and all("supply" in (f.get("message") or "") for f in test_failed)
    names = {c.get("name") for c in cases}
    assert names == {r.dut_id for r in records}
    # every time is line-clock seconds, and each total sums what it holds
    suites = root.findall("testsuite")
    for suite in suites:
        inner = sum(float(c.get("time", "nan")) for c in suite.findall("testcase"))
        assert float(suite.get("time", "nan")) == pytest.approx(inner, abs=0.01)
        props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
        assert props["wall_s"] == "3.000"
    assert float(root.get("time", "nan")) == pytest.approx(
        sum(float(s.get("time", "nan")) for s in suites), abs=0.01)


def test_junit_all_pass_has_no_failures() -> None:
    records = [r for r in synthetic(20) if r.blessed]
    root = junit_tree(records, LineSummary.of(records, 1.0)).getroot()
    assert root.get("failures") == "0" and not root.findall(".//failure")


def test_html_has_tables_and_charts(tmp_path: Path) -> None:
    records = synthetic(30, seed=3)
    summary = LineSummary.of(records, 1.5, fixtures=3)
    page = write_reports(tmp_path, records, summary)["html"].read_text()
    assert f"{100 * summary.yield_:.1f}%" in page
    for reason in summary.failures:
        assert reason in page
    assert page.count("<svg") == 4  # yield, Pareto, stage times, LED timelines
    for stage in ("blinkup", "connect", "download", "test", "bless"):
        assert stage in page
    # the LED chart paints LED colours (green #1a9e3a as matplotlib writes it)
    assert "#1a9e3a" in page
    ET.fromstring(page[page.index("<svg"): page.index("</svg>") + 6])  # charts are valid XML


def test_html_without_failures_and_sample_choice() -> None:
    records = [r for r in synthetic(12) if r.blessed]
    page = render_html(records, LineSummary.of(records, 1.0))
    assert "No failures." in page and page.count("<svg") == 3
    picks = sample_records(synthetic(60))
    reasons = [r.failure_reason for r in picks]
    assert len(reasons) == len(set(reasons)) == 5  # one blessed + one per reason


def test_led_spans_follow_the_blink_patterns() -> None:
    from impfactory.fixture.report_html import lit_spans

    assert lit_spans("waiting_blinkup", 0.0, 2.2) == [(0.0, 0.5), (1.0, 0.5),
                                                      pytest.approx((2.0, 0.2))]
    assert lit_spans("blessed", 1.0, 3.0) == [(1.0, 2.0)]  # solid
    assert lit_spans("not-a-state", 0.0, 1.0) == [(0.0, 1.0)]
    # 500,250,250 repeats lit first: lit 0-0.5, dark, lit 0.75-1.0, then lit 1.0-1.5
    assert lit_spans("getting_ip", 0.0, 1.5) == [(0.0, 0.5), (0.75, 0.25), (1.0, 0.5)]


def test_agent_activity_and_the_fixture_lcd_reach_every_report(tmp_path: Path) -> None:
    records = synthetic(6, seed=5)
    fixture_url = "http://127.0.0.1:9/agent/0123456789ab"
    for r in records[:4]:
        r.agent = [AgentEvent("from_device", "testresult"),
                   AgentEvent("http", f"POST {fixture_url}", 200 if r.blessed else 500,
                              "OK", to_agent=True),
                   AgentEvent("http", "POST http://127.0.0.1:9/testresult.json", 28,
                              "TimeoutError")]
        r.fixture_lcd = [r.dut_id, f"Passed = {str(r.blessed).lower()}"]
    summary = LineSummary.of(records, 1.0)
    assert summary.agent_posts == 8
    assert summary.agent_answered == sum(1 for r in records[:4] if r.blessed)
    paths = write_reports(tmp_path, records, summary)
    _, back = read_json(paths["json"])
    assert back == records and back[0].agent[1].to_agent
    page = paths["html"].read_text()
    assert "<h2>Agents</h2>" in page and f"POST {fixture_url} -&gt; " in page
    assert f"{records[0].dut_id} | Passed = " in page
    outs = [e.text or "" for e in ET.parse(paths["junit"]).getroot().iter("system-out")]
    assert any("agent: http POST http://127.0.0.1:9/testresult.json -> 28" in o for o in outs)
    assert any(f"fixture LCD: {records[0].dut_id} | Passed = " in o for o in outs)
    assert "<h2>Agents</h2>" not in render_html(synthetic(3), LineSummary.of(synthetic(3), 1))
