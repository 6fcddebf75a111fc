"""``impfactory device life`` tells one DUT's life, with faults, as text, JSON and PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from impfactory.tools import cli


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert cli.main(["device", "life", "--json", "--impos", "", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_good_life_ends_in_the_application(capsys, tmp_path: Path, broker_url: str) -> None:
    png = tmp_path / "led.png"
    out = run_json(capsys, "--broker", broker_url, "--png", str(png))
    events = [e["event"] for e in out["events"]]
    assert events.index("blinkup_ok") < events.index("blessed") < len(events) - 1
    assert out["blessed"]
    assert any(m.startswith("application started") for m in out["logs"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    taken = next(e["detail"] for e in out["events"] if e["event"] == "blinkup_ok")
    assert taken["ssid"] == "factory-wifi" and taken["password"] == "***"
    assert "factory-password" not in json.dumps(out["events"])


@pytest.mark.parametrize(("fault", "event", "led"), [
    ("bad_blinkup", "blinkup_failed", "blinkup_failed"),
    ("wrong_password", "connect_failed", "joining_wifi"),
    ("no_dhcp", "connect_failed", "getting_ip"),
    ("test_fail", "test_failed", "test_failed"),
])
def test_faults_show_in_events_and_led(capsys, broker_url: str, fault: str, event: str,
                                       led: str) -> None:
    out = run_json(capsys, "--broker", broker_url, "--fault", fault)
    assert event in [e["event"] for e in out["events"]]
    assert led in [s["state"] for s in out["led"]]
    assert not out["blessed"]


@pytest.mark.parametrize(("args", "word"), [
    (["--scale", "0"], "scale"),
    (["--scale", "nan"], "scale"),
    (["--timeout", "-1"], "timeout"),
    (["--png", "/nonexistent-dir/led.png"], "png"),
    (["--broker", "nope"], "broker"),
])
def test_bad_arguments_are_one_line_errors(capsys, args: list[str], word: str) -> None:
    assert cli.main(["device", "life", *args]) == 2
    err = capsys.readouterr().err
    assert word in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_fixture_that_cannot_start_in_time_is_a_named_failed_run(capsys,
                                                                   broker_url: str) -> None:
    """Good options, a run that failed: exit status 1 (2 is for bad input)."""
    assert cli.main(["device", "life", "--broker", broker_url, "--timeout", "0.001"]) == 1
    err = capsys.readouterr().err
    assert "fixture did not enrol" in err and err.count("\n") == 1


@pytest.mark.parametrize("args", [["--duts", "0"], ["--concurrency", "0"], ["--scale", "-1"]])
def test_perf_device_refuses_arguments_it_cannot_run(capsys, args: list[str]) -> None:
    assert cli.main(["perf", "device", *args]) == 2  # --concurrency 0 used to hang
    assert "must be" in capsys.readouterr().err


def test_perf_device_small_run_blesses_every_dut(capsys, broker_url: str) -> None:
    assert cli.main(["perf", "device", "--duts", "6", "--concurrency", "3", "--json",
                     "--broker", broker_url]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["blessed"] == figures["duts"] == 6 and figures["duts_per_s"] > 0


def _capture(path: Path, **config) -> Path:
    from impfactory.protocol.blinkup import BlinkUpConfig, encode_frame
    from impfactory.protocol.linecode import render_bilevel
    from impfactory.tools.cmd_blinkup import write_capture

    frame = encode_frame(BlinkUpConfig(**config))
    write_capture(path, render_bilevel(frame, symbol_rate=142.0, noise=0.02, seed=5))
    return path


def test_device_blinkup_reads_a_capture_into_settings(capsys, tmp_path: Path) -> None:
    from impfactory.protocol.blinkup import ProxyConfig

    wav = _capture(tmp_path / "good.wav", ssid=b"line-7", password=b"pw",
                   plan_id="0123456789abcdef", token="fedcba9876543210",
                   proxy=ProxyConfig("proxy.lan", 3128, "u", "secret-pw"))
    assert cli.main(["device", "blinkup", str(wav), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accepted"] and out["stored"]["ssid"] == "line-7"
    assert out["stored"]["plan_id"] == "0123456789abcdef" and out["stored"]["enrol_token_set"]
    assert out["stored"]["proxy"] == {"server": "proxy.lan", "port": 3128, "username": "u"}
    assert out["led"][:4] == ["off", "waiting_blinkup", "blinkup_receiving", "blinkup_ok"]


def test_device_blinkup_rejects_a_corrupt_capture(capsys, tmp_path: Path) -> None:
    from impfactory.tools.cmd_blinkup import read_capture, write_capture

    good = _capture(tmp_path / "good.csv", ssid=b"line-7", password=b"pw")
    signal, _ = read_capture(good)
    samples = signal.samples.copy()
    mid = len(samples) // 2
    samples[mid:mid + 40] = 1.0 - samples[mid:mid + 40]  # a few symbols flipped mid-frame
    write_capture(tmp_path / "bad.csv", type(signal)(samples, signal.sample_rate))
    assert cli.main(["device", "blinkup", str(tmp_path / "bad.csv"), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert not out["accepted"] and out["heard"] and out["errors"]
    assert out["stored"]["ssid"] == "" and "blinkup_failed" in out["led"]


def test_device_blinkup_bad_files_are_one_line_errors(capsys, tmp_path: Path) -> None:
    assert cli.main(["device", "blinkup", str(tmp_path / "missing.wav")]) == 2
    (tmp_path / "junk.csv").write_text("not,a,capture\n")
    assert cli.main(["device", "blinkup", str(tmp_path / "junk.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err


def test_code_that_raises_is_logged_and_the_dut_carries_on(capsys, broker_url: str) -> None:
    out = run_json(capsys, "--broker", broker_url, "--fault", "code_error")
    events = [e["event"] for e in out["events"]]
    error = next(e for e in out["events"] if e["event"] == "code_error")
    assert "the index 'no such key' does not exist" in error["detail"]
    assert any(m.startswith("ERROR:   in ") and "device.nut:" in m for m in out["logs"])
    assert "blessed" in events and "powered_off" not in events[:events.index("code_error")]
