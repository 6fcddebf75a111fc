"""``impfactory.procstat``: another process's CPU seconds, or None when they cannot be read."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from impfactory import procstat


def test_a_busy_process_is_counted_and_a_gone_one_is_none() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        start = procstat.cpu_seconds(proc.pid)
        assert start is not None
        busy = start
        deadline = time.monotonic() + 10  # a loaded machine gives it less than the wall
        while busy - start < 0.1 and time.monotonic() < deadline:
            time.sleep(0.05)
            busy = procstat.cpu_seconds(proc.pid) or start
    finally:
        proc.kill()
        proc.wait()
    assert busy - start >= 0.1
    assert procstat.cpu_seconds(proc.pid) is None  # reaped: no /proc entry
    assert procstat.cpu_seconds(os.getpid()) is not None
