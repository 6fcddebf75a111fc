"""What a test run found: one result per method run, per session (test file), per run.

impUnit's counting is kept: ``tests`` counts test methods run (not ``setUp`` or
``tearDown``), ``failures`` counts every method that failed (``setUp`` and
``tearDown`` included), ``assertions`` the assertions made (for an asynchronous
test, those made before it settled or timed out). A session also fails when it
cannot run its tests at all (``error``: the build does not compile, its top
level throws, the watchdog stopped the code); a skipped session (``skipped``:
why) neither passes nor fails.

``to_dict`` gives the JSON ``impfactory test --json`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Location:
    """A line of the user's code."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class StepResult:
    """One method of a test case, run: ``setUp``, a test, or ``tearDown``."""

    case: str
    method: str
    passed: bool = False
    message: str | None = None  # the value shown after "Success: ", or the failure
    location: Location | None = None  # where a failure was raised
    info: list[str] = field(default_factory=list)  # this.info() messages, as shown
    assertions: int = 0
    device_s: float = 0.0  # device-clock seconds it took

    @property
    def name(self) -> str:
        return f"{self.case}::{self.method}()"

    @property
    def is_test(self) -> bool:
        return self.method not in ("setUp", "tearDown")

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "method": self.method, "name": self.name,
                "kind": self.method if not self.is_test else "test",
                "status": "passed" if self.passed else "failed", "message": self.message,
                "location": None if self.location is None else
                {"file": self.location.file, "line": self.location.line},
                "info": list(self.info), "assertions": self.assertions,
                "device_s": round(self.device_s, 6)}


@dataclass
class SessionResult:
    """One test file run on one emulated imp (impt's test session)."""

    file: str
    kind: str  # the side the tests ran on: "device" or "agent"
    name: str  # the session's name
    partner: str | None = None
    board: str | None = None
    device_id: str | None = None
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None  # the session could not run (on) its tests
    error_location: Location | None = None
    skipped: str | None = None  # why it was not run
    stopped: bool = False  # stopOnFail ended it early
    sides: list[str] = field(default_factory=list)  # what ran: "device", "agent"
    logs: list[str] = field(default_factory=list)  # the device log
    agent_logs: list[str] = field(default_factory=list)  # the agent log
    device_s: float = 0.0
    wall_s: float = 0.0

    @property
    def tests(self) -> int:
        return sum(1 for s in self.steps if s.is_test)

    @property
    def failures(self) -> int:
        return sum(1 for s in self.steps if not s.passed)

    @property
    def assertions(self) -> int:
        return sum(s.assertions for s in self.steps)

    @property
    def passed(self) -> bool:
        return self.skipped is None and self.error is None and self.failures == 0

    @property
    def failed(self) -> bool:
        return self.skipped is None and not self.passed

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "kind": self.kind, "session": self.name,
                "partner": self.partner, "board": self.board, "device_id": self.device_id,
                "status": "skipped" if self.skipped else "passed" if self.passed else "failed",
                "tests": self.tests, "assertions": self.assertions, "failures": self.failures,
                "error": self.error,
                "error_location": None if self.error_location is None else
                str(self.error_location),
                "skipped": self.skipped, "stopped_on_failure": self.stopped,
                "sides": list(self.sides), "steps": [s.to_dict() for s in self.steps],
                "log": list(self.logs), "agent_log": list(self.agent_logs),
                "device_s": round(self.device_s, 6), "wall_s": round(self.wall_s, 6)}


@dataclass
class RunResult:
    """Every session of one ``impfactory test``."""

    sessions: list[SessionResult] = field(default_factory=list)
    config: str | None = None  # the .impt.test used, if any
    wall_s: float = 0.0

    @property
    def tests(self) -> int:
        return sum(s.tests for s in self.sessions)

    @property
    def failures(self) -> int:
        return sum(s.failures for s in self.sessions)

    @property
    def assertions(self) -> int:
        return sum(s.assertions for s in self.sessions)

    @property
    def passed(self) -> bool:
        return not any(s.failed for s in self.sessions)

    def failed_steps(self) -> list[tuple[SessionResult, StepResult]]:
        return [(s, step) for s in self.sessions for step in s.steps if not step.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "tests": self.tests, "assertions": self.assertions,
                "failures": self.failures,
                "sessions_failed": sum(1 for s in self.sessions if s.failed),
                "sessions_skipped": sum(1 for s in self.sessions if s.skipped),
                "config": self.config, "wall_s": round(self.wall_s, 6),
                "sessions": [s.to_dict() for s in self.sessions]}
