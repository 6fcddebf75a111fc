"""A test build: the code ``impt test run`` would deploy for one test file, as parts.

impt builds each test file into one deployment. On the side the test file is for
(device or agent)::

    impUnit/promise.nut       the Promise the tests rely on       (impfactory's)
    impUnit/impunit.nut       ImpTestCase and the runner's glue   (impfactory's)
    <deviceFile|agentFile>    the code under test, if configured
    function __module_tests(ImpTestCase) {
    <the test file>           its classes land in the root table
    }
    __module_tests(__module_impUnit_exports.ImpTestCase);

and on the other side the other configured file and the test file's partner, if
any. Every part keeps its own name and lines (``require.Part``), so an error says
``tests/Basic.device.test.nut:45``. ``#require`` lines of the test file are lifted
out of the function, where a library's top level would otherwise become a
function body, and the test file keeps its line numbers (impt wants no
``#require`` in a test file; impfactory allows them, since ``--lib`` serves them).

impt runs Builder over the code; this build understands no Builder directive and
says so: a line starting ``@include``, ``@set``, ``@if`` ... is a ``BuildError``
naming the file and line, rather than a Squirrel syntax error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from impfactory.firmware.imptest.config import TestConfig, TestFile, source_file
from impfactory.firmware.imptest.errors import ImpTestError
from impfactory.squirrel.require import Part, require_lines

FRAMEWORK_FILES = ("promise.nut", "impunit.nut")
FRAMEWORK_PREFIX = "impUnit/"
WRAPPER = "__tests_module__"
MODULE_OPEN = "function __module_tests(ImpTestCase) {"
MODULE_CLOSE = "}\n__module_tests(__module_impUnit_exports.ImpTestCase);"
_BUILDER = re.compile(r"^[ \t]*@(include|set|if|elseif|else|endif|error|warning|macro|end)\b")


class BuildError(ImpTestError, ValueError):
    """A test file uses something this build cannot do (a Builder directive)."""


@dataclass(frozen=True)
class SideCode:
    """The parts one side (device or agent) runs, and the names of the user's files."""

    parts: tuple[Part, ...]
    has_tests: bool

    @property
    def empty(self) -> bool:
        return not self.parts


@dataclass(frozen=True)
class Build:
    """Both sides of one test file's build."""

    test: TestFile
    device: SideCode
    agent: SideCode

    @property
    def tested(self) -> SideCode:
        return self.agent if self.test.kind == "agent" else self.device

    @property
    def partner_side(self) -> SideCode:
        return self.device if self.test.kind == "agent" else self.agent


def framework_parts() -> tuple[Part, ...]:
    """impfactory's impUnit: the Promise and ImpTestCase, as parts of a build."""
    package = resources.files(__package__)
    return tuple(Part(package.joinpath(name).read_text(encoding="utf-8"),
                      FRAMEWORK_PREFIX + name) for name in FRAMEWORK_FILES)


def is_framework_file(name: str) -> bool:
    """True for the framework's own parts and the wrapper (never the user's lines)."""
    return name.startswith(FRAMEWORK_PREFIX) or name == WRAPPER


def read_source(path: Path, name: str) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as err:
        raise BuildError(f"cannot read {name}: {err.strerror or err}") from err
    for number, line in enumerate(text.split("\n"), start=1):
        m = _BUILDER.match(line)
        if m:
            raise BuildError(f"{name}:{number}: Builder's @{m.group(1)} is not supported by "
                             "impfactory test; inline the code or #require a library "
                             "from --lib")
    return text


def build(config: TestConfig, test: TestFile) -> Build:
    """The code for ``test`` on both sides (see the module doc)."""
    sides: dict[str, list[Part]] = {"device": [], "agent": []}
    for kind, parts in sides.items():
        path = source_file(config, kind)
        if path is not None:
            name = config.device_file if kind == "device" else config.agent_file
            assert name is not None
            parts.append(Part(read_source(path, name), name))
    tested = sides[test.kind]
    text = read_source(test.path, test.name)
    lifted = set(require_lines(text))
    lines = text.split("\n")
    for number in sorted(lifted):
        tested.append(Part(lines[number - 1], test.name, number))
    body = "\n".join("" if n in lifted else line for n, line in enumerate(lines, start=1))
    tested[:0] = framework_parts()
    tested += [Part(MODULE_OPEN, WRAPPER), Part(body, test.name), Part(MODULE_CLOSE, WRAPPER)]
    if test.partner is not None and test.partner_name is not None:
        other = "device" if test.kind == "agent" else "agent"
        sides[other].append(Part(read_source(test.partner, test.partner_name),
                                 test.partner_name))
    device = SideCode(tuple(sides["device"]), test.kind == "device")
    agent = SideCode(tuple(sides["agent"]), test.kind == "agent")
    return Build(test, device, agent)
