"""``impfactory demo``: the main job on embedded defaults, from a machine with nothing set up.

Starts a broker (Mosquitto when installed, else the embedded one) and a cloud on a
fresh database, builds a product with its fixture, DUT and production groups and
the example firmware, then runs a small line (2 fixtures, 20 DUTs each) with a few
faults a factory meets: DUTs misplaced in front of the fixture, a changed WiFi key,
boards out of test limits, DUTs whose network link drops mid-test, and some DUTs
that must update impOS first. It shows
progress, prints the summary and writes the report (JSON, JUnit XML, HTML) into
``./impfactory-report`` (``--report DIR`` elsewhere); the next demo replaces it,
so reports never pile up unseen.

The BlinkUp path alone (encode, light, decode) is ``impfactory blinkup``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from impfactory.cloud import broker as mqtt_broker
from impfactory.fixture.report import prepare_report_dir, write_reports
from impfactory.hw.optical import PRESETS
from impfactory.tools.cmd_line import (
    LineInputError,
    add_line_options,
    config_from_args,
    print_summary,
    quiet_network_logs,
    run_with_progress,
)

DEMO_FAULTS = {"misplaced": 0.05, "wrong_wifi": 0.05, "test_fail": 0.05, "link_drop": 0.05}
DEMO_OUTDATED_IMPOS = 0.1
DEFAULT_REPORT = Path("impfactory-report")


def _broker_name(spec: str) -> str:
    """Which broker ``spec`` means here, so a fresh machine's user sees what was chosen."""
    if spec == "auto":
        found = mqtt_broker.find_mosquitto()
        return f"Mosquitto, {found}" if found else "embedded; Mosquitto is not installed"
    return spec


def _run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise LineInputError(f"--workers must be at least 1, got {args.workers}")
    config = config_from_args(args, DEMO_FAULTS, DEMO_OUTDATED_IMPOS, PRESETS["typical"])
    report_dir = prepare_report_dir(args.report.resolve())  # printed whole: findable
    if not args.json:
        faults = ", ".join(f"{name} {rate:.0%}" for name, rate in DEMO_FAULTS.items())
        print(f"impfactory demo: {config.fixtures} BlinkUp fixtures x {config.duts} DUTs over "
              f"a real MQTT broker ({_broker_name(args.broker)}) and an emulated impCloud")
        print(f"  faults injected: {faults}; {DEMO_OUTDATED_IMPOS:.0%} of DUTs need an "
              "impOS update first")
    quiet_network_logs()
    result = asyncio.run(run_with_progress(config, args.broker, args.json,
                                           workers=args.workers))
    report = write_reports(report_dir, result.records, result.summary)
    if args.json:
        doc = result.summary.to_dict() | {"report": {k: str(v) for k, v in report.items()}}
        json.dump(doc, sys.stdout)
        print()
    else:
        print_summary(result.summary, report)
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("demo", help="run a small emulated factory line on embedded defaults",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_line_options(parser, fixtures=2, duts=40)
    parser.add_argument("--report", type=Path, metavar="DIR", default=DEFAULT_REPORT,
                        help=f"where to write the report (default ./{DEFAULT_REPORT}, "
                             "replaced by the next demo)")
    parser.set_defaults(func=_run)
