"""``impfactory test``: impt-style impUnit tests on emulated imps (docs/testing.md).

Reads ``.impt.test`` (``--config``, else the one in the current folder, else
impt's defaults with the current folder as the test home) or runs the test files
named; builds each as ``impt test run`` does (the framework, the device or agent
file, the test file) and runs it on a fresh emulated imp on a board with virtual
peripherals. Prints what impt prints; ``--json`` prints one JSON object instead,
``--junit FILE`` also writes JUnit XML. Exit status 0 when every test passed, 1
when one failed (or a session could not run), 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from impfactory.firmware.imptest import config as test_config
from impfactory.firmware.imptest.device_target import DEFAULT_BOARD
from impfactory.firmware.imptest.report_junit import write_junit
from impfactory.firmware.imptest.report_text import ImptPrinter
from impfactory.firmware.imptest.runner import RunRequest, run
from impfactory.firmware.imptest.session import SessionOptions
from impfactory.tools.firmware_input import FirmwareInputError, add_lib_option


def register(sub: Any) -> None:
    p = sub.add_parser("test", help="run impt-style impUnit tests on emulated imps",
                       description=__doc__.split("\n\n")[1].replace("``", ""))
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="test files to run (default: the configuration's testFiles)")
    p.add_argument("--config", type=Path, metavar="PATH",
                   help=".impt.test to use, or its folder (default: ./.impt.test if present)")
    add_lib_option(p)
    p.add_argument("--timeout", type=float, metavar="S",
                   help="seconds a test may take on the emulated imp (default: the "
                        "configuration's timeout, else 30)")
    p.add_argument("--stop-on-fail", action="store_true", default=None,
                   help="stop at the first failure (as stopOnFail)")
    p.add_argument("--tests", metavar="PATTERN",
                   help="[testFile][:testCase][::testMethod], as impt test run --tests")
    p.add_argument("--device-file", metavar="FILE", help="device code under test "
                   "(overrides deviceFile)")
    p.add_argument("--agent-file", metavar="FILE", help="agent code under test "
                   "(overrides agentFile)")
    p.add_argument("--board", default=DEFAULT_BOARD, metavar="NAME|FILE",
                   help=f"the board the emulated imp sits on (default: {DEFAULT_BOARD}; "
                        "imp005-fixture, or a board JSON file)")
    p.add_argument("--fault", action="append", default=[], metavar="MODEL.FAULT[=VALUE]",
                   help="inject a fault into a board model, e.g. sensor.wrong_id=0 "
                        "(repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object, not impt's log")
    p.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML here")
    p.set_defaults(func=_cmd_test)


def _config(args: argparse.Namespace) -> test_config.TestConfig:
    if args.config is not None:
        config = test_config.load_config(args.config)
    elif (Path.cwd() / test_config.CONFIG_NAME).is_file():
        config = test_config.load_config(Path.cwd() / test_config.CONFIG_NAME)
    else:
        config = test_config.TestConfig(home=Path.cwd())
    timeout = None if args.timeout is None else test_config.check_timeout(args.timeout)
    cwd = Path.cwd()
    return config.with_options(
        timeout_s=timeout, stop_on_fail=args.stop_on_fail,
        device_file=None if args.device_file is None else str(cwd / args.device_file),
        agent_file=None if args.agent_file is None else str(cwd / args.agent_file))


def _cmd_test(args: argparse.Namespace) -> int:
    for folder in args.lib:
        if not folder.is_dir():
            raise FirmwareInputError(f"--lib {folder}: not a folder")
    config = _config(args)
    options = SessionOptions(timeout_s=config.timeout_s, stop_on_fail=config.stop_on_fail,
                             allow_disconnect=config.allow_disconnect, board=args.board,
                             faults=tuple(args.fault),
                             lib_dirs=tuple(str(d.resolve()) for d in args.lib))
    request = RunRequest(config, tuple(args.files), test_config.parse_selection(args.tests),
                         options)
    result = run(request, None if args.json else ImptPrinter(sys.stdout))
    if args.junit is not None:
        write_junit(args.junit, result)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    return 0 if result.passed else 1
