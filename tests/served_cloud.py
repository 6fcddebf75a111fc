"""``impfactory cloud serve`` as a separate process, the way a user runs it.

Tests that need the real command (its first line, its signals, its database across
restarts) start it here: ``start_cloud(*args)`` waits for the JSON line it prints
on readiness, ``stop_cloud(proc)`` signals it and collects its exit status and
stderr (read to the end, so a chatty log never blocks its exit).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

CLOUD_SERVE = [sys.executable, "-m", "impfactory.tools.cli", "cloud", "serve"]


def start_cloud(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start ``cloud serve ARGS``; answer the process and its readiness line."""
    proc = subprocess.Popen([*CLOUD_SERVE, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(err or "cloud serve printed nothing")
    return proc, json.loads(line)


def stop_cloud(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM,
               timeout: float = 30) -> tuple[int, str]:
    """Send ``sig`` and wait; answer the exit status and everything it wrote to stderr."""
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    return proc.returncode, err
