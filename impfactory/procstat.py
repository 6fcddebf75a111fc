"""CPU seconds another process has used, for benchmarks that count a broker's or a
cloud's CPU beside their own (``BrokerServer.cpu_seconds``, ``perf cloud``).

Read from Linux's ``/proc/PID/stat`` (user and system time, in clock ticks: 10 ms
here, so a figure over half a second is known to a few per cent). ``None`` where it
cannot be read: not Linux, or the process has gone.
"""

from __future__ import annotations

import os


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of process ``pid`` so far, or ``None``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # after the command name, which may hold spaces and ")": fields 3 onwards
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None
