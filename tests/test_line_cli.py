"""``impfactory line run``, ``demo`` and ``perf line`` through the real entry point."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from impfactory.tools.cli import main


def test_line_run_json_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "rep"
    code = main(["line", "run", "--fixtures", "2", "--duts", "8", "--seed", "2",
                 "--fault", "test_fail=0.3", "--fault", "misplaced=0.3",
                 "--fault", "wrong_wifi=0.3", "--outdated-impos", "0.25", "--json",
                 "--report", str(report)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    for key in ("duts", "blessed", "failed", "yield", "wall_s", "duts_per_s", "failures"):
        assert key in doc
    assert doc["duts"] == 8 == doc["blessed"] + doc["failed"]
    assert doc["yield"] == round(doc["blessed"] / 8, 4)
    assert doc["duts_per_s"] == pytest.approx(8 / doc["wall_s"], rel=0.01)
    assert sum(doc["failures"].values()) == doc["failed"]
    assert len(doc["failures"]) >= 2  # this seed meets more than one reason
    assert set(doc["failures"]) <= {"test_failed", "blinkup_failed", "wifi_join_failed"}
    duts = json.loads((report / "duts.json").read_text())["duts"]
    assert [d["index"] for d in duts] == list(range(8))
    reasons = [d["failure_reason"] for d in duts if not d["blessed"]]
    assert {r: reasons.count(r) for r in reasons} == doc["failures"]
    for d in duts:
        for key in ("dut_id", "fixture_id", "stages", "measurements", "final_state",
                    "failure_reason", "led_timeline"):
            assert key in d
        for m in d["measurements"]:
            assert {"low", "high", "outcome"} <= set(m)
    root = ET.parse(report / "junit.xml").getroot()
    assert root.get("tests") == "8" and root.get("failures") == str(doc["failed"])
    assert len(root.findall(".//testcase")) == 8
    assert "<svg" in (report / "report.html").read_text()


def test_workers_give_the_same_outcomes(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = []
    for workers in ("1", "2"):
        report = tmp_path / workers
        assert main(["line", "run", "--fixtures", "2", "--duts", "6", "--seed", "4",
                     "--fault", "test_fail=0.4", "--fault", "misplaced=0.3",
                     "--workers", workers, "--json", "--report", str(report)]) == 0
        duts = json.loads((report / "duts.json").read_text())["duts"]
        outcomes.append([(d["dut_id"], d["fixture_id"], d["blessed"], d["failure_reason"])
                         for d in duts])
    assert outcomes[0] == outcomes[1] and len(outcomes[0]) == 6


def test_a_reused_database_gets_new_duts(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cloud.db"
    for _ in range(2):
        assert main(["line", "run", "--duts", "2", "--db", str(db), "--wifi", "Floor 2:pass word",
                     "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["blessed"] == 2


def test_min_yield_sets_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["line", "run", "--duts", "2", "--fixtures", "1", "--fault", "misplaced=1",
                 "--min-yield", "0.5", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["failures"] == {"blinkup_failed": 2}


@pytest.mark.parametrize(("argv", "named"), [
    (["--fault", "gremlins=0.1"], "gremlins"),
    (["--fault", "misplaced=2"], "rate 2.0"),
    (["--fault", "misplaced"], "NAME=RATE"),
    (["--outdated-impos", "lots"], "lots"),
    (["--optical", "colour=blue"], "colour"),
    (["--firmware", "/nonexistent/factory.py"], "/nonexistent/factory.py"),
    (["--duts", "0"], "duts"),
    (["--min-yield", "3"], "--min-yield"),
    (["--workers", "0"], "--workers"),
    (["--wifi", "no-colon"], "--wifi"),
    (["--broker", "http://example.com"], "http://example.com"),
    (["--broker", "mqtt://127.0.0.1:99999"], "port"),
    (["--broker", "mqtt://"], "mqtt://HOST:PORT"),
    (["--scale", "0"], "scale"),
    (["--scale", "nan"], "scale"),
    (["--scale", "inf"], "scale"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], named: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["line", "run", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("impfactory: error:") and "\n" not in err
    assert named in err  # refused for what was wrong, not for something else on the way


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting the broker and cloud of a run fails the test: the refusal must come first
    (proven by what was called, not by how long it took)."""
    from impfactory.tools import line_setup

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("a broker and cloud were started before the refusal")

    # cmd_line imports it when a run starts (a line worker never does)
    monkeypatch.setattr(line_setup, "factory_cloud", started)


@pytest.mark.parametrize("option", ["--firmware", "--app"])
def test_firmware_that_is_not_python_is_refused_before_the_run(
        option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        nothing_starts: None) -> None:
    bad = tmp_path / "factory.py"
    bad.write_text("def changed(self:\n    pass\n")
    assert main(["line", "run", "--duts", "1", option, str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"impfactory: error: {option} {bad}: line 1") and "\n" not in err


def test_no_broker_at_the_url_is_one_line_and_exit_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["line", "run", "--duts", "1", "--broker", f"mqtt://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("impfactory: error:") and "\n" not in err


def test_demo_bad_workers_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--workers", "0"]) == 2
    assert capsys.readouterr().err.startswith("impfactory: error: --workers")


@pytest.mark.parametrize("command", [["line", "run"], ["demo"], ["perf", "line"]])
def test_an_unusable_report_dir_stops_the_run_before_it_starts(
        command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        nothing_starts: None) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for where in (blocker, blocker / "below"):
        assert main([*command, "--duts", "1", "--report", str(where)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("impfactory: error: report directory") and "\n" not in err
    assert blocker.read_text() == "not a directory"


def test_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--duts", "6", "--workers", "2", "--json",
                 "--report", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["duts"] == 6 and doc["blessed"] + doc["failed"] == 6
    assert Path(doc["report"]["html"]).is_file()


def test_demo_without_mosquitto_prints_summary_and_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh machine: no Mosquitto anywhere, nothing configured, only the defaults."""
    from impfactory.cloud import broker

    monkeypatch.setattr(broker, "find_mosquitto", lambda: None)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # where reports used to pile up unseen
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # the second demo replaces the first one's report
        assert main(["demo", "--duts", "6"]) == 0
        out = capsys.readouterr().out
        assert "(embedded; Mosquitto is not installed)" in out.splitlines()[0]
        summary = next(line for line in out.splitlines() if line.startswith("line: "))
        assert "6 DUTs on 2 fixtures" in summary and "yield" in summary
        report = Path(next(line for line in out.splitlines()
                           if line.startswith("report: ")).split()[1])
        assert report == tmp_path / "impfactory-report" / "report.html" and report.is_file()
    assert {p.name for p in report.parent.iterdir()} == {"duts.json", "junit.xml",
                                                         "report.html"}
    assert {p.name for p in tmp_path.iterdir()} == {"tmp", "impfactory-report"}
    assert not list(temp.iterdir())


def test_perf_line_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", "line", "--duts", "4", "--fixtures", "2", "--broker", "auto",
                 "--workers", "1", "--raw-messages", "500", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["duts"] == 4 and doc["failed"] == 0 and doc["duts_per_s"] > 0
    assert doc["peak_rss_mib"] > 0 and doc["cpu_ms_per_dut"] > 0
    assert doc["lost_presses"] == 0  # a footswitch press the fixture firmware ignored
    # auto: a Mosquitto this run starts, or the embedded broker; either way its CPU is
    # in the raw message's (the external broker of the other perf test's is not)
    assert doc["raw_broker_cpu_counted"] is True


@pytest.mark.parametrize(("text", "named"), [
    ('server.log("a");\nlocal x = ;\n', "factory.nut:2:"),  # file, line, column
    ('#require "NoSuch.lib.nut:1.0.0"\n', "NoSuch.lib.nut"),
    ('#require "HTS221.device.lib.nut:9.0.0"\n', "another major version"),
])
def test_squirrel_firmware_that_does_not_compile_is_refused_before_the_run(
        text: str, named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        nothing_starts: None) -> None:
    bad = tmp_path / "factory.nut"
    bad.write_text(text)
    assert main(["line", "run", "--duts", "1", "--firmware", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("impfactory: error: --firmware ") and named in err and "\n" not in err
