"""``impfactory bench flash`` and docs/bench.md's path from a bare Pico to ``bench probe``.

No board is needed: a stand-in ``mpremote`` on PATH (written below) does what
mpremote does to a board's filesystem, copying into a directory, and records its
command line. The section's ``probe`` is then answered by the firmware *in that
directory*, run by the emulated controller with the settings file flash put
there, so the files a real flash would copy are the files that answer.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from bench_targets import DarkBench

from impfactory.hw.bench_emulated import ControllerThread, EmulatedBenchController
from impfactory.hw.controller import FIRMWARE_DIR, FIRMWARE_FILES, flash
from impfactory.tools import cli

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bench.md"
CLI = [sys.executable, "-m", "impfactory.tools.cli"]
BOARD_PORT = "/dev/ttyACM0"

FAKE_MPREMOTE = '''#!{python}
"""A stand-in for mpremote: a 'board' is the directory $FAKE_PICO."""
import json, os, shutil, sys
board = os.environ["FAKE_PICO"]
with open(os.path.join(board, "argv.json"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
segments, seg = [], []
for word in sys.argv[1:]:
    if word == "+":
        segments.append(seg); seg = []
    else:
        seg.append(word)
segments.append(seg)
for seg in segments:
    if seg[0] == "connect":  # connect PORT, then maybe a command in the same segment
        if seg[1] != "{port}":
            sys.exit("mpremote: failed to access " + seg[1] + " (it may be in use)")
        seg = seg[2:]
    if not seg:
        continue
    if seg[:2] == ["fs", "cp"]:
        *sources, dest = seg[2:]
        for src in sources:
            name = os.path.basename(src) if dest == ":" else dest[1:]
            shutil.copy(src, os.path.join(board, name))
    elif seg == ["reset"]:
        open(os.path.join(board, "reset"), "w").close()
    else:
        sys.exit("mpremote: unknown command " + " ".join(seg))
'''


@pytest.fixture
def pico(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty 'board' and a stand-in mpremote on PATH that flashes it."""
    board = tmp_path / "pico"
    board.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "mpremote"
    script.write_text(FAKE_MPREMOTE.format(python=sys.executable, port=BOARD_PORT))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PICO", str(board))
    return board


def flash_argv(board: Path) -> list[list[str]]:
    return [json.loads(line) for line in (board / "argv.json").read_text().splitlines()]


def test_dry_run_prints_the_exact_mpremote_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "flash", "--port", BOARD_PORT, "--dry-run"]) == 0
    words = shlex.split(capsys.readouterr().out)
    assert words[:3] == ["mpremote", "connect", BOARD_PORT]
    assert words[3:5] == ["fs", "cp"]
    files = words[5:5 + len(FIRMWARE_FILES)]
    assert files == [str(FIRMWARE_DIR / name) for name in FIRMWARE_FILES]
    rest = words[5 + len(FIRMWARE_FILES):]
    assert rest[0] == ":" and rest[1:4] == ["+", "fs", "cp"]
    assert rest[4].endswith("/bench_config.json") and rest[5:] == [":bench_config.json", "+",
                                                                     "reset"]
    assert files[-1].endswith("main.py")  # copied last: it runs at the next boot


def test_flash_copies_the_firmware_and_resets_the_board(pico: Path) -> None:
    assert cli.main(["bench", "flash", "--port", BOARD_PORT]) == 0
    for name in FIRMWARE_FILES:
        assert (pico / name).read_bytes() == (FIRMWARE_DIR / name).read_bytes()
    assert json.loads((pico / "bench_config.json").read_text()) == {}  # defaults, nothing stale
    assert (pico / "reset").exists()
    assert len(flash_argv(pico)) == 1  # one mpremote run


def test_a_board_that_is_not_there_is_reported(pico: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "flash", "--port", "/dev/ttyACM7"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("impfactory: error: mpremote could not flash /dev/ttyACM7")
    assert "failed to access /dev/ttyACM7" in err


def test_without_mpremote_flash_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(flash, "_module_available", lambda: False)
    assert cli.main(["bench", "flash", "--port", BOARD_PORT]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("impfactory: error: mpremote is not installed (it copies the "
                           "firmware to the board): pip install 'impfactory[bench]'")
    # a dry run needs no mpremote
    assert cli.main(["bench", "flash", "--port", BOARD_PORT, "--dry-run"]) == 0


@pytest.mark.parametrize(("settings", "why"), [
    ('{"led_pin": 30}', "led_pin 30 is not an RP2040 GPIO"),
    ('{"led_pin": 16}', "GPIO 16 is given two jobs"),
    ('{"led_pn": 14}', "unknown setting led_pn"),
    ('{"name": 7}', "name must be a str"),
    ('[1, 2]', "expected a JSON object"),
    ("{", "are not JSON"),
])
def test_bad_settings_are_refused_before_anything_is_copied(
    pico: Path, tmp_path: Path, settings: str, why: str, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "bench_config.json"
    path.write_text(settings)
    assert cli.main(["bench", "flash", "--port", BOARD_PORT, "--config", str(path)]) == 2
    assert why in capsys.readouterr().err
    assert not (pico / "argv.json").exists()


def test_a_missing_settings_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "flash", "--port", BOARD_PORT, "--config", "/no/such.json",
                     "--dry-run"]) == 2
    assert "cannot read controller settings /no/such.json" in capsys.readouterr().err


# ---------------------------------------------------------------- docs/bench.md's path


def pico_section() -> str:
    text = DOC.read_text()
    start = text.index("\n## From a bare Pico to `bench probe`\n")
    return text[start:text.index("\n## ", start + 5)]


def test_the_bare_pico_section_runs(pico: Path, tmp_path: Path) -> None:
    section = pico_section()
    settings = json.loads(re.findall(r"```json\n(.*?)```", section, re.S)[0])
    (tmp_path / "bench_config.json").write_text(json.dumps(settings))
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    commands = [shlex.split(line) for block in re.findall(r"```shell\n(.*?)```", section, re.S)
                for line in block.splitlines() if line.strip()]
    ran = []
    for words in commands:
        if words[:2] == ["pip", "install"]:
            extra = re.fullmatch(r"impfactory\[(\w+)\]", words[2])
            assert extra and "mpremote" in " ".join(extras[extra.group(1)]), words
            continue
        assert words[:2] == ["impfactory", "bench"], words
        if words[2] == "flash":
            result = subprocess.run([*CLI, *words[1:]], capture_output=True, text=True,
                                    cwd=tmp_path, timeout=60)
            assert result.returncode == 0, result.stderr
            ran.append("flash")
            continue
        assert words[2] == "probe" and BOARD_PORT in words
        # the board as flashed: its files, its settings file
        given = json.loads((pico / "bench_config.json").read_text())
        controller = EmulatedBenchController(DarkBench(), firmware_dir=pico, config=given)
        with ControllerThread(controller) as port:
            argv = [port if w == BOARD_PORT else w for w in words[1:]]
            result = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["protocol_version"] == 1
        assert doc["name"] == given.get("name", "impfactory emulated bench")
        assert "status_sense" in doc["capabilities"]
        ran.append("probe")
    assert ran == ["flash", "probe", "flash", "probe"]
    assert json.loads((pico / "bench_config.json").read_text()) == settings


def test_emulate_runs_a_boards_settings(tmp_path: Path) -> None:
    """``bench emulate --config`` wires the emulated bench as the settings name the pins."""
    path = tmp_path / "bench_config.json"
    path.write_text(json.dumps({"name": "bench 2", "led_pin": 14, "power_pin": 18}))
    proc = subprocess.Popen([*CLI, "bench", "emulate", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().split(" ", 1)[1].strip()
        probe = subprocess.run([*CLI, "bench", "probe", "--port", port, "--json"],
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr
        assert json.loads(probe.stdout)["name"] == "bench 2"
        power = subprocess.run([*CLI, "bench", "power", "--port", port, "cycle"],
                               capture_output=True, text=True, timeout=60)
        assert power.returncode == 0, power.stderr
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    path.write_text('{"power_pin": 99}')
    bad = subprocess.run([*CLI, "bench", "emulate", "--config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "power_pin 99 is not an RP2040 GPIO" in bad.stderr
