"""``impfactory line run``: a whole production line, emulated, with faults and a report.

With ``--cloud URL --user U --password P --broker mqtt://HOST:PORT`` it runs
against a cloud that already runs, as a factory runs against impCloud (set up over
its REST API, tools/line_remote.py). Otherwise it starts (or reaches) a broker,
starts a cloud on a fresh database (its agents' URLs
on a free loopback port), builds a product with its fixture, DUT and production
groups and a deployment in each (the example factory firmware and its agent, and
the example application, unless ``--firmware``/``--agent``/``--app`` name your
own), then runs F fixtures × N DUTs (``fixture.line``) with a live progress bar,
prints the summary and, with ``--report DIR``, writes ``duts.json``, ``junit.xml``
and ``report.html``.

Exit status: 0 when the run completed and its yield is at least ``--min-yield``
(default 0: failed DUTs are results, not errors), 1 below it or when the line
could not finish, 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from impfactory.brokerurl import parse_url
from impfactory.clock import Clock, ScaledClock
from impfactory.cloud.api_client import check_endpoint
from impfactory.cloud.store.postgres import is_postgres
from impfactory.devicecode import is_python_code
from impfactory.errors import ImpFactoryError
from impfactory.firmware import runtime
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID
from impfactory.fixture.dut import DutSource
from impfactory.fixture.faults import parse_faults, parse_rate
from impfactory.fixture.line import Line, LineConfig, LineError, LineResult, run_line
from impfactory.fixture.linebus import LineBusError
from impfactory.fixture.linepipe import LINE_PIPE_ENV, pipe_fds
from impfactory.fixture.record import LineSummary
from impfactory.fixture.report import prepare_report_dir, write_reports
from impfactory.fixture.shard import (
    STUCK_EXIT_S,
    STUCK_NOTE_ENV,
    ShardError,
    run_piped_worker,
    run_worker,
)
from impfactory.hw.optical import PRESETS, OpticalConfig
from impfactory.protocol import linework as lw
from impfactory.tools.firmware_input import (
    add_firmware_options,
    apply_lib_dirs,
    read_agent,
    read_firmware,
)
from impfactory.tools.line_remote import remote_cloud
from impfactory.tools.line_setup import FactoryCloud, factory_cloud
from impfactory.tools.line_shards import LINE_BROKER_ENV, run_sharded
from impfactory.tools.line_ui import LineProgress


class LineInputError(ImpFactoryError, ValueError):
    """A ``line run`` option is unusable (unreadable firmware file, bad number)."""


class LineRunFailed(ImpFactoryError, RuntimeError):
    """The line started but could not finish (fixtures never ready, a worker died): exit 1."""

    exit_code = 1


def add_line_options(parser: argparse.ArgumentParser, *, fixtures: int, duts: int) -> None:
    """The options ``line run``, ``demo`` and ``perf line`` share."""
    parser.add_argument("--fixtures", type=int, default=fixtures, metavar="F",
                        help=f"BlinkUp fixtures on the line (default {fixtures})")
    parser.add_argument("--duts", type=int, default=duts, metavar="N",
                        help=f"devices under test (default {duts})")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed: the same seed gives the same per-DUT outcomes (default 0)")
    parser.add_argument("--broker", default="auto", metavar="auto|embedded|mqtt://HOST:PORT",
                        help="broker to run on (default auto: Mosquitto if installed)")
    parser.add_argument("--scale", type=float, default=200.0,
                        help="line clock speed-up over the wall (default 200)")
    parser.add_argument("--workers", type=int, default=1, metavar="W",
                        help="run the line in W local worker processes sharing the broker "
                             "(default 1: in this process)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def register(sub: Any) -> None:
    parser = sub.add_parser("line", help="run an emulated factory line")
    line_sub = parser.add_subparsers(dest="line_command", metavar="COMMAND")
    run = line_sub.add_parser("run", help="run F fixtures x N DUTs and report",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_line_options(run, fixtures=2, duts=20)
    run.add_argument("--fault", action="append", default=[], metavar="NAME=RATE",
                     help="inject a fault into that share of DUTs (repeatable): misplaced, "
                          "wrong_wifi, test_fail, link_drop (test-fail is read as test_fail)")
    run.add_argument("--outdated-impos", default="0", metavar="RATE",
                     help="share of DUTs shipped with an old impOS that must update first")
    run.add_argument("--optical", default="", metavar="NAME=VALUE,...",
                     help="optical set-up overrides, e.g. distance_mm=6,noise_rms=0.02 "
                          "(see hw/optical.py OpticalConfig)")
    add_run_options(run)
    run.add_argument("--cloud", metavar="URL",
                     help="run against this running cloud's REST API (http://HOST:PORT/v5) "
                          "instead of starting one; needs --user, --password and --broker "
                          "mqtt://HOST:PORT (its broker), as floor takes them")
    run.add_argument("--user", help="with --cloud: the owner's username")
    run.add_argument("--password", help="with --cloud: the owner's password")
    run.add_argument("--min-yield", type=float, default=0.0, metavar="Y",
                     help="exit 1 when the yield is below Y (0..1; default 0)")
    run.add_argument("--remote-workers", type=int, default=0, metavar="R",
                     help="also wait for R workers started elsewhere with `line worker` "
                          "(then --workers may be 0)")
    run.add_argument("--run", default=None, metavar="NAME",
                     help="name of this run, which workers join (default: a random one)")
    run.add_argument("--line-broker", default=None, metavar="URL",
                     help="the coordinator's line account, mqtt://impfactory-line-0:PASSWORD@"
                          "HOST:PORT (default: from the broker this command starts)")
    run.add_argument("--share", default=None, metavar="GROUP",
                     help="serve devices through the MQTT shared subscription $share/GROUP/…, "
                          "beside other `cloud serve --share GROUP` processes on one database")
    run.set_defaults(func=_run)
    worker = line_sub.add_parser("worker", help="take a share of a line's DUTs over the broker",
                                 description=WORKER_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    worker.add_argument("--broker", default=None, metavar="URL",
                        help="mqtt://impfactory-line-N:PASSWORD@HOST:PORT (default: "
                             f"${LINE_BROKER_ENV})")
    worker.add_argument("--run", required=True, metavar="NAME", help="the run to join")
    worker.add_argument("--join-timeout", type=float, default=600.0, metavar="S",
                        help="give up when no coordinator answers within S seconds (600)")
    worker.add_argument("--worker-id", default=None, metavar="HEX16",
                        help="this worker's ID (default: a random one)")
    worker.add_argument("--quiet", action="store_true", help="print nothing on success")
    worker.set_defaults(func=_worker)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


WORKER_HELP = """\
Join a line run (``line run --remote-workers R --run NAME``) over the broker and
run the share of its fixtures and DUTs the coordinator assigns: progress and DUT
records go back as typed messages (protocol/linework.py). The worker needs only
the broker: its line account (``impfactory-line-N``, one per worker) and the run's
name. Exit status: 0 when the shard finished, 1 when it could not (dismissed, the
broker lost, no coordinator), 2 for bad input.
"""


def _worker(args: argparse.Namespace) -> int:
    pipe = os.environ.get(LINE_PIPE_ENV)  # a local worker of a piped line (linepipe.py)
    url = args.broker or os.environ.get(LINE_BROKER_ENV)
    if not url and not pipe:
        raise LineInputError(f"line worker: give --broker URL (or set ${LINE_BROKER_ENV})")
    lw.check_run(args.run)
    if args.worker_id is not None:
        lw.check_worker(args.worker_id)
    quiet_network_logs()
    # a callback stuck in C ends this process; the note tells its coordinator whose it was
    runtime.end_process_when_stuck(STUCK_EXIT_S, note=os.environ.get(STUCK_NOTE_ENV))
    try:
        work = (run_worker(url, args.run, worker=args.worker_id,
                           join_timeout=args.join_timeout) if url else
                run_piped_worker(pipe_fds(pipe or ""), args.run, worker=args.worker_id,
                                 join_timeout=args.join_timeout))
        lost = asyncio.run(work)
    except (LineError, ShardError, LineBusError, TimeoutError) as err:
        raise LineRunFailed(f"line worker: {err}") from err
    if not args.quiet:
        print(f"line worker: shard of run {args.run} finished ({lost} presses lost)")
    return 0


def db_spec(text: str) -> Path | str:
    """``--db``: a PostgreSQL URL stays a string (a Path would fold its ``//``)."""
    return text if is_postgres(text) else Path(text)


def quiet_network_logs() -> None:
    """Devices dropping links on purpose make paho log errors; the report says it better."""
    for name in ("mqtt", "paho", "aiomqtt", "amqtt", "transitions", "impfactory"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.getLogger().setLevel(logging.CRITICAL)


def config_from_args(args: argparse.Namespace, faults: dict[str, float] | None = None,
                     outdated: float = 0.0, optical: OpticalConfig | None = None) -> LineConfig:
    return LineConfig(fixtures=args.fixtures, duts=args.duts, seed=args.seed,
                      faults=faults or {}, outdated_impos=outdated,
                      optical=optical or PRESETS["typical"], clock_scale=args.scale)


#: Where a line's DUTs come from, given its cloud and clock (default: emulated imps).
DutSourceFactory = Callable[[FactoryCloud, Clock], DutSource]


async def run_with_progress(config: LineConfig, broker: str, quiet: bool, *,
                            db: Path | str | None = None, factory_code: str | None = None,
                            app_code: str | None = None, workers: int = 1,
                            wifi: tuple[str, str] | None = None,
                            agent_code: str | None = None,
                            duts: DutSourceFactory | None = None,
                            remote: tuple[str, str, str] | None = None,
                            remote_workers: int = 0, run: str | None = None,
                            line_broker: str | None = None,
                            share: str | None = None) -> LineResult:
    """Start the cloud, run the line under a progress bar, stop everything.

    ``workers > 1`` (or ``remote_workers`` joining from elsewhere) runs the fixtures
    and DUTs in worker processes sharing the broker, with the cloud in this one (see
    tools/line_shards.py); a line whose firmware is Python runs them in one worker
    process over pipes even so (``guarded``), so a callback stuck in C is cut off.
    ``share``: the cloud's shared subscription group. ``duts`` puts other DUTs in
    front of the fixtures (``bench run``: the boards on benches).
    ``remote``: (endpoint, user, password) of a running cloud whose broker is
    ``broker`` (tools/line_remote.py): nothing is started.
    """
    ssid, password = wifi or (FACTORY_SSID, FACTORY_PASSWORD)
    cloud_cm: Any
    if remote is not None:
        cloud_cm = remote_cloud(*remote, broker, factory_code=factory_code, app_code=app_code,
                                agent_code=agent_code, wifi_ssid=ssid, wifi_password=password)
    else:
        cloud_cm = factory_cloud(broker, db, factory_code=factory_code, app_code=app_code,
                                 agent_code=agent_code, wifi_ssid=ssid, wifi_password=password,
                                 share=share)
    async with cloud_cm as cloud:
        # the cloud's link counts what crossed it (a remote cloud's is not in reach)
        stats = getattr(getattr(cloud, "cloud", None), "link", None)
        stats = stats.stats if stats is not None else None
        before = stats.received + stats.sent if stats is not None else 0
        with LineProgress(config.duts, quiet=quiet) as progress:
            try:
                if guarded(factory_code, app_code) and duts is None and workers == 1 \
                        and not remote_workers:
                    result = await run_sharded(config, cloud, progress, 1, run=run,
                                               piped=True)
                elif workers > 1 or remote_workers:
                    result = await run_sharded(config, cloud, progress, workers,
                                               remote=remote_workers, run=run,
                                               line_broker=line_broker, announce=not quiet)
                elif duts is None:
                    result = await run_line(config, cloud, progress)
                else:
                    clock = ScaledClock(config.clock_scale)
                    result = await Line(config, cloud, progress, clock=clock,
                                        duts=duts(cloud, clock)).run()
            except LineError as err:  # the options were good (checked before): the run failed
                raise LineRunFailed(str(err)) from err
        if stats is not None:
            result.link_messages = stats.received + stats.sent - before
        return result


def guarded(*codes: str | None) -> bool:
    """Whether a line running these codes runs its devices in a worker process: Python
    device code may hang in one call into C, which only ending its process stops
    (fixture/shard.py); Squirrel is metered in process."""
    return any(code is not None and is_python_code(code) for code in codes)


def print_summary(summary: LineSummary, report: dict[str, Path] | None = None) -> None:
    d = summary.to_dict()
    print(f"line: {d['duts']} DUTs on {d['fixtures']} fixtures (seed {d['seed']}): "
          f"{d['blessed']} blessed, {d['failed']} failed, yield {100 * summary.yield_:.1f}%")
    print(f"      {d['wall_s']:.2f} s wall, {d['duts_per_s']:.1f} DUTs/s")
    for reason, count in summary.failures.items():
        print(f"      {count:4d} x {reason}")
    if summary.agent_posts:
        print(f"agents: {summary.agent_posts} requests made by DUT agents, "
              f"{summary.agent_answered} answered 2xx")
    if report:
        print(f"report: {report['html']}  (also {report['json'].name}, {report['junit'].name})")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of a line run that ``line run`` and ``bench run`` share."""
    add_firmware_options(parser)
    parser.add_argument("--wifi", default=None, metavar="SSID:PASSWORD",
                        help="the factory WiFi the DUTs join and the example firmware flashes "
                             "(default factory-wifi:factory-password)")
    parser.add_argument("--db", type=db_spec, metavar="PATH|URL",
                        help="cloud database to use or reuse: a SQLite file or a postgresql:// "
                             "URL (default: a fresh temporary SQLite file)")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="write duts.json, junit.xml and report.html into DIR")


@dataclass
class RunInputs:
    """A line run's inputs, read and checked before anything starts."""

    factory_code: str | None
    app_code: str | None
    agent_code: str | None
    wifi: tuple[str, str] | None

    def cloud_options(self) -> dict[str, Any]:
        """``run_with_progress``'s keyword arguments for them."""
        return {"factory_code": self.factory_code, "app_code": self.app_code,
                "agent_code": self.agent_code, "wifi": self.wifi}


def read_run_inputs(args: argparse.Namespace) -> RunInputs:
    """Check ``add_run_options``'s options (and ``--min-yield``); read the code files."""
    if not 0.0 <= args.min_yield <= 1.0:
        raise LineInputError(f"--min-yield {args.min_yield} is not within 0..1")
    apply_lib_dirs(args.lib)
    factory_code = read_firmware(args.firmware, "--firmware")
    app_code = read_firmware(args.app, "--app")
    agent_code = read_agent(args.agent, "--agent")
    wifi = None
    if args.wifi is not None:
        ssid, sep, password = args.wifi.partition(":")
        if not sep or not ssid or len(ssid.encode()) > 32 or len(password.encode()) > 64:
            raise LineInputError("--wifi: expected SSID:PASSWORD (SSID 1-32 bytes, password "
                                 "up to 64)")
        wifi = (ssid, password)
    if args.report:
        prepare_report_dir(args.report)
    return RunInputs(factory_code, app_code, agent_code, wifi)


def report_run(args: argparse.Namespace, result: LineResult) -> int:
    """Write the reports, print the summary (``--json``: as JSON); the exit status."""
    report = write_reports(args.report, result.records, result.summary) if args.report else None
    if args.json:
        doc = result.summary.to_dict()
        if report:
            doc["report"] = {k: str(v) for k, v in report.items()}
        json.dump(doc, sys.stdout)
        print()
    else:
        print_summary(result.summary, report)
    return 0 if result.summary.yield_ >= args.min_yield else 1


def _remote(args: argparse.Namespace, outdated: float) -> tuple[str, str, str] | None:
    """(endpoint, user, password) with ``--cloud``; its companions checked."""
    if args.cloud is None:
        if args.user or args.password:
            raise LineInputError("--user and --password go with --cloud")
        return None
    check_endpoint(args.cloud)
    if not args.user or not args.password:
        raise LineInputError("--cloud needs --user and --password (the owner's)")
    if not args.broker.startswith("mqtt://"):
        raise LineInputError("--cloud needs --broker mqtt://HOST:PORT: the running cloud's "
                             "broker")
    parse_url(args.broker)
    if args.db is not None:
        raise LineInputError("--db is the database of a cloud the line starts: not with --cloud")
    if args.workers != 1:
        raise LineInputError("--workers is not supported with --cloud")
    if outdated:
        raise LineInputError("--outdated-impos needs an impOS release the line publishes: "
                             "not with --cloud")
    return args.cloud, args.user, args.password


def _run(args: argparse.Namespace) -> int:
    faults = parse_faults(args.fault)
    outdated = parse_rate(args.outdated_impos, "--outdated-impos")
    optical = PRESETS["typical"].with_spec(args.optical)
    config = config_from_args(args, faults, outdated, optical)
    if args.remote_workers < 0:
        raise LineInputError(f"--remote-workers must be at least 0, got {args.remote_workers}")
    if args.workers < (0 if args.remote_workers else 1):
        raise LineInputError(f"--workers must be at least 1 (0 with --remote-workers), "
                             f"got {args.workers}")
    if args.run is not None:
        lw.check_run(args.run)
    remote = _remote(args, outdated)
    inputs = read_run_inputs(args)
    quiet_network_logs()
    result = asyncio.run(run_with_progress(config, args.broker, args.json, db=args.db,
                                           workers=args.workers, remote=remote,
                                           remote_workers=args.remote_workers, run=args.run,
                                           line_broker=args.line_broker, share=args.share,
                                           **inputs.cloud_options()))
    return report_run(args, result)
