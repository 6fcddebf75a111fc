"""``impfactory broker serve``: the factory's MQTT broker, run on its own.

::

    impfactory broker serve [--port P] [--dir DIR]

In a factory the broker is separate infrastructure: it outlives a crashed cloud,
and clouds and line workers anywhere are pointed at it. This starts Mosquitto
configured for per-device credentials (cloud/broker.py: no anonymous clients,
the ACL of cloud/brokersec.py) with the account agent beside it
(cloud/broker_accounts.py), which takes the cloud's account commands over MQTT,
so a cloud on another machine adds device accounts to a broker it did not start.

It prints two lines and then serves until SIGINT or SIGTERM (exit 0)::

    mqtt://127.0.0.1:41883
    cloud: mqtt://impcloud:SECRET@127.0.0.1:41883

The first is what lines, floors and devices are given (``--broker``): devices need
no credentials to start with, they register their own account through the public
enrolment slots. The second, with the cloud's credentials, is for ``cloud serve
--broker`` only. ``DIR`` (default ``impbroker``) keeps the secrets, the port and
every device's account: the broker restarted on the same ``DIR`` listens on the same
port when it is free, and every device and cloud finds it again with its old
account. Killed with SIGKILL, it takes its Mosquitto with it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from impfactory.cloud.broker import BrokerServer, find_mosquitto
from impfactory.cloud.errors import BrokerError

DEFAULT_DIR = "impbroker"


def register(sub: Any) -> None:
    parser = sub.add_parser("broker", help="run the factory's MQTT broker on its own")
    broker_sub = parser.add_subparsers(dest="broker_command", metavar="COMMAND")
    serve = broker_sub.add_parser("serve", help="run Mosquitto for clouds and lines",
                                  description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--port", type=int, default=None,
                       help="loopback port (default: the DIR's last one when free, else any)")
    serve.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR),
                       help=f"keeps secrets, port and device accounts (default {DEFAULT_DIR})")
    serve.set_defaults(func=serve_command)
    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])


def serve_command(args: argparse.Namespace) -> int:
    if args.port is not None and not 1 <= args.port <= 65535:
        raise BrokerError("--port must be 1-65535")
    if not find_mosquitto():
        raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
    if args.dir.exists() and not args.dir.is_dir():
        raise BrokerError(f"--dir {args.dir} is not a directory")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = BrokerServer("mosquitto", port=args.port, home=args.dir)
    url = server.start()  # from the main thread: its Mosquitto dies with this process
    try:
        print(url, flush=True)
        print(f"cloud: {server.cloud_url}", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return 0
