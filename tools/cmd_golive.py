"""``impfactory golive``: build the Production Zone from a Test Zone in one call.

    impfactory golive --endpoint http://127.0.0.1:PORT/v5 --user U --password P \\
        --from MyPreFactoryDG --production MyProductionDG --dut MyDUTDG \\
        --fixture MyFixtureDG [--load-code-after-blessing no] \\
        [--webhook blessing=http://host/hook] [--webhook blinkup=http://host/b,form] [--json]

It is impCentral's Go Live wizard as one request (``POST
/v5/devicegroups/{id}/go_live``): it copies the promoted deployments of the test
fixture group and its two targets into three new Production Zone groups, sets
the load-code setting and the webhooks, and prints what it made.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from impfactory.cloud.api_client import ApiClient
from impfactory.errors import ImpFactoryError


class GoLiveUsageError(ImpFactoryError, ValueError):
    """A command-line value that cannot be turned into a Go Live request."""


def _group(text: str) -> dict[str, str]:
    name, _, descr = text.partition(":")
    if not name.strip():
        raise GoLiveUsageError(f"a group needs a name (NAME[:DESCRIPTION]), got {text!r}")
    return {"name": name.strip(), "description": descr.strip()}


def _webhook(text: str) -> dict[str, str]:
    event, sep, rest = text.partition("=")
    url, _, kind = rest.partition(",")
    if not sep or not url:
        raise GoLiveUsageError(f"--webhook is EVENT=URL[,form], got {text!r}")
    if kind not in ("", "json", "form"):
        raise GoLiveUsageError(f"webhook content is json or form, got {kind!r}")
    ctype = "application/x-www-form-urlencoded" if kind == "form" else "application/json"
    return {"event": event, "url": url, "content_type": ctype}


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    """The Go Live body from the parsed arguments."""
    attrs: dict[str, Any] = {"production": _group(args.production), "dut": _group(args.dut),
                             "fixture": _group(args.fixture),
                             "load_code_after_blessing": args.load_code_after_blessing == "yes",
                             "webhooks": [_webhook(w) for w in args.webhook]}
    return {"data": {"type": "go_live", "attributes": attrs}}


def run(args: argparse.Namespace) -> int:
    """Log in, find the test fixture group, Go Live, print the summary."""
    if not args.user or not args.password:
        raise GoLiveUsageError("give --user and --password (or IMPT_USER / IMPT_PASSWORD)")
    body = build_request(args)
    client = ApiClient(args.endpoint).login(args.user, args.password)
    group = client.find_group(args.source)
    answer = client.call("POST", f"/devicegroups/{group['id']}/go_live", body)
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        for line in answer["data"]["attributes"]["summary"]:
            print(line)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``impfactory golive``."""
    p = subparsers.add_parser(
        "golive", help="build the Production Zone from a test fixture group (Go Live)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", default=os.environ.get("IMPT_ENDPOINT"), required=
                   "IMPT_ENDPOINT" not in os.environ, help="API base, http://HOST:PORT/v5")
    p.add_argument("--user", default=os.environ.get("IMPT_USER"))
    p.add_argument("--password", default=os.environ.get("IMPT_PASSWORD"))
    p.add_argument("--from", dest="source", required=True, metavar="GROUP",
                   help="the test fixture group (id or name)")
    p.add_argument("--production", required=True, metavar="NAME[:DESCR]")
    p.add_argument("--dut", required=True, metavar="NAME[:DESCR]")
    p.add_argument("--fixture", required=True, metavar="NAME[:DESCR]")
    p.add_argument("--load-code-after-blessing", choices=("yes", "no"), default="yes")
    p.add_argument("--webhook", action="append", default=[], metavar="EVENT=URL[,form]",
                   help="blessing, blinkup or deployment; repeatable")
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    p.set_defaults(func=run)
