"""README.md runs: every command of its shell blocks, in order, as a new user types them.

The ``sh`` blocks are read from the README itself, so a renamed option or a
command that no longer works fails here. They run in one temporary directory
(``capture.wav`` made by one line is read by a later one), with these stand-ins:

* ``pip install -e .`` is not run (the suite runs from this checkout already):
  the rest of its line runs where the test extras (pytest, hypothesis,
  matplotlib ...) cannot be imported, as after a fresh ``pip install -e .``;
  ``pip install -e '.[test]' && python -m pytest -q`` is this suite itself, so
  it is only checked to be the command CI runs (``.ci/run``);
* commands that run until stopped (``cloud serve``, ``bench emulate``, with or
  without ``&``) start in the background; their first line names what later
  lines call ``http://127.0.0.1:8080/v5``, ``mqtt://127.0.0.1:PORT`` and
  ``/dev/pts/N`` (``--api-port 8080`` becomes a free port); at the end each is
  stopped with SIGTERM and must exit 0;
* long runs are made small (``SMALL``): fewer DUTs, a few seconds of watching;
* Electric Imp's example and libraries, which a line may take from
  ``../shared/imp-libraries`` beside the checkout, come from there (``from_shared``);
* ``http://127.0.0.1:9000/hook`` is a receiver the test runs on a free port,
  which must get one ``blessing`` webhook per DUT the floor blessed;
* ``impt auth login`` runs as impt runs it, through Electric Imp's
  ``imp-central-api`` under node (``tests/node``), when node is installed.

Every other command must exit 0 without a traceback; a comment that is a bare
hex string is the output the line must print.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from docshell import CLI, Hooks, Servers, ShellLine, fill, shell_lines, shrink
from without_extras import env_without_test_extras

sys.path.insert(0, str(Path(__file__).parent / "node"))
from impcentral_node import NodeClient, in_ci, library_missing, node_missing

from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEST_COMMAND = "pip install -e '.[test]' && python -m pytest -q"
#: Commands that serve until stopped, and what their first line says.
SERVERS = {("cloud", "serve"), ("bench", "emulate")}
#: Option values that keep long runs short: (subcommand words) -> {option: value}.
SMALL: dict[tuple[str, ...], dict[str, str]] = {
    ("demo",): {"--duts": "4"},
    ("line", "run"): {"--duts": "8"},
    # no kill here: each costs a cloud restart (and a killed cloud's webhook leases, 15 s,
    # before a cloud took its own back at restart); tests/test_crash.py kills clouds
    ("soak",): {"--duts": "8", "--cloud-kills": "0", "--broker-restarts": "0",
                "--fuzz-cases": "200"},
    ("floor",): {"--duts": "2"},
    ("bench", "watch"): {"--seconds": "3"},
    ("bench", "uart"): {"--seconds": "2"},
}
HOOK = "http://127.0.0.1:9000/hook"
SHARED = ROOT.parent / "shared" / "imp-libraries"
HEX = re.compile(r"[0-9a-f]{8,}")


def readme_lines() -> list[ShellLine]:
    return shell_lines(README)


def small(words: list[str]) -> list[str]:
    """``words`` with its ``SMALL`` values: a larger value lowered, a missing one added."""
    return shrink(words, SMALL, add_missing=True)


def from_shared(words: list[str], cwd: Path) -> list[str] | None:
    """A line that uses Electric Imp's files from ``../shared/imp-libraries`` (beside the
    checkout, as ``tests/test_factory_example.py`` finds them): the library path made
    absolute and a named example copied in with its WiFi placeholders filled; ``None``
    when they are not there (outside CI: the line is skipped; in CI: a failure)."""
    if not any("../shared/" in w for w in words):
        return words
    if not SHARED.is_dir():
        assert not in_ci(), f"{SHARED} is missing in CI"
        return None
    out = [w.replace("../shared/imp-libraries", str(SHARED)) for w in words]
    for i, word in enumerate(out[:-1]):
        if word == "--firmware" and not (cwd / out[i + 1]).exists():
            found = sorted(SHARED.glob(f"*/examples/{out[i + 1]}"))
            assert found, f"{out[i + 1]} is neither in the repository nor in {SHARED}"
            text = found[0].read_text(encoding="utf-8")
            (cwd / out[i + 1]).write_text(text.replace(
                "<FACTORY NETWORK NAME>", FACTORY_SSID).replace(
                "<FACTORY NETWORK PASSWORD>", FACTORY_PASSWORD), encoding="utf-8")
    return out


@dataclass
class Session:
    """What the README's lines share: a directory, stand-ins, background servers."""

    cwd: Path
    hooks: Hooks
    names: dict[str, str] = field(default_factory=dict)
    servers: Servers = field(init=False)
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.servers = Servers(self.cwd)

    def fill(self, words: list[str]) -> list[str]:
        """Stand-ins for the README's addresses and paths."""
        return fill(words, self.names)

    def serve(self, words: list[str], env: dict[str, str] | None) -> None:
        self.servers.start(words, self.cwd, self.names, env)

    def impt(self, words: list[str]) -> None:
        """impt's commands through its library under node; only ``auth login`` is shown."""
        assert words[1:3] == ["auth", "login"], f"no stand-in for `{shlex.join(words)}`"
        missing = node_missing() or library_missing()
        if missing:
            self.skipped.append(f"{shlex.join(words)} ({missing})")
            return
        opts = dict(zip(words[3::2], words[4::2], strict=True))
        with NodeClient(opts["--endpoint"]) as imp:
            answer = imp("auth.login", opts["--user"], opts["--pwd"])
        assert answer.get("access_token"), answer

    def stop(self) -> list[tuple[str, int]]:
        return self.servers.stop()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    hooks = Hooks().start()
    run = Session(tmp_path, hooks, {HOOK: hooks.url})
    try:
        yield run
    finally:
        run.stop()
        hooks.close()


def ci_commands() -> list[str]:
    """``.ci/run``'s command lines, with ``python3 -m pip install -q`` read as ``pip install``."""
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    return [line.replace("python3 -m pip install -q", "pip install").replace("python3", "python")
            for line in text.splitlines() if line and not line.startswith("#")]


def test_the_readme_shows_the_quick_start_and_ci_runs_its_test_command() -> None:
    texts = [line.text for line in readme_lines()]
    assert texts[:2] == ["pip install -e . && impfactory demo", TEST_COMMAND]
    assert TEST_COMMAND in ci_commands()


@pytest.mark.slow
def test_every_readme_command_runs(session: Session, tmp_path: Path) -> None:
    bare = env_without_test_extras(tmp_path / "bare-site")
    for line in readme_lines():
        env = None  # this suite's environment: every extra installed
        for words in line.chain:
            if words[:3] == ["pip", "install", "-e"]:
                env = bare if words[3:] == ["."] else None
                continue
            if words == ["python", "-m", "pytest", "-q"]:
                assert line.text == TEST_COMMAND  # this suite; CI runs it (test above)
                continue
            if words[0] == "impt":
                words = session.fill(words)
                session.impt(words)
                session.ran.append(shlex.join(words))
                continue
            assert words[0] == "impfactory", line.text
            background = words[-1] == "&"
            shared = from_shared(small([w for w in words if w != "&"]), session.cwd)
            if shared is None:
                session.skipped.append(f"{shlex.join(words)} (no {SHARED})")
                continue
            words = session.fill(shared)
            if background or tuple(words[1:3]) in SERVERS:
                session.serve(words, env)
            else:
                result = subprocess.run([*CLI, *words[1:]], capture_output=True, text=True,
                                        cwd=session.cwd, env=env, timeout=300)
                assert result.returncode == 0, (line.text, result.stdout[-3000:],
                                                result.stderr[-3000:])
                assert "Traceback" not in result.stderr, line.text
                if HEX.fullmatch(line.comment):
                    assert result.stdout.strip() == line.comment, line.text
                if words[1] == "floor":
                    blessed = int(result.stdout.strip().splitlines()[-1].split()[0])
                    assert blessed == int(words[words.index("--duts") + 1]), result.stdout
                    assert session.hooks.wait_for("blessing", blessed) >= blessed
            session.ran.append(shlex.join(words))
    stopped = session.stop()
    assert stopped and all(code == 0 for _, code in stopped), stopped
    every = sum(len([w for w in line.chain if w[0] in ("impfactory", "impt")])
                for line in readme_lines())
    assert len(session.ran) + len(session.skipped) == every, session.ran
    for made in ("capture.wav", "signal.png", "led.png", "fixture.csv", "impcloud.db"):
        assert (tmp_path / made).is_file(), made
    assert (tmp_path / "impfactory-report" / "report.html").is_file()
    assert (tmp_path / "out" / "junit.xml").is_file()
