"""``impfactory cloud serve``: run the impCloud (device link, and the REST API if asked).

::

    impfactory cloud serve --broker auto --db impcloud.db --api-port 8080 --owner me:secret
    impfactory cloud devices --db impcloud.db [--json]
    impfactory cloud logs DEVICE_ID --db impcloud.db [--json]
    impfactory cloud testzone --endpoint http://127.0.0.1:8080/v5 --user me --password secret

Starts (or joins) the broker, opens the database (WAL; a restart loses nothing),
serves devices over MQTT, runs their agents and, with ``--api-port``, the
impCentral-compatible REST API. Agent URLs are served under ``/agent/<agent id>``
by the REST API's server, or without ``--api-port`` by a server of their own on a
free loopback port. Logs go to stderr, with one access-log line per REST request
(method, path, status, milliseconds) unless ``--quiet``; once ready it prints one
JSON line to stdout with the broker URL, the API endpoint, the agents' base URL and
the database path, so scripts can wait for it.
SIGINT or SIGTERM stop it cleanly (exit 0). A busy ``--api-port`` is refused
before anything starts (no broker, no database, no account).

``devices`` and ``logs`` read a cloud's database; ``testzone`` makes a product
with its Test Zone groups and the example firmware over the REST API
(tools/cloud_testzone.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from impfactory.cloud.broker import BrokerServer
from impfactory.cloud.errors import InvalidError, NotFoundError
from impfactory.cloud.model import Device
from impfactory.cloud.server import Cloud
from impfactory.cloud.service import CloudService
from impfactory.cloud.store import open_store
from impfactory.cloud.store.postgres import safe_dsn
from impfactory.tools import cloud_testzone
from impfactory.tools.firmware_input import add_lib_option, apply_lib_dirs

log = logging.getLogger("impfactory.cloud.serve")


def register(sub: Any) -> None:
    parser = sub.add_parser("cloud", help="run the impCloud")
    cloud_sub = parser.add_subparsers(dest="cloud_command", metavar="COMMAND")
    serve = cloud_sub.add_parser("serve", help="serve devices over MQTT (and the REST API)")
    serve.add_argument("--broker", default="auto",
                       help="auto | mosquitto | embedded | mqtt://[impcloud:PASSWORD@]HOST:PORT"
                            " (default auto; a broker started elsewhere needs the cloud's"
                            " credentials in its URL)")
    serve.add_argument("--db", default="impcloud.db",
                       help="SQLite database file, or postgresql://USER[:PASSWORD]@HOST:PORT/DB "
                            "for a database several clouds share (the 'postgres' extra)")
    serve.add_argument("--share", default=None, metavar="GROUP",
                       help="serve devices through the MQTT shared subscription $share/GROUP/…: "
                            "several clouds on one broker and one PostgreSQL split the devices")
    serve.add_argument("--no-agents", action="store_true",
                       help="run no agents here: with --share, relay this cloud's agent events "
                            "to the group's one cloud that runs them")
    serve.add_argument("--api-port", type=int, default=None,
                       help="serve the REST API (/v5) on this loopback port (0: any free one)")
    serve.add_argument("--owner", default=None, metavar="USER:PASSWORD",
                       help="create this owner account on first start")
    serve.add_argument("--agent-url", default=None,
                       help="base URL of agents (default https://agent.electricimp.com)")
    serve.add_argument("--log-level", default="INFO",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_lib_option(serve)
    serve.add_argument("--quiet", action="store_true",
                       help="no access-log line per REST request")
    serve.set_defaults(func=serve_command)

    devices = cloud_sub.add_parser("devices", help="list the devices a cloud database knows")
    devices.add_argument("--db", default="impcloud.db", help="SQLite database file")
    devices.add_argument("--json", action="store_true", help="one JSON object per device")
    devices.set_defaults(func=devices_command)

    logs = cloud_sub.add_parser("logs", help="print one device's log")
    logs.add_argument("device_id")
    logs.add_argument("--db", default="impcloud.db", help="SQLite database file")
    logs.add_argument("--json", action="store_true", help="one JSON object per line")
    logs.set_defaults(func=logs_command)

    cloud_testzone.add_parser(cloud_sub, dict(os.environ))
    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])


def serve_command(args: argparse.Namespace) -> int:
    apply_lib_dirs(args.lib)  # deployments' #require is checked against these too
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    owner = None
    if args.owner is not None:
        user, sep, password = args.owner.partition(":")
        if not sep or not user or not password:
            raise InvalidError("--owner must be USER:PASSWORD")
        owner = (user, password)
    if args.api_port is not None and not 0 <= args.api_port <= 65535:
        raise InvalidError("--api-port must be 0-65535")
    if args.share is not None and not re.fullmatch(r"[a-z0-9_-]{1,32}", args.share):
        raise InvalidError("--share must be 1-32 of a-z, 0-9, '-' and '_'")
    if args.api_port:
        _check_port_free(args.api_port)
    asyncio.run(serve(args.broker, args.db, args.api_port, owner, args.agent_url,
                      access_log=not args.quiet, share=args.share,
                      agents=not args.no_agents))
    return 0


def _check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Refuse a port something already listens on, before the broker or an account exists.

    (Another program may still take it in the moment before the API binds; then
    the bind fails with the same one-line error, only later.)
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the API binds
        try:
            probe.bind((host, port))
        except OSError as err:
            raise InvalidError(f"--api-port {port}: cannot listen on {host}:{port} "
                               f"({err.strerror or err})") from None


def _open_existing(path: str) -> CloudService:
    if not Path(path).is_file():
        raise NotFoundError(f"no cloud database at {path}")
    return CloudService(open_store(path))


def devices_command(args: argparse.Namespace) -> int:
    svc = _open_existing(args.db)
    groups = {g.id: g for g in svc.list_groups()}
    shown = 0
    for d in _all_devices(svc):
        shown += 1
        group = groups.get(d.group_id) if d.group_id else None
        row = {"device_id": d.id, "mac": d.mac, "group": group.name if group else None,
               "group_type": group.type.value if group else None, "blessed": d.blessed,
               "online": d.online, "impos_version": d.impos_version,
               "deployment": d.deployment_id, "led": d.led}
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{d.id}  {'blessed' if d.blessed else '       '}  "
                  f"{'online ' if d.online else 'offline'}  {row['group_type'] or '-':<32} "
                  f"{row['group'] or '-'}")
    if not shown:  # said on stderr: stdout stays a clean (empty) list for scripts
        print(f"no devices in {args.db}", file=sys.stderr)
    return 0


def _all_devices(svc: CloudService, page: int = 1000) -> Iterator[Device]:
    """Every device, a page at a time: a fleet of any size prints in constant memory."""
    offset = 0
    while batch := svc.list_devices(limit=page, offset=offset):
        yield from batch
        offset += len(batch)


def logs_command(args: argparse.Namespace) -> int:
    svc = _open_existing(args.db)
    svc.get_device(args.device_id)
    page = 1
    shown = 0
    while entries := svc.device_logs(args.device_id, page=page, size=500):
        shown += len(entries)
        for e in entries:
            if args.json:
                print(json.dumps({"ts": e.ts, "type": e.type, "msg": e.msg}))
            else:
                print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(e.ts))} "
                      f"[{e.type}] {e.msg}")
        page += 1
    if not shown:
        print(f"no log entries for {args.device_id} in {args.db}", file=sys.stderr)
    return 0


def broker_home(broker: str, db_path: str) -> Path | None:
    """Where a broker the cloud starts keeps its state: ``<db>.broker`` beside the database.

    The broker is part of the cloud: it stops with it, and dies with it when the
    cloud is killed (cloud/broker.py). The cloud restarted on the same database
    starts it again from this directory: on the same port when it is still free,
    with the same passwords and every device's account (Mosquitto; the embedded
    broker keeps its accounts in memory, so its devices register again), so
    devices reconnecting to the old URL find it. A broker named by URL is someone
    else's: nothing is kept.
    """
    if broker.startswith("mqtt://"):
        return None
    return Path(f"{db_path}.broker")


async def serve(broker: str, db_path: str, api_port: int | None,
                owner: tuple[str, str] | None, agent_url: str | None, *,
                access_log: bool = True, share: str | None = None,
                agents: bool = True) -> None:
    """Run until SIGINT/SIGTERM."""
    # imported here: every CLI command loads this module, only serve needs the API
    from impfactory.cloud.api_auth import AccountBook
    from impfactory.cloud.api_server import ApiService

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    db = open_store(db_path)
    # a broker of our own keeps its state beside the database, so a restarted cloud
    # starts it on the same port with every device's account (see broker_home)
    server = BrokerServer(broker, home=broker_home(broker, db_path))
    try:
        url = server.start()  # on this (the main) thread: the broker dies with the process
    except BaseException:
        db.close()
        raise
    api: ApiService | None = None
    try:
        accounts = AccountBook(db)
        kwargs: dict[str, Any] = {"accounts": accounts, "share": share, "agents": agents}
        if agent_url:
            kwargs["agent_base_url"] = agent_url
        if api_port is None and agents:
            kwargs["agent_port"] = 0  # agent URLs on a server of their own
        async with Cloud(db, server.cloud_url, **kwargs) as cloud:
            if owner is not None:
                account = accounts.ensure_owner(*owner)
                log.info("owner account %s (%s)", owner[0], account.id)
            if api_port is not None:
                api = ApiService(cloud.service, accounts, port=api_port,
                                 access_log=access_log, outbound=cloud.outbound,
                                 agents=cloud.agents, agent_url=agent_url,
                                 lease_holder=cloud.link.lease_holder)
                await api.start()
                log.info("REST API at %s", api.endpoint)
            agent_base = cloud.service.agent_base_url
            log.info("agent URLs at %s/<agent id>", agent_base)
            print(json.dumps({"broker": url, "api": api.endpoint if api else None,
                              "agents": agent_base, "db": safe_dsn(db_path)}), flush=True)
            log.info("impCloud serving devices on %s (db %s)", url, safe_dsn(db_path))
            await stop.wait()
            stats = cloud.link.stats
            log.info("stopping: %d device messages received, %d sent", stats.received,
                     stats.sent)
            if api is not None:
                await api.stop()
    finally:
        with contextlib.suppress(Exception):
            db.close()
        server.stop()
