"""``impfactory blinkup decode`` reads a capture in chunks: memory does not grow with it.

A 20 MB CSV (18 minutes of dark at 1 kHz, then one BlinkUp at its very
end) is decoded by the command in a child process, whose peak RSS (``os.wait4``)
is compared with the same command on the BlinkUp alone. Read whole, the big file
cost ~150 MB more (its text and two lists of a million floats); streamed, a chunk.
The chunked reader is also checked against the whole one on every format.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from impfactory.tools.capture_stream import CaptureError, decode_capture, open_capture
from impfactory.tools.cli import main
from impfactory.tools.cmd_blinkup import read_capture

ENROL = ["--ssid", "floor", "--password", "secret", "--plan-id", "0123456789abcdef",
         "--token", "fedcba9876543210"]
RSS_GROWTH_LIMIT_KB = 40 * 1024


def _decode_rss(path: Path) -> tuple[dict[str, object], int]:
    """The command's JSON answer on ``path`` and its peak RSS in KiB."""
    code = "import sys; from impfactory.tools.cli import main; sys.exit(main(sys.argv[1:]))"
    child = subprocess.Popen([sys.executable, "-c", code, "blinkup", "decode", str(path),
                              "--json"], stdout=subprocess.PIPE)
    assert child.stdout is not None
    out = child.stdout.read()
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0, out
    return json.loads(out), usage.ru_maxrss


def _grow(small: Path, big: Path, megabytes: int) -> None:
    """``big``: ``small``'s samples after ``megabytes`` of dark rows."""
    text = small.read_text().splitlines()
    head = [line for line in text if not line[:1].isdigit()]
    rows = [line for line in text if line[:1].isdigit()]
    rate = 1000.0
    dark = megabytes * 1024 * 1024 // len("0.000000,0.000000\n")
    with big.open("w") as out:
        out.write("\n".join(head) + "\n")
        for start in range(0, dark, 100_000):
            times = np.arange(start, min(dark, start + 100_000)) / rate
            np.savetxt(out, np.column_stack((times, np.zeros_like(times))), fmt="%.6f",
                       delimiter=",")
        for row in rows:
            t, level = row.split(",")
            out.write(f"{float(t) + dark / rate:.6f},{level}\n")


def test_a_big_capture_decodes_in_bounded_memory(tmp_path: Path) -> None:
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    assert main(["blinkup", "encode", *ENROL, "--format", "samples", "-o", str(small)]) == 0
    _grow(small, big, 20)
    assert big.stat().st_size > 20 * 1024 * 1024
    alone, alone_rss = _decode_rss(small)
    found, big_rss = _decode_rss(big)
    assert found["token"] == alone["token"] == "fedcba9876543210"
    assert found["signal"]["start_s"] > 1000  # type: ignore[index]
    assert big_rss - alone_rss < RSS_GROWTH_LIMIT_KB, (alone_rss, big_rss)


@pytest.mark.parametrize("suffix", [".csv", ".wav"])
def test_chunks_are_the_whole_capture(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"capture{suffix}"
    assert main(["blinkup", "encode", *ENROL, "--format", "samples", "--noise", "0.01",
                 "--seed", "3", "-o", str(path)]) == 0
    whole, meta = read_capture(path)
    with open_capture(path, chunk=1000) as capture:
        parts = list(capture.chunks())
        assert capture.sample_rate == whole.sample_rate and capture.meta == meta
    assert {len(p) for p in parts[:-1]} == {1000}
    assert np.array_equal(np.concatenate(parts), whole.samples)
    with open_capture(path, chunk=777) as capture:
        result = decode_capture(capture)
    assert result.config.token == "fedcba9876543210"  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "why"), [
    ("time_s,level\n0.0,0.1\n0.0,0.2\n", "no sample_rate"),
    ("0.5\n0.6\n", "no sample_rate"),
    ("# sample_rate=1000\n0.1\nnot-a-number\n", "not a number"),
    ("# sample_rate=1000\n0.1\nnan\n", "finite"),
    ("# sample_rate=-5\n0.1\n", "finite"),
    ("# nothing here\n", "no samples"),
])
def test_a_bad_csv_is_a_capture_error(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CaptureError, match=why), open_capture(path) as capture:
        for _ in capture.chunks():
            pass
