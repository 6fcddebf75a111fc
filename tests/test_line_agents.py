"""The line with the example factory firmware and its agent: each DUT's agent posts the
DUT's result to the fixture's agent URL, and the fixture shows it on its LCD."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from impfactory.tools.cli import main


def test_the_example_agents_carry_each_result_to_the_fixtures_lcd(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "rep"
    assert main(["line", "run", "--fixtures", "1", "--duts", "4", "--seed", "3",
                 "--fault", "test_fail=0.5", "--json", "--report", str(report)]) == 0
    summary = json.loads(capsys.readouterr().out)
    duts = json.loads((report / "duts.json").read_text())["duts"]
    tested = [d for d in duts if any(e["kind"] == "from_device" for e in d["agent"])]
    assert len(tested) == 4
    assert {d["blessed"] for d in duts} == {True, False}  # this seed fails some, not all
    for d in tested:
        posts = [e for e in d["agent"] if e["kind"] == "http"]
        assert [(e["to_agent"], e["status"], e["answer"]) for e in posts] == [
            (True, 200, "OK")]
        assert d["fixture_lcd"] == [d["dut_id"], f"Passed = {str(d['blessed']).lower()}"]
    assert (summary["agent_posts"], summary["agent_answered"]) == (4, 4)
    page = (report / "report.html").read_text()
    assert "<h2>Agents</h2>" in page and f"{duts[0]['dut_id']} | Passed = " in page
