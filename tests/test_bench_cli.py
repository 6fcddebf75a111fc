"""``impfactory bench`` end to end, through subprocesses, as a user runs it.

``bench emulate`` runs in the background (its first line is ``port: PATH``, a
pty); ``probe``, ``blinkup``, ``capture`` and ``watch`` are separate processes
that open that pty, exactly as they would open ``/dev/ttyUSB0`` on a real bench.
The emulated bench runs ten times faster than the wall (``--scale 10``), so a
12.8 s BlinkUp at 60 symbols/s costs about 1.3 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from impfactory.cloud.brokersec import access_for
from impfactory.firmware.identity import DeviceIdentity
from impfactory.tools import cli

CLI = [sys.executable, "-m", "impfactory.tools.cli"]
SSID, PASSWORD = "bench-net", "bench-pass"
PLAN, TOKEN = "00112233445566ff", "a1b2c3d4e5f60718"


def bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "bench", *args], capture_output=True, text=True, timeout=timeout
    )


def start_emulator(log: Path, *args: str) -> tuple[str, subprocess.Popen[str]]:
    """``bench emulate`` in the background; its log goes to a file (a pipe nobody
    reads could fill up and stall it)."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*CLI, "bench", "emulate", "--scale", "10", *args],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("port: "), first + log.read_text()
    return first.split(" ", 1)[1].strip(), proc


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    log = tmp_path_factory.mktemp("bench") / "emulate.log"
    port, proc = start_emulator(log, "--wifi-ssid", SSID, "--wifi-password", PASSWORD,
                                "--plan-id", PLAN, "--token", TOKEN)
    try:
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_probe_json_names_the_protocol_version(emulator: tuple[str, subprocess.Popen[str]]) -> None:
    port, _ = emulator
    assert os.path.exists(port)
    result = bench("probe", "--port", port, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["protocol_version"] == 1
    assert "status_sense" in doc["capabilities"]


def test_watch_names_the_waiting_state(emulator: tuple[str, subprocess.Popen[str]]) -> None:
    """A fresh DUT waits for BlinkUp: amber 500/500 (runs before any BlinkUp here)."""
    port, _ = emulator
    result = bench("watch", "--port", port, "--seconds", "5", "--json")
    assert result.returncode == 0, result.stderr
    readings = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["state"] for r in readings] == ["waiting_blinkup"], result.stdout
    assert readings[0]["colour"] == "amber" and readings[0]["pattern"] == [500, 500]


def test_blinkup_through_the_bench_led_turns_the_dut_green(
    emulator: tuple[str, subprocess.Popen[str]],
) -> None:
    port, _ = emulator
    result = bench(
        "blinkup", "--port", port, "--ssid", SSID, "--password", PASSWORD,
        "--plan-id", PLAN, "--token", TOKEN, "--power-cycle", "--watch", "5", "--json",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    states = [s["state"] for s in doc["status"]]
    # the LED goes dark while the BlinkUp is received, then three seconds of green
    assert "off" in states and "blinkup_ok" in states
    assert states.index("off") < states.index("blinkup_ok")
    assert doc["lost_samples"] == 0


def test_an_unpowered_dut_does_not_acknowledge(
    emulator: tuple[str, subprocess.Popen[str]],
) -> None:
    port, _ = emulator
    # power in-process (the same CLI entry point), the blinkup as its own process
    assert cli.main(["bench", "power", "--port", port, "off"]) == 0
    result = bench(
        "blinkup", "--port", port, "--ssid", SSID, "--password", PASSWORD, "--fast",
        "--no-power-cycle", "--watch", "2", "--json",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert [s["state"] for s in json.loads(result.stdout)["status"]] == ["off"]
    assert cli.main(["bench", "power", "--port", port, "on"]) == 0


def test_blinkup_fast_is_acknowledged_too(emulator: tuple[str, subprocess.Popen[str]]) -> None:
    port, _ = emulator
    result = bench(
        "blinkup", "--port", port, "--ssid", SSID, "--password", PASSWORD, "--fast",
        "--power-cycle", "--watch", "4",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "at 142 Hz" in result.stdout and "blinkup_ok" in result.stdout


def test_a_trilevel_blinkup_is_acknowledged(emulator: tuple[str, subprocess.Popen[str]]) -> None:
    """Grey symbols: a phone screen's black/grey/white as bench LED brightness."""
    port, _ = emulator
    result = bench(
        "blinkup", "--port", port, "--ssid", SSID, "--password", PASSWORD,
        "--line-code", "trilevel", "--power-cycle", "--watch", "4",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "blinkup_ok" in result.stdout


def test_capture_of_the_fixture_led_decodes(
    emulator: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    port, _ = emulator
    out = tmp_path / "fixture.csv"
    result = bench("capture", "--port", port, "--press", "--seconds", "14", "-o", str(out))
    assert result.returncode == 0, result.stderr
    decoded = subprocess.run(
        [*CLI, "blinkup", "decode", str(out), "--json"], capture_output=True, text=True,
        timeout=60,
    )
    assert decoded.returncode == 0, decoded.stderr
    doc = json.loads(decoded.stdout)
    assert (doc["ssid"], doc["password"]) == (SSID, PASSWORD)
    assert (doc["plan_id"], doc["token"]) == (PLAN, TOKEN)


def test_emulator_stops_cleanly_on_sigterm(emulator: tuple[str, subprocess.Popen[str]]) -> None:
    _, proc = emulator
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_bad_port_and_silent_port_are_one_line_errors(tmp_path: Path) -> None:
    missing = bench("probe", "--port", str(tmp_path / "no-such-tty"))
    assert missing.returncode != 0
    assert missing.stderr.startswith("impfactory: error:")
    assert "Traceback" not in missing.stderr
    silent = bench("probe", "--port", "loop://", "--timeout", "0.1", "--retries", "1")
    assert silent.returncode == 2
    assert "stopped answering" in silent.stderr
    assert "Traceback" not in silent.stderr


def test_run_blesses_the_dut_behind_the_bench(broker_url: str, tmp_path: Path) -> None:
    """``bench run``: the line, with the emulated imp behind the bench as its DUT; the
    same summary and reports as ``line run``."""
    port, proc = start_emulator(tmp_path / "emulate.log", "--server", broker_url)
    try:
        # the cloud runs in the bench process: its credentials travel in the URL
        result = bench("run", "--port", port, "--broker", access_for(broker_url).cloud_url,
                       "--wait", "60", "--report", str(tmp_path / "report"),
                       "--json", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        summary = json.loads(result.stdout)
        assert (summary["duts"], summary["blessed"], summary["failures"]) == (1, 1, {})
        duts = json.loads((tmp_path / "report" / "duts.json").read_text())["duts"]
        (dut,) = duts
        assert dut["blessed"] is True and dut["failure_reason"] is None
        # the cloud learnt the DUT's ID from its enrolment, not from us
        assert dut["dut_id"] == DeviceIdentity.from_serial(1).device_id
        # dark while the BlinkUp came in, then green: BlinkUp accepted (3 s) and, when the
        # cloud is quick, blessed straight after, which a colour sensor sees as one green
        colours = [e["colour"] for e in dut["led_timeline"]]
        assert "off" in colours and "green" in colours[colours.index("off"):], colours
        # the DUT firmware's log lines came through the bench's UART pass-through
        assert any(line.startswith("factory tests ") for line in dut["uart"]), dut["uart"]
        assert (tmp_path / "report" / "junit.xml").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_run_refuses_a_port_without_a_controller_before_starting_a_cloud(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(["bench", "run", "--port", "loop://", "--timeout", "0.1", "--retries", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "stopped answering" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["watch", "--port", "loop://", "--seconds", "-1"],
        ["watch", "--port", "loop://", "--rate", "0"],
        ["capture", "--port", "loop://", "-o", "x.csv", "--seconds", "nan"],
        ["blinkup", "--port", "loop://", "--ssid", "s", "--settle", "-5"],
        ["probe", "--port", "loop://", "--timeout", "0"],
        ["emulate", "--scale", "inf"],
        ["run", "--port", "loop://", "--wait", "0"],
    ],
)
def test_bad_numbers_are_usage_errors_before_the_bench_is_touched(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


def test_emulate_refuses_a_server_that_is_not_an_mqtt_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["bench", "emulate", "--server", "nonsense"]) == 2
    assert "mqtt://HOST:PORT" in capsys.readouterr().err


def test_capture_to_a_missing_directory_is_refused_before_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # loop:// has no controller behind it: reaching it would cost the whole timeout
    code = cli.main(["bench", "capture", "--port", "loop://", "-o", str(tmp_path / "no" / "x.csv")])
    assert code == 2
    assert "is not a directory" in capsys.readouterr().err


def test_perf_bench_measures_over_a_real_pty(capsys: pytest.CaptureFixture[str]) -> None:
    """A short ``impfactory perf bench``: figures are measured, not printed from constants."""
    assert cli.main(["perf", "bench", "--frames", "40", "--requests", "20", "--seconds", "0.3",
                     "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["codec"]["frames"] == 40 and doc["codec"]["decode_frames_per_s"] > 0
    pty = doc["pty"]
    assert 0 < pty["round_trip_median_ms"] <= pty["round_trip_p99_ms"]
    # a silent controller is reported no sooner than its bound, and not much later
    assert pty["silent_bound_s"] <= pty["silent_detect_s"] < pty["silent_bound_s"] + 2
    assert pty["stream_samples_per_s"] > 0.5 * pty["stream_rate_hz"]


def test_a_bilevel_only_dut_ignores_the_trilevel_flash(capsys: pytest.CaptureFixture[str]) -> None:
    """The control for the test above: the grey levels, not a bi-level reading, did it."""
    import asyncio

    from impfactory.clock import ScaledClock
    from impfactory.firmware.bench_target import EmulatedImpBench
    from impfactory.firmware.device import DeviceConfig
    from impfactory.hw.bench_emulated import ControllerThread, EmulatedBenchController

    clock = ScaledClock(10)
    target = EmulatedImpBench.build(clock, config=DeviceConfig(blinkup_line_codes=("bilevel",)))
    runner = ControllerThread(EmulatedBenchController(target, clock))
    path = runner.start()
    try:
        code = cli.main(["bench", "blinkup", "--port", path, "--ssid", "s", "--password", "p",
                         "--line-code", "trilevel", "--power-cycle", "--watch", "4"])
        assert code == 1
        assert "did not show the BlinkUp green" in capsys.readouterr().out
    finally:
        asyncio.run_coroutine_threadsafe(target.device.power_off(), runner.loop).result(10)
        runner.stop()


def test_blinkup_as_the_readme_writes_it_reaches_a_dut_whose_window_closed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``bench blinkup`` some time after ``bench emulate``: the DUT stopped listening for
    BlinkUp (an imp listens for a while after power-on, 60 s on a real one), so the
    command powers it off and on first when the controller switches DUT power, as
    an operator would; ``--no-power-cycle`` leaves it, and then says why it failed."""
    import asyncio

    from impfactory.clock import ScaledClock
    from impfactory.firmware.bench_target import EmulatedImpBench
    from impfactory.firmware.device import DeviceConfig
    from impfactory.firmware.events import DeviceEvent
    from impfactory.hw.bench_emulated import ControllerThread, EmulatedBenchController

    clock = ScaledClock(10)
    target = EmulatedImpBench.build(clock, wifi=(SSID, PASSWORD), config=DeviceConfig(
        blinkup_window_s=10.0, blinkup_line_codes=("bilevel", "trilevel")))
    device = target.device
    runner = ControllerThread(EmulatedBenchController(target, clock))
    path = runner.start()
    try:
        runner.call(device.power_on)
        closed = device.wait_for(DeviceEvent.BLINKUP_WINDOW_CLOSED, 30.0, since=0)
        asyncio.run_coroutine_threadsafe(closed, runner.loop).result(40)
        blinkup = ["bench", "blinkup", "--port", path, "--ssid", SSID, "--password", PASSWORD]
        assert cli.main([*blinkup, "--no-power-cycle", "--watch", "4"]) == 1
        out = capsys.readouterr().out
        assert "did not show the BlinkUp green" in out and "60 s after power-on" in out
        assert cli.main(blinkup) == 0  # the README's line, as written
        out = capsys.readouterr().out
        assert "switched the DUT off and on" in out and "DUT acknowledged the BlinkUp" in out
        assert device.settings.ssid == SSID
    finally:
        asyncio.run_coroutine_threadsafe(device.power_off(), runner.loop).result(10)
        runner.stop()
