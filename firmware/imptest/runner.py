"""A whole ``impfactory test`` run: find the test files, build and run each in turn.

As ``impt test run`` does: the configured device and agent files must exist
(checked before anything runs), the test files are found by the configuration's
patterns (or given), each becomes a build and a session on a fresh emulated imp,
one after the other; with ``stopOnFail`` the first failure ends the run. A file
that cannot be built (a Builder directive) fails its session and the run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from impfactory.firmware.imptest.agent_target import AgentFactory
from impfactory.firmware.imptest.build import BuildError, build
from impfactory.firmware.imptest.config import (
    Selection,
    TestConfig,
    TestFile,
    find_test_files,
    source_file,
)
from impfactory.firmware.imptest.device_target import board_hardware
from impfactory.firmware.imptest.results import RunResult, SessionResult
from impfactory.firmware.imptest.session import Listener, Session, SessionOptions, session_name


class RunListener(Listener):
    """A session listener that also hears the run begin and end."""

    def run_started(self, config: TestConfig, files: list[TestFile],
                    sources: dict[str, Path | None], options: SessionOptions) -> None:
        """The files are found and the sources checked; nothing has run yet."""

    def run_finished(self, result: RunResult) -> None:
        """Every session is over."""


@dataclass(frozen=True)
class RunRequest:
    """What to run: a configuration, optionally explicit files and a selection."""

    config: TestConfig
    files: tuple[str, ...] = ()
    selection: Selection = field(default_factory=Selection)
    options: SessionOptions = field(default_factory=SessionOptions)


def run(request: RunRequest, listener: RunListener | None = None,
        timer: Callable[[], float] = time.monotonic,
        agent_factory: AgentFactory | None = None) -> RunResult:
    """Run every selected test file; the result says what passed. ``agent_factory``
    makes each session's agent side (default: ``agent_target``'s stand-in)."""
    started = timer()
    config = request.config
    board_hardware(request.options.board, request.options.faults)  # a bad board fails here
    sources = {kind: source_file(config, kind) for kind in ("agent", "device")}
    files = find_test_files(config, request.selection, request.files)
    if listener is not None:
        listener.run_started(config, files, sources, request.options)
    result = RunResult(config=None if config.source is None else str(config.source))
    for test in files:
        session = _run_one(config, test, request, listener, timer, agent_factory)
        result.sessions.append(session)
        if request.options.stop_on_fail and session.failed:
            break
    result.wall_s = timer() - started
    if listener is not None:
        listener.run_finished(result)
    return result


def _run_one(config: TestConfig, test: TestFile, request: RunRequest,
             listener: Listener | None, timer: Callable[[], float],
             agent_factory: AgentFactory | None) -> SessionResult:
    try:
        code = build(config, test)
    except BuildError as err:
        failed = SessionResult(test.name, test.kind, session_name(test.name),
                               partner=test.partner_name, board=request.options.board,
                               error=str(err))
        if listener is not None:
            listener.session_started(failed)
            listener.session_error(str(err))
            listener.session_finished(failed)
        return failed
    return Session(code, request.options, request.selection, listener, timer,
                   agent_factory).run()


def names(files: Iterable[TestFile]) -> list[str]:
    """Test files as impt lists them: ``name (partner)``."""
    return [f"{f.name} ({f.partner_name})" if f.partner_name else f.name for f in files]
