"""The run as ``impt test run`` prints it, line by line as it happens.

impt's layout, kept: a ``[info]`` line for the start, then ``[+T/Ds kind]``
(seconds since the first line and since the previous one, wall time) before each
message; ``[test]`` lines for each method (``Case::method()``, then
``Success[: value]`` or ``Failure: message``), ``this.info()`` messages as JSON,
``Device Runtime Error: ...`` for each error line of the device log, the
session's ``Tests: n, Assertions: n, Failures: n`` and ``Session "x"
succeeded|failed``, and at the end the summary impt prints, where each failure
says ``at file:line`` (impt says only the file). What impt says about device
groups and deployments becomes what the emulated run uses: the board, the
emulated imp, the faults injected.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from impfactory.firmware.imptest.config import TestConfig, TestFile
from impfactory.firmware.imptest.results import RunResult, SessionResult, StepResult
from impfactory.firmware.imptest.runner import RunListener, names
from impfactory.firmware.imptest.session import SessionOptions

SUMMARY_HEADER = "-------------TEST SUMMARY-------------"
SUMMARY_FOOTER = "--------------------------------------"


def started_at(now: datetime.datetime) -> str:
    """impt's ``dd mmm yyyy HH:MM:ss Z``: ``09 Mar 2018 18:58:31 GMT+0300``."""
    return now.strftime("%d %b %Y %H:%M:%S GMT%z")


class ImptPrinter(RunListener):
    """A run listener that writes impt's output to ``out``."""

    def __init__(self, out: TextIO, timer: Callable[[], float] = time.monotonic,
                 today: Callable[[], datetime.datetime] = lambda: datetime.datetime.now()
                 .astimezone()) -> None:
        self.out = out
        self.timer = timer
        self.today = today
        self._first: float | None = None
        self._last = 0.0
        self._failures: list[tuple[str, str, str]] = []  # (what, where, error)

    # --- lines ----------------------------------------------------------------------

    def _print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _log(self, kind: str, message: str) -> None:
        now = self.timer()
        if self._first is None:
            self._first = now
            stamp = ""
        else:
            stamp = f"+{now - self._first:.2f}/{now - self._last:.2f}s "
        self._last = now
        self._print(f"[{stamp}{kind}] {message}")

    def _info(self, message: str) -> None:
        self._log("info", message)

    def _test(self, message: str) -> None:
        self._log("test", message)

    # --- the run ----------------------------------------------------------------------

    def run_started(self, config: TestConfig, files: list[TestFile],
                    sources: dict[str, Path | None], options: SessionOptions) -> None:
        self._info(f"Started at {started_at(self.today())}")
        self._info(f"Found {len(files)} test file(s):\n\t" + "\n\t".join(names(files)))
        if config.agent_file:
            self._info(f"Using agent source file: {config.agent_file}")
        else:
            self._info("Have no agent source file, using blank")
        if config.device_file:
            self._info(f"Using device source file: {config.device_file}")
        else:
            self._info("Have no device source file, using blank")
        if config.ignored:
            self._info(f"Not used by an emulated run: {', '.join(config.ignored)}")
        if config.unknown:
            self._log("warning", f"Unknown keys in {config.source or '.impt.test'}: "
                                 f"{', '.join(config.unknown)}")
        faults = f", faults: {', '.join(options.faults)}" if options.faults else ""
        self._info(f"Using board {options.board} (emulated){faults}")

    def session_started(self, session: SessionResult) -> None:
        self._info(f'Using {session.kind} test file "{session.file}"')
        self._print()
        self._test(f'Starting test session "{session.name}"')
        if session.kind == "agent" and "device" not in session.sides:
            self._info("Test session is agent-only")
        if session.device_id:
            self._info(f"Using device emulated-imp [{session.device_id}] (1/1)")
        self._info(f'Using {session.kind} test file "{session.file}"')

    def step_started(self, name: str) -> None:
        self._test(name)

    def info(self, text: str) -> None:
        self._test(text)

    def step_finished(self, step: StepResult) -> None:
        if step.passed:
            self._test("Success" if step.message is None else f"Success: {step.message}")
        else:
            self._test(f"Failure: {step.message}")

    def runtime_error(self, side: str, text: str) -> None:
        self._test(f"{side.capitalize()} Runtime Error: {text}")

    def notice(self, text: str) -> None:
        self._info(text)

    def session_error(self, text: str) -> None:
        self._log("error", text)

    def session_finished(self, session: SessionResult) -> None:
        if session.skipped is not None:
            self._info(f'Skip "{session.file}" testing: {session.skipped}')
            return
        for step in session.steps:
            if not step.passed:
                where = str(step.location) if step.location is not None else session.file
                self._failures.append((step.name, where, step.message or ""))
        if session.error is not None:
            where = str(session.error_location) if session.error_location else session.file
            self._failures.append((f'Session "{session.name}"', where, session.error))
        if session.error is None or session.steps:
            self._test(f"Tests: {session.tests}, Assertions: {session.assertions}, "
                       f"Failures: {session.failures}")
        state = "succeeded" if session.passed else "failed"
        self._test(f'Session "{session.name}" {state}')

    def run_finished(self, result: RunResult) -> None:
        self._print()
        self._info(SUMMARY_HEADER)
        self._print()
        for n, (what, where, error) in enumerate(self._failures, start=1):
            self._info(f"{n}) {what}")
            self._info(f"at {where}")
            self._info(f"Error: {error}")
            self._print()
        self._info(f"Tests: {result.tests}, Assertions: {result.assertions}, "
                   f"Failures: {result.failures}")
        self._info(SUMMARY_FOOTER)
        self._print()
        self._info("Testing succeeded" if result.passed else "Testing failed")
