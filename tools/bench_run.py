"""``impfactory bench run``: the factory line, with the boards on bench controllers as DUTs.

The same line as ``impfactory line run`` (``fixture/line.py``, its cloud from
``tools/line_setup.py``, its progress, summary, reports and exit status), with
one difference: DUT ``i`` is the board on the controller named by the ``i``-th
``--port`` (``fixture.dut_bench.BenchDut``) instead of an emulated imp. The
fixtures are emulated imps running the factory firmware; each flash goes out
on the bench LED in front of the DUT, the DUT's status LED is read by the bench's
colour sensor, its UART lines are kept, and who it is and whether it was blessed
come from the cloud's record of its enrolment token. A DUT must reach the same
broker (``--broker``): an emulated bench DUT does with ``bench emulate --server
URL``; a real imp enrols with Electric Imp's cloud instead, so then only its LED
speaks (docs/bench.md).

Exit status: 0 when the yield reaches ``--min-yield`` (default 1: every bench DUT
blessed), 1 below it or when a controller that answered failed during the run,
2 for bad input (a port where no controller answers, an unreadable firmware file).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from impfactory.clock import Clock
from impfactory.fixture.dut_bench import BenchDuts
from impfactory.fixture.line import LineConfig
from impfactory.hw.bench import BenchDriver, BenchError, BenchLinkError, BenchTimeoutError
from impfactory.tools.cmd_line import (
    add_run_options,
    quiet_network_logs,
    read_run_inputs,
    report_run,
    run_with_progress,
)
from impfactory.tools.line_setup import FactoryCloud


class BenchLineFailed(BenchError):
    """A controller that answered at first failed during the run (exit status 1)."""

    exit_code = 1


@contextlib.contextmanager
def open_benches(ports: list[str], timeout: float, retries: int) -> Iterator[list[BenchDriver]]:
    """Every ``--port`` opened and greeted (a silent one is bad input, before any cloud
    starts); a controller that fails later fails the run."""
    if len(set(ports)) != len(ports):
        raise BenchError(f"a bench is named twice: {' '.join(ports)}")
    with contextlib.ExitStack() as stack:
        drivers = []
        for port in ports:
            driver = stack.enter_context(BenchDriver.open(port, timeout=timeout,
                                                          retries=retries))
            driver.identify()
            drivers.append(driver)
        try:
            yield drivers
        except (BenchTimeoutError, BenchLinkError) as err:
            raise BenchLineFailed(str(err)) from err


def _cmd_run(args: argparse.Namespace) -> int:
    if args.fixtures < 1:
        raise BenchError(f"--fixtures must be at least 1, got {args.fixtures}")
    inputs = read_run_inputs(args)
    config = LineConfig(fixtures=args.fixtures, duts=len(args.port), seed=args.seed,
                        clock_scale=args.scale, dut_timeout_wall=args.wait)
    quiet_network_logs()
    with open_benches(args.port, args.timeout, args.retries) as drivers:

        def bench_duts(cloud: FactoryCloud, clock: Clock) -> BenchDuts:
            return BenchDuts(drivers, clock, lookup=cloud.dut_verdict)

        result = asyncio.run(run_with_progress(config, args.broker, args.json, db=args.db,
                                               duts=bench_duts, **inputs.cloud_options()))
    if not args.json:
        for record in result.records:
            verdict = "blessed" if record.blessed else f"FAILED ({record.failure_reason})"
            print(f"DUT {record.dut_id}: {verdict}")
            for line in record.uart:
                print(f"  uart: {line}")
    return report_run(args, result)


def register(cmds: Any, positive: Any) -> None:
    """Add ``run`` to the ``bench`` subcommands (``positive``: its number type)."""
    run = cmds.add_parser("run", help="the factory line with the boards on benches as DUTs",
                          description=__doc__.split("\n\n")[0])
    run.add_argument("--port", action="append", required=True, metavar="PORT",
                     help="a bench controller whose board is a DUT (repeatable: one DUT per "
                          "bench): /dev/ttyUSB0, a pty path, or a pyserial URL")
    run.add_argument("--timeout", type=positive, default=0.5,
                     help="seconds to wait for each controller answer (default 0.5)")
    run.add_argument("--retries", type=int, default=3,
                     help="resends before a controller counts as gone (default 3)")
    run.add_argument("--fixtures", type=int, default=1, metavar="F",
                     help="emulated BlinkUp fixtures; bench i is in front of fixture i %% F "
                          "(default 1)")
    run.add_argument("--seed", type=int, default=0, metavar="S",
                     help="seed of the line (its fixtures' serials; default 0)")
    run.add_argument("--broker", default="auto",
                     help="MQTT broker the cloud and the DUTs share: auto, or "
                          "mqtt://impcloud:PASSWORD@HOST:PORT (the cloud's credentials)")
    run.add_argument("--scale", type=positive, default=10.0,
                     help="clock speed-up of the line and its emulated fixtures (default 10)")
    run.add_argument("--wait", type=positive, default=120.0,
                     help="wall seconds to wait for a DUT's verdict after its flash")
    add_run_options(run)
    run.add_argument("--min-yield", type=float, default=1.0, metavar="Y",
                     help="exit 1 when the yield is below Y (0..1; default 1: every DUT blessed)")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(func=_cmd_run)
