"""``.impt.test``: the test configuration ``impt test create`` writes, read as impt reads it.

The file is JSON in the *test home*, the folder the tests run from::

    {"testFiles": ["*.test.nut", "tests/**/*.test.nut"],   test file patterns (OR)
     "deviceFile": "HTS221.device.lib.nut",                 code under test, device side
     "agentFile": "MyLib.agent.lib.nut",                    ... agent side (either, both, none)
     "timeout": 30, "stopOnFail": false,                    per-test timeout (s); stop at a failure
     "allowDisconnect": false, "builderCache": false,
     "deviceGroupId": "...", "deviceGroupName": "...",      the real devices impt would use
     "githubConfig": "...", "builderConfig": "..."}

Paths are relative to the test home; patterns are globs from there (``**``: any
depth). Defaults are impt's: the two patterns above, no device or agent file, a
30 s timeout, ``stopOnFail`` and ``allowDisconnect`` false. What does not apply
to an emulated run is accepted and reported as ignored: the device group (every
test file runs on a fresh emulated imp instead), ``builderCache`` and
``githubConfig`` (nothing is fetched). ``allowDisconnect`` is kept: an emulated
imp never disconnects, so it changes nothing.

A test file holds agent code when ``agent`` is a word of its name, else device
code (impt's rule), and its *partner*, ``X.agent.nut`` beside ``X.device.test.nut``
(or the other way round), runs on the other side when it exists.

``select`` narrows a run as ``impt test run --tests`` does:
``[testFile][:testCase][::testMethod]``, the file part a regular expression
searched in the file's name, the others exact names.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from impfactory.firmware.imptest.errors import TestConfigError, TestFilesError

CONFIG_NAME = ".impt.test"
DEFAULT_TEST_FILES = ("*.test.nut", "tests/**/*.test.nut")
DEFAULT_TIMEOUT_S = 30.0
#: Keys of impt's configuration that mean nothing to an emulated run.
IGNORED_KEYS = ("deviceGroupId", "deviceGroupName", "builderCache", "githubConfig")
KNOWN_KEYS = frozenset({"testFiles", "deviceFile", "agentFile", "timeout", "stopOnFail",
                        "allowDisconnect", "builderConfig", *IGNORED_KEYS})
_AGENT = re.compile(r"\bagent\b", re.IGNORECASE)
_PARTNERED = re.compile(r"\.(agent|device)\.test\.nut$", re.IGNORECASE)


@dataclass(frozen=True)
class TestConfig:
    """One test project's settings (see the module doc)."""

    __test__ = False

    home: Path
    test_files: tuple[str, ...] = DEFAULT_TEST_FILES
    device_file: str | None = None
    agent_file: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    stop_on_fail: bool = False
    allow_disconnect: bool = False
    builder_config: str | None = None
    source: Path | None = None  # the file read, if any
    ignored: tuple[str, ...] = ()  # keys given that do not apply here
    unknown: tuple[str, ...] = ()  # keys impt does not know either

    def with_options(self, **changes: Any) -> TestConfig:
        """This configuration with command-line options applied (``None``: keep)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def path(self, name: str) -> Path:
        """A path named in the configuration, from the test home."""
        return (self.home / name).resolve()


@dataclass(frozen=True)
class TestFile:
    """One test file found: its name as shown (from the test home), where it is,
    which side it runs on, and its partner file on the other side."""

    __test__ = False

    name: str
    path: Path
    kind: str  # "device" or "agent"
    partner_name: str | None = None
    partner: Path | None = None


@dataclass(frozen=True)
class Selection:
    """``--tests [testFile][:testCase][::testMethod]`` taken apart."""

    file: str = ""
    case: str = ""
    method: str = ""
    _file_re: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def wants_file(self, name: str) -> bool:
        return self._file_re is None or self._file_re.search(name) is not None

    def wants(self, case: str, method: str | None = None) -> bool:
        """``method`` None: the case at all (its setUp and tearDown run with it)."""
        if self.case and case != self.case:
            return False
        return method is None or not self.method or method == self.method


def parse_selection(text: str | None) -> Selection:
    """``--tests`` as impt reads it."""
    if not text:
        return Selection()
    file_part, colon, rest = text.partition(":")
    case = method = ""
    if colon:
        rest = ":" + rest
        at = rest.rfind("::")
        if at >= 0:
            method, case = rest[at + 2:], rest[1:at]
        else:
            case = rest[1:]
    file_part = file_part.replace("\\", "/")
    try:
        pattern = re.compile(file_part) if file_part else None
    except re.error as err:
        raise TestConfigError(f"--tests {text!r}: the file part is not a regular expression: "
                              f"{err}") from err
    return Selection(file_part, case, method, pattern)


def load_config(path: str | Path) -> TestConfig:
    """Read ``.impt.test`` at ``path`` (a file, or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise TestConfigError(f"cannot read the test configuration {path}: "
                              f"{err.strerror or err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TestConfigError(f"{path}: not JSON: {err}") from err
    if not isinstance(data, dict):
        raise TestConfigError(f"{path}: expected a JSON object")
    return config_from_dict(data, path.resolve().parent, path)


def config_from_dict(data: Mapping[str, Any], home: Path, source: Path | None = None
                     ) -> TestConfig:
    """A configuration from ``.impt.test``'s JSON object; errors name the key."""
    where = str(source or CONFIG_NAME)
    patterns = data.get("testFiles", list(DEFAULT_TEST_FILES))
    if isinstance(patterns, str):
        patterns = [patterns]
    if (not isinstance(patterns, list) or not patterns
            or not all(isinstance(p, str) and p for p in patterns)):
        raise TestConfigError(f"{where}: testFiles must be a list of file name patterns")
    config = TestConfig(
        home=home,
        test_files=tuple(patterns),
        device_file=_optional_text(data, "deviceFile", where),
        agent_file=_optional_text(data, "agentFile", where),
        timeout_s=_timeout(data.get("timeout", DEFAULT_TIMEOUT_S), where),
        stop_on_fail=_flag(data, "stopOnFail", where),
        allow_disconnect=_flag(data, "allowDisconnect", where),
        builder_config=_optional_text(data, "builderConfig", where),
        source=source,
        ignored=tuple(k for k in IGNORED_KEYS if k in data),
        unknown=tuple(sorted(k for k in data if k not in KNOWN_KEYS)),
    )
    return config


def _optional_text(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TestConfigError(f"{where}: {key} must be a file name, not {value!r}")
    return value


def _flag(data: Mapping[str, Any], key: str, where: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise TestConfigError(f"{where}: {key} must be true or false, not {value!r}")
    return value


def _timeout(value: Any, where: str) -> float:
    if isinstance(value, str):  # impt stores what the command line gave it
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise TestConfigError(f"{where}: timeout must be a positive number of seconds, "
                              f"not {value!r}")
    return float(value)


def check_timeout(value: float) -> float:
    """A timeout given on the command line."""
    return _timeout(value, "--timeout")


# --- finding the files ---------------------------------------------------------------------


def source_file(config: TestConfig, kind: str) -> Path | None:
    """The device or agent file under test, checked to exist."""
    name = config.device_file if kind == "device" else config.agent_file
    if name is None:
        return None
    path = config.path(name)
    if not path.is_file():
        label = "Device" if kind == "device" else "Agent"
        raise TestFilesError(f'{label} source file "{name}" not found (in {config.home})')
    return path


def find_test_files(config: TestConfig, selection: Selection | None = None,
                    explicit: Iterable[str | Path] = ()) -> list[TestFile]:
    """The test files to run: ``explicit`` ones (paths as given), else those the
    configuration's patterns match under its home, in name order; each once."""
    selection = selection or Selection()
    found: dict[Path, str] = {}
    explicit = list(explicit)
    if explicit:
        for item in explicit:
            path = Path(item)
            if not path.is_absolute():
                path = Path.cwd() / path
            if not path.is_file():
                raise TestFilesError(f"test file {item} not found")
            found.setdefault(path.resolve(), _display(path.resolve(), config.home))
    else:
        for pattern in config.test_files:
            if Path(pattern).is_absolute():
                raise TestConfigError(f"testFiles pattern {pattern!r} must be relative to "
                                      "the test home")
            for path in sorted(config.home.glob(pattern)):
                if path.is_file():
                    found.setdefault(path.resolve(), _display(path, config.home))
    files = [_test_file(name, path) for path, name in found.items()
             if selection.wants_file(name)]
    if not files:
        what = "the given files" if explicit else ", ".join(config.test_files)
        raise TestFilesError(f"No test files found ({what}, in {config.home})")
    return sorted(files, key=lambda f: f.name) if not explicit else files


def _display(path: Path, home: Path) -> str:
    try:
        return path.resolve().relative_to(home.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _test_file(name: str, path: Path) -> TestFile:
    kind = "agent" if _AGENT.search(name) else "device"
    if _PARTNERED.search(path.name):
        partner_name = _PARTNERED.sub("", name) + (".device" if kind == "agent" else ".agent") \
            + ".nut"
        partner = path.with_name(_PARTNERED.sub("", path.name)
                                 + (".device" if kind == "agent" else ".agent") + ".nut")
        if partner.is_file():
            return TestFile(name, path, kind, partner_name, partner)
    return TestFile(name, path, kind)
