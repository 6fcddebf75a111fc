"""``IMPFACTORY_PROFILE=DIR``: every ``impfactory`` process profiles itself into DIR.

A line run is several processes (the cloud in the command's own, ``line worker``
children started with the same environment), so "where does the CPU go" needs a
profile of each. With the variable set, :func:`profiled` runs the command under
cProfile and writes ``DIR/<command>-<pid>.prof`` when it returns (read them with
``python -m pstats`` or ``pstats.Stats(*files)``). Times are wall times of the
thread that runs the command (a CPU timer, ``time.thread_time``, is a system call
per event and tripled a worker's time): its waits show as the event loop's
``select``/``poll``, to leave out. Other threads (a client library's connect) are
not profiled: ``<command>-<pid>.cpu`` beside it gives the process's and the
thread's CPU seconds, so what they took shows. Unset, it costs nothing.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import time
from collections.abc import Iterator
from pathlib import Path

PROFILE_ENV = "IMPFACTORY_PROFILE"


@contextlib.contextmanager
def profiled(command: str) -> Iterator[None]:
    """Profile the body when ``IMPFACTORY_PROFILE`` names a directory (made if missing)."""
    where = os.environ.get(PROFILE_ENV)
    if not where:
        yield
        return
    folder = Path(where)
    folder.mkdir(parents=True, exist_ok=True)
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        name = "-".join(command.split()) or "impfactory"
        stem = folder / f"{name}-{os.getpid()}"
        profile.dump_stats(stem.with_suffix(".prof"))
        # the whole process's CPU beside the profiled thread's: what other threads took
        stem.with_suffix(".cpu").write_text(
            f"process_cpu_s {time.process_time():.3f}\nthread_cpu_s {time.thread_time():.3f}\n"
        )
