"""``impfactory perf scale``: a line past one process, on the distributed engines.

Starts Mosquitto and a throwaway PostgreSQL (tools/pg_server.py), then for each
worker count in ``--workers`` (default ``1,2``) runs the same fault-free line on a
fresh database with ``--clouds C`` cloud processes sharing the device traffic
(``C - 1`` ``cloud serve --share`` processes beside the coordinator's own cloud)
and that many ``line worker`` processes joining the run over the broker, exactly
as on several machines. It prints the DUTs per second of each (from the
assignments to the last record: start-up is not counted) and how many device
messages the extra clouds served. The counts alternate (``--rounds``), so both
see the same machine load; each figure is the best of its rounds.

    impfactory perf scale --duts 40 --fixtures 4 --workers 1,2 --clouds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from impfactory.cloud.broker import BrokerServer, find_mosquitto
from impfactory.cloud.store.postgres import PgConnection
from impfactory.errors import ImpFactoryError
from impfactory.fixture.line import LineConfig
from impfactory.hw.optical import PRESETS
from impfactory.tools.cmd_line import LineRunFailed, quiet_network_logs, run_with_progress
from impfactory.tools.line_shards import worker_url
from impfactory.tools.pg_server import PostgresServer, PostgresUnavailable

CLI = [sys.executable, "-m", "impfactory.tools.cli"]
SHARE = "perf"


class PerfScaleError(ImpFactoryError, ValueError):
    """A ``perf scale`` option is unusable."""


def register(sub: Any) -> None:
    parser = sub.add_parser("scale", help="DUTs/s of a line on W workers and C clouds sharing "
                            "Mosquitto and PostgreSQL", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duts", type=int, default=40, metavar="N")
    parser.add_argument("--fixtures", type=int, default=4, metavar="F")
    parser.add_argument("--workers", default="1,2", metavar="W,W…",
                        help="worker counts to compare (default 1,2)")
    parser.add_argument("--clouds", type=int, default=2, metavar="C",
                        help="cloud processes sharing the devices (default 2)")
    parser.add_argument("--rounds", type=int, default=1, metavar="R",
                        help="runs of each worker count, alternating (default 1)")
    parser.add_argument("--scale", type=float, default=200.0, help="line clock speed-up")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=_run)


def _counts(text: str, fixtures: int) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(not 1 <= c <= fixtures for c in counts):
        raise PerfScaleError(f"--workers {text!r}: comma-separated counts within 1..{fixtures} "
                             "(at most one worker per fixture)")
    return counts


def _run(args: argparse.Namespace) -> int:
    counts = _counts(args.workers, args.fixtures)
    if not 1 <= args.clouds <= 8:
        raise PerfScaleError(f"--clouds must be 1..8, got {args.clouds}")
    if args.rounds < 1:
        raise PerfScaleError(f"--rounds must be at least 1, got {args.rounds}")
    config = LineConfig(fixtures=args.fixtures, duts=args.duts, optical=PRESETS["typical"],
                        clock_scale=args.scale)
    if not find_mosquitto():
        raise PerfScaleError("perf scale needs Mosquitto (shared subscriptions)")
    quiet_network_logs()
    runs: dict[int, list[dict[str, Any]]] = {c: [] for c in counts}
    try:
        with PostgresServer() as pg, BrokerServer("mosquitto") as broker:
            for round_ in range(args.rounds):
                for workers in counts:
                    runs[workers].append(_one(config, pg, broker, workers, args.clouds,
                                              f"r{round_}w{workers}"))
    except PostgresUnavailable as err:
        raise PerfScaleError(str(err)) from err
    best = {w: max(r, key=lambda d: d["duts_per_s"]) for w, r in runs.items()}
    doc = {"duts": args.duts, "fixtures": args.fixtures, "clouds": args.clouds,
           "rounds": args.rounds, "runs": {str(w): best[w] for w in counts}}
    if args.json:
        json.dump(doc, sys.stdout)
        print()
    else:
        for w in counts:
            d = best[w]
            print(f"{w} worker(s), {args.clouds} cloud(s): {d['duts_per_s']:.1f} DUTs/s "
                  f"({d['blessed']}/{args.duts} blessed, {d['wall_s']:.2f} s; other clouds "
                  f"served {d['other_clouds_received']} device messages)")
    return 0 if all(d["blessed"] == args.duts for d in best.values()) else 1


def _one(config: LineConfig, pg: str, broker: str, workers: int, clouds: int,
         run: str) -> dict[str, Any]:
    db = _fresh_database(pg, run)
    received = 0
    with _clouds(broker, db, clouds - 1) as others:
        procs = [subprocess.Popen([*CLI, "line", "worker", "--run", run, "--quiet",
                                   "--broker", worker_url(broker, n + 1)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for n in range(workers)]
        try:
            result = asyncio.run(run_with_progress(
                config, broker, True, db=db, workers=0, remote_workers=workers, run=run,
                share=SHARE))
        except LineRunFailed as err:
            raise PerfScaleError(f"{workers} worker(s): {err}") from err
        finally:
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    for text in others:
        found = re.search(r"(\d+) device messages received", text)
        received += int(found.group(1)) if found else 0
    summary = result.summary
    return {"duts_per_s": round(summary.duts_per_s, 2), "wall_s": round(summary.wall_s, 3),
            "blessed": summary.blessed, "failures": dict(summary.failures),
            "other_clouds_received": received}


def _fresh_database(pg: str, name: str) -> str:
    name = "perf_" + name.replace("-", "_")
    admin = PgConnection(pg)
    try:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    finally:
        admin.close()
    return pg.rsplit("/", 1)[0] + "/" + name


@contextlib.contextmanager
def _clouds(broker: str, db: str, count: int) -> Iterator[list[str]]:
    """``count`` ``cloud serve --share`` processes on seats 1..count; their logs after."""
    access = BrokerServer(broker).access
    procs = [subprocess.Popen([*CLI, "cloud", "serve", "--broker", access.seat(n + 1).cloud_url,
                               "--db", db, "--share", SHARE, "--no-agents", "--log-level", "INFO",
                               "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(count)]
    logs: list[str] = []
    try:
        for proc in procs:
            assert proc.stdout is not None
            if not proc.stdout.readline():
                raise PerfScaleError(f"a cloud did not start: {proc.communicate()[1][-500:]}")
        yield logs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
            try:
                logs.append(proc.communicate(timeout=30)[1])
            except subprocess.TimeoutExpired:
                proc.kill()
                logs.append(proc.communicate()[1])
