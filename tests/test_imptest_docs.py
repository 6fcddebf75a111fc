"""docs/testing.md's commands run, with the exit status it gives, and its sample
output is what a run prints.

Every ``impfactory test`` line of the doc's ``sh`` blocks carries ``# exit N``;
each runs from a copy of the HTS221 library's folder (tests/imptest_data), as the
doc says. The ``text`` block of output is compared with a real run line by line,
the wall-clock stamps and the start date aside.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from impfactory.tools.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "testing.md"
DATA = Path(__file__).resolve().parent / "imptest_data"
STAMP = re.compile(r"^\[(?:\+[0-9.]+/[0-9.]+s )?(\w+)\] ")


def blocks(kind: str) -> list[list[str]]:
    found: list[list[str]] = []
    current: list[str] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if current is None and line.strip() == f"```{kind}":
            current = []
        elif current is not None and line.strip() == "```":
            found.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return found


COMMANDS = [line for block in blocks("sh") for line in block
            if line.startswith("impfactory test")]


def test_the_doc_shows_the_commands() -> None:
    assert len(COMMANDS) >= 8
    for line in COMMANDS:
        assert re.search(r"# exit \d", line), f"no '# exit N' on: {line}"


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    shutil.copytree(DATA / "HTS221", tmp_path / "HTS221")
    shutil.copytree(DATA / "boards", tmp_path / "boards")
    (tmp_path / "libraries").mkdir()
    return tmp_path / "HTS221"


@pytest.mark.parametrize("line", COMMANDS)
def test_each_command_exits_as_the_doc_says(line: str, library: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    command, _, comment = line.partition("#")
    expected = int(re.search(r"exit (\d)", comment).group(1))  # type: ignore[union-attr]
    monkeypatch.chdir(library)
    assert main(shlex.split(command)[1:]) == expected, capsys.readouterr()
    if "--junit report.xml" in command:
        assert (library / "report.xml").read_text().startswith("<?xml")


def normalise(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        line = STAMP.sub(lambda m: f"[{m.group(1)}] ", line)
        if not line.startswith("[info] Started at "):
            out.append(line)
    return out


def test_the_sample_output_is_what_a_run_prints(library: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sample = blocks("text")[0]
    monkeypatch.chdir(library)
    assert main(["test", "--fault", "sensor.wrong_id=0"]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert normalise(printed) == normalise(sample)
