"""Commands shown in the README and docs/ stay true.

Every ``impfactory ...`` line in a fenced code block of README.md or docs/*.md must
parse with the real command-line parser: a renamed subcommand or a dropped option
fails here. What the commands *do* is proven by each area's own tests; this test
only keeps the documentation from rotting.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from impfactory.tools.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Box drawing, arrows and the ellipsis mark a diagram, not a command.
DIAGRAM = re.compile("[\u2500-\u257f\u2190-\u21ff\u25a0-\u25ff\u2026]")


def _code_lines(text: str) -> list[str]:
    """Lines inside fenced code blocks, with backslash continuations joined."""
    lines: list[str] = []
    inside = False
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("```"):
            inside = not inside
            pending = ""
            continue
        if not inside:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return lines


INLINE = re.compile(r"`(impfactory [^`]+)`")


def _commands(path: Path) -> list[str]:
    """The ``impfactory`` invocations a document shows (each part of a ``&&`` chain).

    Fenced blocks everywhere; in the README also inline code spans (its performance
    table names whole commands there, while docs/ mention partial ones in prose).
    """
    found = []
    text = path.read_text(encoding="utf-8")
    inline = [m.group(1) for m in INLINE.finditer(text)] if path.name == "README.md" else []
    for line in _code_lines(text) + inline:
        line = line.removeprefix("$ ")
        for part in re.split(r"&&|;|\|", line):
            part = part.split(" #", 1)[0].strip().rstrip("&").strip()
            if part.startswith("impfactory ") and not DIAGRAM.search(part):
                found.append(part)
    return found


def _argv(command: str) -> list[str]:
    """Shell words after ``impfactory``; optional ``[...]`` groups are dropped."""
    command = re.sub(r"\[[^\]]*\]", " ", command)
    return shlex.split(command)[1:]


CASES = [(path.relative_to(ROOT).as_posix(), cmd) for path in DOCS for cmd in _commands(path)]


def test_the_docs_show_commands() -> None:
    readme = [cmd for doc, cmd in CASES if doc == "README.md"]
    assert "impfactory demo" in {c.split(" &&")[0] for c in readme}
    assert len(CASES) >= 20


@pytest.mark.parametrize(("doc", "command"), CASES, ids=[f"{d}:{c[:60]}" for d, c in CASES])
def test_documented_command_parses(doc: str, command: str) -> None:
    parser = build_parser()
    try:
        args = parser.parse_args(_argv(command))
    except SystemExit as exc:  # argparse reports bad usage by exiting
        pytest.fail(f"{doc}: `{command}` does not parse (exit {exc.code})")
    assert getattr(args, "func", None) is not None, f"{doc}: `{command}` names no command"


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", DOCS, ids=[p.relative_to(ROOT).as_posix() for p in DOCS])
def test_links_resolve_in_a_clone(path: Path) -> None:
    """A clone has only this repository: every link stays inside it and finds its file."""
    text = path.read_text(encoding="utf-8")
    prose = re.sub(r"```.*?```", "", text, flags=re.S)  # commands are run elsewhere
    assert "`../shared" not in prose, f"{path.name} names a path outside the repository"
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        where = (path.parent / target.split("#")[0]).resolve()
        assert where.is_relative_to(ROOT), f"{path.name}: link {target} leaves the repository"
        assert where.exists(), f"{path.name}: dead link {target}"
