"""docs/guide.md runs: every command of its shell blocks, in order, as a user types them.

The ``sh`` blocks are read from the guide itself (as tests/test_readme.py reads the
README), so a renamed option or a step that no longer works fails here. They run
in a temporary directory holding a copy of ``examples/`` (the guide's first step
is ``cd examples/smart-lamp``; ``cd`` moves the session there), with these
stand-ins:

* ``impfactory cloud serve ... &`` starts in the background; its first line names
  what later lines call ``http://127.0.0.1:8080/v5`` and ``mqtt://127.0.0.1:PORT``
  (``--api-port 8080`` becomes a free port); at the end it is stopped with SIGTERM
  and must exit 0;
* ``impt`` commands run as impt runs them: the ``imp-central-api`` calls impt makes
  (``tests/node/impt_flow.Impt``), under node, logged in by ``impt auth login``; a
  ``# shows N devices`` comment is checked against the answer;
* ``http://127.0.0.1:9000/hook`` is a receiver the test runs on a free port, which
  must get one ``blessing`` webhook for each lamp a floor blessed into a group that
  has the webhook;
* ``python -m pytest -q`` in the example's folder is its own suite, which
  tests/test_example_project.py runs: here it is only checked to be that;
* long runs are made small (``SMALL``);
* ``impfactory`` commands run in this process through ``cli.main`` (as the console
  script does), but for ``floor`` and ``cloud serve``, which run as processes.

Every ``impfactory`` command must exit with the status its ``# exit N`` comment
gives (0 when none) and without a traceback, and a ``floor`` must bless every DUT
it placed.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent / "node"))
from docshell import CLI, Hooks, Servers, ShellLine, fill, shell_lines, shrink
from impcentral_node import NodeClient, in_ci, library_missing, node_missing
from impt_flow import Impt

from impfactory.tools import cli

pytestmark = [pytest.mark.node,
              pytest.mark.skipif(node_missing() is not None, reason=node_missing() or "")]

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide.md"
EXAMPLE = ROOT / "examples" / "smart-lamp"
#: Commands run in this process (each a second or so less than a new interpreter);
#: ``floor`` reads its stdin and ``cloud serve`` runs until stopped: processes.
IN_PROCESS = {"test", "device", "line", "golive", "cloud"}
HOOK = "http://127.0.0.1:9000/hook"
#: Option values that keep long runs short: (subcommand words) -> {option: value}.
SMALL: dict[tuple[str, ...], dict[str, str]] = {
    ("line", "run"): {"--duts": "8"},
}
#: The example's own suite; tests/test_example_project.py runs it.
EXAMPLE_SUITE = ["python", "-m", "pytest", "-q"]
SHOWS = re.compile(r"shows (\d+) devices?")
EXIT = re.compile(r"exit (\d)")


def guide_lines() -> list[ShellLine]:
    return shell_lines(GUIDE)


def small(words: list[str]) -> list[str]:
    return shrink(words, SMALL)


def options(words: list[str]) -> dict[str, Any]:
    """``--name value`` pairs (a flag without a value is ``True``); repeated ones listed."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(words):
        name = words[i]
        assert name.startswith("--"), f"not an option: {name}"
        if i + 1 < len(words) and not words[i + 1].startswith("--"):
            value: Any = words[i + 1]
            i += 2
        else:
            value = True
            i += 1
        key = name[2:].replace("-", "_")
        out[key] = [*out[key], value] if key in out and key == "tag" else (
            [value] if key == "tag" else value)
    return out


@dataclass
class Session:
    """What the guide's lines share: the directory, stand-ins, servers, impt's login."""

    root: Path
    hooks: Hooks
    cwd: Path = field(init=False)
    names: dict[str, str] = field(default_factory=dict)
    servers: Servers = field(init=False)
    node: NodeClient | None = None
    impt: Impt | None = None
    ran: list[str] = field(default_factory=list)
    #: Production groups with a blessing webhook, and the blessings they are owed.
    hooked: set[str] = field(default_factory=set)
    owed: int = 0

    def __post_init__(self) -> None:
        self.cwd = self.root
        self.servers = Servers(self.root)

    def fill(self, words: list[str]) -> list[str]:
        return fill(words, self.names)

    def serve(self, words: list[str]) -> None:
        self.servers.start(words, self.cwd, self.names)

    def run_impfactory(self, line: ShellLine, words: list[str]) -> None:
        want = int(EXIT.search(line.comment).group(1)) if EXIT.search(line.comment) else 0
        if words[1] in IN_PROCESS:  # cli.main, as the console script calls it
            out, err = io.StringIO(), io.StringIO()
            with contextlib.chdir(self.cwd), contextlib.redirect_stdout(out), \
                    contextlib.redirect_stderr(err):
                code = cli.main(words[1:])
            stdout, stderr = out.getvalue(), err.getvalue()
        else:
            result = subprocess.run([*CLI, *words[1:]], capture_output=True, text=True,
                                    cwd=self.cwd, timeout=300, stdin=subprocess.DEVNULL)
            code, stdout, stderr = result.returncode, result.stdout, result.stderr
        assert code == want, (line.text, stdout[-3000:], stderr[-3000:])
        assert "Traceback" not in stderr, line.text
        if words[1] == "floor":
            blessed = int(stdout.strip().splitlines()[-1].split()[0])
            assert blessed == int(words[words.index("--duts") + 1]), stdout
            target = self._blessed_into(words)
            if target in self.hooked:
                self.owed += blessed
                assert self.hooks.wait_for("blessing", self.owed) >= self.owed
        if words[1] == "golive":
            hooked = [w for w in words if w.startswith("blessing=")]
            if hooked:
                self.hooked.add(words[words.index("--production") + 1].partition(":")[0])

    def _blessed_into(self, words: list[str]) -> str:
        """The production group a floor's fixture group blesses into (asked of impt)."""
        assert self.impt is not None
        group = self.impt.resolve("deviceGroups", words[words.index("--assign") + 1])
        target = group["relationships"]["production_target"]["id"]
        return str(self.impt.resolve("deviceGroups", target)["attributes"]["name"])

    def run_impt(self, line: ShellLine, words: list[str]) -> None:
        """impt's commands through its library under node, as impt makes the calls."""
        verb, opts = " ".join(words[1:3]), options(words[3:])
        if verb == "auth login":
            self.node = NodeClient(opts["endpoint"]).__enter__()
            answer = self.node("auth.login", opts["user"], opts["pwd"])
            assert answer.get("access_token"), answer
            self.impt = Impt(self.node)
            return
        impt = self.impt
        assert impt is not None, "impt auth login first"

        def read(key: str) -> str:
            return (self.cwd / opts[key]).read_text(encoding="utf-8") if key in opts else ""

        if verb == "product create":
            impt.product_create(opts["name"], opts["descr"])
        elif verb == "dg create":
            impt.dg_create(opts["name"], opts["dg_type"], opts["product"],
                           target=opts.get("target"), dut=opts.get("dut"),
                           descr=opts.get("descr"))
        elif verb == "build deploy":
            extra = {"origin": opts["origin"]} if "origin" in opts else {}
            impt.build_deploy(opts["dg"], read("device_file"), read("agent_file"), **extra)
        elif verb == "build update":
            build = impt.resolve("deployments", opts["build"])
            tags = sorted({*build["attributes"]["tags"], *opts.get("tag", [])})
            impt.imp("deployments.update", build["id"], {"tags": tags})
        elif verb == "device list":
            shown = impt.device_list(opts["dg"])
            count = SHOWS.search(line.comment)
            if count:
                assert len(shown) == int(count.group(1)), (line.text, shown)
        elif verb == "dg update" and "target" in opts:
            group = impt.resolve("deviceGroups", opts["dg"])
            target = impt.resolve("deviceGroups", opts["target"])
            impt.imp("deviceGroups.update", group["id"], group["type"], {},
                     {"type": target["type"], "id": target["id"]})
        elif verb == "dg update":
            value = opts["load_code_after_blessing"]
            impt.dg_update(opts["dg"], load_code_after_blessing=value in (True, "true"))
        elif verb == "dg reassign":
            assert impt.dg_reassign(opts["from"], opts["to"])
        elif verb == "webhook create":
            impt.webhook_create(opts["dg"], opts["url"], opts["event"], opts["mime"])
            if opts["event"] == "blessing":
                self.hooked.add(opts["dg"])
        elif verb == "dg restart":
            assert impt.dg_restart(opts["dg"], bool(opts.get("conditional"))) > 0
        else:
            raise AssertionError(f"no stand-in for `{line.text}`")

    def stop(self) -> list[tuple[str, int]]:
        if self.node is not None:
            self.node.__exit__(None, None, None)
            self.node = None
        return self.servers.stop()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    missing = library_missing()
    if missing:
        pytest.fail(missing) if in_ci() else pytest.skip(missing)
    shutil.copytree(EXAMPLE, tmp_path / "examples" / EXAMPLE.name,
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    hooks = Hooks().start()
    run = Session(tmp_path, hooks, names={HOOK: hooks.url})
    try:
        yield run
    finally:
        run.stop()
        hooks.close()


def test_the_guide_shows_its_steps_in_order() -> None:
    texts = [line.text for line in guide_lines()]
    assert texts[0] == "cd examples/smart-lamp"
    firsts = {name: next(i for i, t in enumerate(texts) if t.startswith(name)) for name in (
        "impfactory test", "impfactory device life", "impfactory cloud serve",
        "impt build update", "impfactory golive", "impfactory line run --fixtures 2 --duts 20",
        "impt dg create --name LampFieldTrial")}
    assert list(firsts) == sorted(firsts, key=firsts.__getitem__)
    for fault in ("bad_blinkup", "misplaced", "wrong_password", "no_bless", "already_blessed"):
        assert any(f"--fault {fault}" in t for t in texts), fault
    assert any("--impos " in t for t in texts)


@pytest.mark.slow
def test_every_guide_command_runs(session: Session) -> None:
    for line in guide_lines():
        words = line.words
        if words[0] == "cd":
            session.cwd = (session.cwd / words[1]).resolve()
            assert session.cwd.is_dir(), line.text
        elif words == EXAMPLE_SUITE:
            assert session.cwd.name == EXAMPLE.name, "the example's suite runs in its folder"
        elif words[0] == "impt":
            session.run_impt(line, session.fill(words))
        else:
            assert words[0] == "impfactory", line.text
            words = session.fill(small([w for w in words if w != "&"]))
            if line.text.endswith("&") or words[1:3] == ["cloud", "serve"]:
                session.serve(words)
            else:
                session.run_impfactory(line, words)
        session.ran.append(line.text)
    assert len(session.ran) == len(guide_lines())
    stopped = session.stop()
    assert stopped and all(code == 0 for _, code in stopped), stopped
    lamp = session.root / "examples" / EXAMPLE.name
    for made in ("lamp.png", "lamp.db", "report/duts.json", "report/junit.xml",
                 "report/report.html"):
        assert (lamp / made).is_file(), made
    assert session.owed == 6  # 4 lamps through LampFixture, then 2 into LampProductionEU
