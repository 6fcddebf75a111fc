"""A controller whose sample stream stops: streaming commands end with an error, never hang.

``capture``, ``blinkup`` and ``watch`` wait on samples (``capture`` and
``blinkup`` in the same loop, so each case runs one or two of them). When none come for
``STALL_S`` they ask the controller who it is: a controller that went silent
(muted here mid-stream) is reported as having stopped answering, one that
answers but never streams (a firmware bug, emulated by a controller whose
streams emit nothing) as sending no samples. Both within a few seconds, and
both with exit status 1: the port was right, the run failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from bench_targets import DarkBench

from impfactory.clock import RealClock
from impfactory.hw.bench import STALL_S
from impfactory.hw.bench_emulated import ControllerThread, EmulatedBenchController
from impfactory.tools import cli

COMMANDS = {
    "capture": ["capture", "--seconds", "20"],
    "watch": ["watch"],
    "blinkup": ["blinkup", "--ssid", "s", "--settle", "20"],
}


class NoStreams(EmulatedBenchController):
    """Accepts stream starts and never sends a sample (a controller firmware bug)."""

    def _emit_light_in(self, *args: Any) -> None: ...

    def _emit_status(self, *args: Any) -> None: ...


def serve(controller: EmulatedBenchController) -> Iterator[tuple[str, EmulatedBenchController]]:
    runner = ControllerThread(controller)
    path = runner.start()
    try:
        yield path, controller
    finally:
        runner.stop()


@pytest.fixture
def healthy() -> Iterator[tuple[str, EmulatedBenchController]]:
    yield from serve(EmulatedBenchController(DarkBench(), RealClock()))


@pytest.fixture
def streamless() -> Iterator[tuple[str, EmulatedBenchController]]:
    yield from serve(NoStreams(DarkBench(), RealClock()))


def run(path: str, command: str, tmp: Any) -> tuple[int, float]:
    argv = ["bench", *COMMANDS[command][:1], "--port", path, "--timeout", "0.2",
            *COMMANDS[command][1:]]
    if command == "capture":
        argv += ["-o", str(tmp / "x.csv")]
    started = time.monotonic()
    code = cli.main(argv)
    return code, time.monotonic() - started


@pytest.mark.parametrize("command", ["capture", "watch"])
def test_a_controller_that_goes_silent_mid_stream_is_reported(
    healthy: tuple[str, EmulatedBenchController], command: str, tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, controller = healthy

    def mute() -> None:
        controller.faults.muted = True

    timer = threading.Timer(0.5, mute)
    timer.start()
    try:
        code, took = run(path, command, tmp_path)
    finally:
        timer.cancel()
    assert code == 1  # it answered, then failed the run (2 is for bad input)
    assert "stopped answering" in capsys.readouterr().err
    assert took < 0.5 + STALL_S + 0.8 + 5  # stall, 4 tries of 0.2 s, a loaded machine
    assert not (tmp_path / "x.csv").exists()  # nothing half-written


@pytest.mark.parametrize("command", ["blinkup"])
def test_a_controller_that_never_streams_is_reported(
    streamless: tuple[str, EmulatedBenchController], command: str, tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, _ = streamless
    code, took = run(path, command, tmp_path)
    assert code == 1
    assert "answers but sent no samples" in capsys.readouterr().err
    assert took < STALL_S + 5
