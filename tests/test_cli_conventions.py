"""One convention for every command: what its exit status and its output mean.

0 is success; 1 a run that failed; 2 bad input, said in one line on stderr (a
missing file, an unwritable output and a busy port are bad input like a bad
option). A reader that closes the pipe early (``impfactory ... | head``) is not
an error. Fault names have one spelling. An empty answer says that it is empty.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from impfactory.cloud.store import open_store
from impfactory.fixture.faults import FaultSpecError, parse_faults
from impfactory.tools.cli import build_parser, main

CLI = [sys.executable, "-m", "impfactory.tools.cli"]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("impfactory: error:") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("argv", [
    ["blinkup", "decode", "{tmp}/missing.wav"],
    ["blinkup", "plot", "{tmp}/missing.wav", "-o", "{tmp}/x.png"],
    ["blinkup", "encode", "--ssid", "a", "--format", "samples", "-o", "{tmp}/no-dir/x.wav"],
    ["blinkup", "encode", "--ssid", "a", "--format", "samples", "-o", "{tmp}"],
    ["device", "blinkup", "{tmp}/missing.csv"],
    ["cloud", "devices", "--db", "{tmp}/missing.db"],
    ["line", "run", "--firmware", "{tmp}/missing.py"],
], ids=["decode-missing", "plot-missing", "encode-no-dir", "encode-to-a-dir",
        "device-blinkup-missing", "devices-missing-db", "line-missing-firmware"])
def test_missing_files_and_unwritable_outputs_are_bad_input(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    one_line_error(capsys)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_busy_api_port_is_refused_before_anything_starts(
        busy_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cloud.db"
    code = main(["cloud", "serve", "--api-port", str(busy_port), "--db", str(db),
                 "--owner", "owner:secret", "--broker", "embedded"])
    assert code == 2
    err = one_line_error(capsys)
    assert f"--api-port {busy_port}" in err and "broker" not in err
    assert not db.exists()  # no database opened, so no account created in it


def test_cloud_devices_says_when_there_are_none(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "empty.db"
    open_store(db).close()
    for extra in ([], ["--json"]):
        assert main(["cloud", "devices", "--db", str(db), *extra]) == 0
        out, err = capsys.readouterr()
        assert out == ""  # stdout stays a clean, empty list for scripts
        assert err.strip() == f"no devices in {db}"


def test_a_closed_pipe_is_not_an_error() -> None:
    """``impfactory blinkup encode ... | head -1``: no traceback, no error line, exit 0."""
    proc = subprocess.Popen([*CLI, "blinkup", "encode", "--ssid", "x", "--format", "samples",
                             "--sample-rate", "50000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away with 10 s x 50 kHz of samples still to come
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    assert first.startswith("# impfactory capture")
    assert err == ""


def test_fault_names_have_one_spelling_and_take_the_other_as_an_alias() -> None:
    parser = build_parser()
    for given in ("test_fail", "test-fail", "TEST-FAIL"):
        assert parser.parse_args(["device", "life", "--fault", given]).fault == "test_fail"
    assert parse_faults(["test-fail=0.5", "wrong-wifi=0.25"]) == {"test_fail": 0.5,
                                                                 "wrong_wifi": 0.25}
    with pytest.raises(FaultSpecError, match="known faults: misplaced, wrong_wifi, test_fail"):
        parse_faults(["bad-blinkup=0.1"])
    device = parser._subparsers._group_actions[0].choices["device"]
    life = device._subparsers._group_actions[0].choices["life"].format_help()
    assert "bad_blinkup" in life and "bad-blinkup" not in life
