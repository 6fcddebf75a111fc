"""``impfactory perf line``: how many DUTs per second a fault-free line gets through.

Runs ``--duts N`` DUTs on ``--fixtures F`` fixtures over Mosquitto (the real broker
CI installs; ``--broker`` to choose another), no faults, and prints the DUTs per
second from the first fixture's power-on to the last DUT's record (the cloud and
broker start-up are not counted), and the peak resident memory of this process
and of its largest child (the broker, or a line worker with ``--workers``).
``--json`` prints ``duts_per_s`` and the rest as one object.

DUTs/s depends on what else the machine is doing; ``cpu_ms_per_dut`` (CPU time of
this process, its workers and the broker, set-up included, over the DUTs) barely
does, so it is the figure to compare changes with on a shared machine.

In the same run, before and after the line (their mean, so a neighbour's burst on
one side moves it less), it measures the raw publish/subscribe rate of a broker of
the same kind with the same client library (tools/broker_reference.py:
``--raw-messages`` messages, default ``RAW_MESSAGES``, of ``RAW_SIZE`` bytes from the
cloud's account to ``RAW_SUBSCRIBERS`` device accounts; fewer only where a run checks
the command rather than measures) and prints ``broker_ratio``: the line's message
rate (every message the cloud received from or sent to a device, over the line's
wall time) over that raw rate. ``messages_per_dut`` says how many the flow takes.

``broker_ratio_ceiling`` is the most ``broker_ratio`` could be on this machine with
this flow, from figures of the same run: every line message costs at least what a raw
one costs (``raw_cpu_us_per_message``: the client's CPU both sides, and the broker's
when it is a process this one started, first publish to last delivery), and every DUT
at least the CPU of starting its two programs in fresh devices
(``vm_start_ms_per_dut``: the factory firmware and the application, each run to its
top level, medians in this process); at most ``cores`` CPUs work, so the line carries
at most ``cores / (raw_cpu_per_message + vm_start_per_dut / messages_per_dut)``
messages a second. Everything else a DUT costs (its light signal, enrolment, sealing,
the store) only lowers the real figure under it.

``--language`` picks the example firmware's language: ``squirrel`` (what an imp
runs, the default), ``python`` (the same firmware for the Python engine), or
``both``: the same line twice in one run, Python first, with both figures and
their ratio (``squirrel_over_python``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from impfactory.cloud.broker import BrokerServer
from impfactory.errors import ImpFactoryError
from impfactory.fixture.report import prepare_report_dir, write_reports
from impfactory.hw.optical import PRESETS
from impfactory.tools.broker_reference import RawRate, raw_rate
from impfactory.tools.cmd_line import config_from_args, quiet_network_logs, run_with_progress
from impfactory.tools.perf_squirrel import DUT_PARAMS, start_cpu_ms

RAW_MESSAGES = 20_000
RAW_SIZE = 256
"""Bytes per message of the raw reference: about a sealed line message."""
RAW_SUBSCRIBERS = 100


def _raw_reference(broker: str, messages: int) -> tuple[RawRate, bool]:
    """The broker's raw message rate, on a broker started the way the line starts its
    own, and whether its CPU is in the rate's (a Mosquitto this run started, read from
    the system; an embedded one, inside this process; not an external one)."""
    server = BrokerServer(broker)
    with server:
        rate = asyncio.run(raw_rate(server.cloud_url, messages=messages, size=RAW_SIZE,
                                    subscribers=RAW_SUBSCRIBERS,
                                    broker_cpu=server.cpu_seconds))
    return rate, rate.broker_cpu_s is not None or server.kind == "embedded"


def _cores() -> int:
    """CPUs this process may run on (the line's workers and broker share them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ratio_ceiling(cores: int, raw_per_s: float, raw_cpu_us: float, vm_ms_per_dut: float,
                  messages_per_dut: float) -> float:
    """The highest ``broker_ratio`` ``cores`` CPUs allow when each line message costs at
    least ``raw_cpu_us`` and each DUT ``vm_ms_per_dut`` more (see the module's text)."""
    per_message_s = raw_cpu_us / 1e6 + vm_ms_per_dut / 1000 / max(messages_per_dut, 1e-9)
    return cores / per_message_s / raw_per_s


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that have ended (workers, broker)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _run(args: argparse.Namespace) -> int:
    if args.language != "both":
        return _run_one(args, args.language)
    docs = {}
    for language in ("python", "squirrel"):
        docs[language] = _measure(args, language)
    doc = {**docs, "squirrel_over_python": {
        "duts_per_s": round(docs["squirrel"]["duts_per_s"] / docs["python"]["duts_per_s"], 2),
        "cpu_ms_per_dut": round(docs["squirrel"]["cpu_ms_per_dut"]
                                / docs["python"]["cpu_ms_per_dut"], 2)}}
    if args.json:
        json.dump(doc, sys.stdout)
        print()
    else:
        for language in ("python", "squirrel"):
            _print(docs[language])
        ratio = doc["squirrel_over_python"]
        print(f"squirrel/python: {ratio['duts_per_s']}x the DUTs/s, "
              f"{ratio['cpu_ms_per_dut']}x the CPU per DUT")
    failed = any(d["failed"] for d in docs.values())
    return 1 if failed else 0


def _run_one(args: argparse.Namespace, language: str) -> int:
    doc = _measure(args, language)
    if args.json:
        json.dump(doc, sys.stdout)
        print()
    else:
        _print(doc)
    return 0 if doc["failed"] == 0 else 1


def _measure(args: argparse.Namespace, language: str) -> dict[str, Any]:
    from impfactory.firmware import examples
    from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID

    if args.duts < 1 or args.fixtures < 1 or args.workers < 1 or args.raw_messages < 1:
        raise ImpFactoryError("--duts, --fixtures, --workers and --raw-messages must be at "
                              "least 1")
    config = config_from_args(args, {}, 0.0, PRESETS["typical"])
    if args.report:
        prepare_report_dir(args.report)
    quiet_network_logs()
    python = language == "python"
    factory = examples.factory_source(FACTORY_SSID, FACTORY_PASSWORD, python=python)
    app = examples.application_source(python=python)
    vm_ms = start_cpu_ms(factory, DUT_PARAMS) + start_cpu_ms(app, {})
    raw_before, broker_counted = _raw_reference(args.broker, args.raw_messages)
    started, cpu_before = time.perf_counter(), _cpu_s()
    result = asyncio.run(run_with_progress(config, args.broker, args.json,
                                           factory_code=factory, app_code=app,
                                           workers=args.workers))
    total = time.perf_counter() - started
    cpu = _cpu_s() - cpu_before
    raw_after, _ = _raw_reference(args.broker, args.raw_messages)
    raw_rate_s = (raw_before.messages_per_s + raw_after.messages_per_s) / 2
    raw_cpu_us = (raw_before.cpu_us_per_message + raw_after.cpu_us_per_message) / 2
    s = result.summary
    messages_per_dut = result.link_messages / max(1, s.duts)
    cores = _cores()
    doc: dict[str, Any] = {
        "language": language,
        "duts": s.duts,
        "fixtures": config.fixtures,
        "blessed": s.blessed,
        "failed": s.failed,
        "failures": s.failures,
        "broker": args.broker,
        "workers": args.workers,
        "clock_scale": config.clock_scale,
        "wall_s": round(s.wall_s, 3),
        "total_s": round(total, 3),
        "duts_per_s": round(s.duts_per_s, 1),
        "cpu_s": round(cpu, 2),
        "lost_presses": result.lost_presses,
        "cpu_ms_per_dut": round(1000 * cpu / max(1, s.duts), 2),
        "messages_per_dut": round(messages_per_dut, 1),
        "line_messages_per_s": round(result.link_messages / max(s.wall_s, 1e-9)),
        "raw_messages_per_s": round(raw_rate_s),
        "raw_before_after": [round(raw_before.messages_per_s), round(raw_after.messages_per_s)],
        "broker_ratio": round(result.link_messages / max(s.wall_s, 1e-9) / raw_rate_s, 3),
        "cores": cores,
        "raw_cpu_us_per_message": round(raw_cpu_us, 1),
        "raw_broker_cpu_counted": broker_counted,
        "vm_start_ms_per_dut": round(vm_ms, 2),
        "broker_ratio_ceiling": round(ratio_ceiling(cores, raw_rate_s, raw_cpu_us, vm_ms,
                                                    messages_per_dut), 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        # the largest finished child: the broker, or a line worker with --workers
        "child_peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }
    if args.report:
        write_reports(args.report, result.records, s)
    return doc


def _print(doc: dict[str, Any]) -> None:
    print(f"perf line ({doc['language']} firmware): {doc['duts']} DUTs on {doc['fixtures']} "
          f"fixtures over {doc['broker']}: {doc['duts_per_s']} DUTs/s ({doc['wall_s']:.1f} s "
          f"line, {doc['total_s']:.1f} s with set-up), {doc['blessed']} blessed, "
          f"{doc['failed']} failed")
    print(f"           {doc['cpu_ms_per_dut']} ms CPU per DUT (all processes, set-up "
          f"included: {doc['cpu_s']} s)")
    print(f"           {doc['messages_per_dut']} broker messages per DUT: "
          f"{doc['line_messages_per_s']}/s against {doc['raw_messages_per_s']}/s raw "
          f"(broker_ratio {doc['broker_ratio']})")
    print(f"           broker_ratio can be at most {doc['broker_ratio_ceiling']} here: "
          f"{doc['raw_cpu_us_per_message']} us CPU per raw message, "
          f"{doc['vm_start_ms_per_dut']} ms to start a DUT's two programs, "
          f"{doc['cores']} CPUs")
    print(f"           peak memory {doc['peak_rss_mib']} MiB (this process), "
          f"{doc['child_peak_rss_mib']} MiB (largest child: broker or worker)")


def register(sub: Any) -> None:
    parser = sub.add_parser("line", help="DUTs per second through a fault-free line",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duts", type=int, default=2000, metavar="N",
                        help="devices under test (default 2000)")
    parser.add_argument("--fixtures", type=int, default=16, metavar="F",
                        help="BlinkUp fixtures (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--broker", default="mosquitto", metavar="mosquitto|auto|embedded|URL",
                        help="broker (default mosquitto)")
    parser.add_argument("--scale", type=float, default=200.0,
                        help="line clock speed-up over the wall (default 200)")
    parser.add_argument("--workers", type=int, default=2, metavar="W",
                        help="processes running the fixtures and DUTs (default 2, one per "
                             "core here; the cloud stays in this one)")
    parser.add_argument("--raw-messages", type=int, default=RAW_MESSAGES, metavar="N",
                        help=f"messages of the broker's raw rate, measured before and after "
                             f"the line (default {RAW_MESSAGES:,})")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="also write the line report (after the figures are taken)")
    parser.add_argument("--language", choices=("squirrel", "python", "both"),
                        default="squirrel",
                        help="the example firmware's language (both: one run each, compared)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=_run)
