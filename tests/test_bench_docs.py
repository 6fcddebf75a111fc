"""docs/bench.md runs: every shell command it shows, as a user would type it.

The ``sh`` blocks are read from the page itself, so a changed option, a renamed
subcommand or a wrong example there fails here. ``bench emulate ... &`` lines
start a background emulator whose pty stands in for ``/dev/pts/N`` in the lines
after it; the ``mosquitto -p 18830 &`` line is served by the test session's
broker (nothing on a fixed port); commands run in a temporary directory, so
``fixture.csv`` lands there. Each foreground command must exit 0: for
``blinkup`` that means the DUT showed the BlinkUp green, for ``run`` that the DUT
was blessed, for ``blinkup decode`` that the capture decoded.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from impfactory.cloud.brokersec import access_for
from impfactory.protocol import bench as bp
from impfactory.protocol.bench_status import classify
from impfactory.tools.cli import build_parser

DOC = Path(__file__).resolve().parents[1] / "docs" / "bench.md"
CLI = [sys.executable, "-m", "impfactory.tools.cli"]
DOC_BROKER = "mqtt://127.0.0.1:18830"


def doc_commands() -> list[list[str]]:
    """The commands of the page's ``sh`` blocks, continuation lines joined, comments gone."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def bench_subcommands() -> set[str]:
    parser = build_parser()
    bench = parser._subparsers._group_actions[0].choices["bench"]  # type: ignore[union-attr]
    return set(bench._subparsers._group_actions[0].choices)


def test_every_bench_subcommand_is_shown_in_the_docs() -> None:
    shown = {words[2] for words in doc_commands() if words[:2] == ["impfactory", "bench"]}
    assert shown == bench_subcommands()


def test_the_docs_commands_run(broker_url: str, tmp_path: Path) -> None:
    emulators: list[subprocess.Popen[str]] = []
    port = ""
    ran: list[str] = []
    try:
        for words in doc_commands():
            background = words[-1] == "&"
            # the page's broker is an open one; the session's wants the cloud's credentials
            # from ``bench run`` (its cloud runs in that process), none from the DUT
            url = access_for(broker_url).cloud_url if words[1:3] == ["bench", "run"] \
                else broker_url
            words = [w.replace(DOC_BROKER, url) for w in words if w != "&"]
            if words[0] == "mosquitto":
                assert words == ["mosquitto", "-p", "18830"] and background
                continue  # the session's broker stands in for it
            assert words[0] == "impfactory", words
            argv = [*CLI, *(port if w == "/dev/pts/N" else w for w in words[1:])]
            if background:
                assert words[1:3] == ["bench", "emulate"], words
                log = (tmp_path / f"emulate{len(emulators)}.log").open("w")
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True,
                                        cwd=tmp_path)
                emulators.append(proc)
                assert proc.stdout is not None
                first = proc.stdout.readline()
                assert first.startswith("port: "), first
                port = first.split(" ", 1)[1].strip()
                continue
            result = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                    cwd=tmp_path)
            assert result.returncode == 0, (words, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr
            ran.append(" ".join(words[1:3]))
    finally:
        for proc in emulators:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            assert code == 0
    assert {"blinkup decode", "blinkup plot", "bench run"} <= set(ran)
    assert (tmp_path / "fixture.png").read_bytes().startswith(b"\x89PNG")
    # what `bench uart --send` sent reached the emulated DUT (bench emulate's stderr)
    assert "uart to DUT: hello imp" in (tmp_path / "emulate0.log").read_text()


def doc_section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n{title}\n")
    end = text.find("\n#", start + len(title) + 2)
    return text[start : end if end > 0 else len(text)]


def _hex_after(word: str, line: str) -> bytes:
    """The run of two-digit hex bytes after ``word`` in ``line``."""
    found = re.search(rf"\b{word}((?: [0-9A-F]{{2}})+)\b", line)
    assert found, (word, line)
    return bytes.fromhex(found.group(1))


def test_the_worked_examples_are_real_frames() -> None:
    """Each example's wire bytes decode to the frame its label names, and re-encode the same."""
    lines = doc_section("### Worked examples").split("```")[1].splitlines()
    examples = 0
    for i, line in enumerate(lines):
        if " body " not in line:
            continue
        name, seq = re.match(r"(\w+)\D*SEQ (\d+)", line).groups()  # type: ignore[union-attr]
        wire = _hex_after("wire", line if " wire " in line else lines[i + 1])
        packet = bp.decode(wire)
        assert (packet.message.TYPE.name, packet.seq) == (name, int(seq))
        assert bp.cobs_decode(wire[:-1]) == _hex_after("body", line)
        assert bp.encode(packet.seq, packet.message) == wire
        examples += 1
    assert examples == 5


def test_the_frame_and_error_tables_name_every_code() -> None:
    frames = dict(re.findall(r"^\| ([0-9a-f]{2}) \| (\w+) \|", doc_section("### Frames"), re.M))
    assert frames == {f"{t.value:02x}": t.name for t in bp.FrameType}
    errors = dict(re.findall(r"(\d+) `(\w+)`", doc_section("### Frames")))
    assert errors == {str(c.value): c.name for c in bp.ErrorCode}


def test_the_documented_colour_rules_are_the_decoders() -> None:
    """docs/bench.md tells a firmware writer how the host names colours; so does classify."""
    text = " ".join(doc_section("## Building a controller").split())
    assert "above 40" in text and "G > 1.2 R" in text and "G ≥ 0.35 R" in text
    samples = [(39, 39, 39), (0, 0, 41), (100, 121, 0), (100, 119, 0), (100, 35, 0),
               (100, 34, 0), (255, 255, 0)]
    assert classify(samples) == ["off", "blue", "green", "amber", "amber", "red", "amber"]
