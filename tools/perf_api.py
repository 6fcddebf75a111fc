"""``impfactory perf api``: REST API requests per second and latency, over real HTTP.

Starts the API (management plane, SQLite in a temporary file) on a free loopback
port, fills it with a product, a Test Zone and ``--devices`` enrolled devices,
then runs ``--clients`` keep-alive HTTP clients (threads, like separate tools) for
``--seconds`` each against a mix of what impt does most: ``GET /accounts/me``,
``GET /devices`` (page 1 of 100), ``GET /devicegroups/{id}``, and a
``POST /deployments`` every tenth call. Printed: requests/s, p50 and p99 latency
in ms, the count of non-2xx answers (which must be 0), and each call's p50 (so a
slow route shows itself).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from impfactory.cloud.api_thread import ApiThread
from impfactory.errors import ImpFactoryError


class PerfApiUsageError(ImpFactoryError, ValueError):
    """A ``perf api`` option out of range."""


def _fill(api: ApiThread, devices: int) -> dict[str, str]:
    svc = api.service.svc
    owner = api.service.accounts.create("owner", "pw")
    product = svc.create_product(owner.id, "Bench")
    dev = svc.create_group(product.id, "development_devicegroup", "BenchDev")
    svc.ctx.repos.devices.add_many(
        (f"0c2a{i:012x}", f"{i:012x}", owner.id, owner.plan_id, f"a{i:011x}", time.time())
        for i in range(devices))
    return {"group": dev.id, "group_type": dev.type.value}


def _client(endpoint: str, token: str, ids: dict[str, str], seconds: float,
            lat: list[float], errors: list[int], by_call: dict[str, list[float]]) -> None:
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=30)
    base = parts.path
    headers = {"Authorization": f"Bearer {token}", "Content-type": "application/vnd.api+json"}
    deploy = json.dumps({"data": {"type": "deployment", "attributes": {
        "device_code": "server.log(1)", "agent_code": ""}, "relationships": {
        "devicegroup": {"type": ids["group_type"], "id": ids["group"]}}}})
    calls = [("GET", "/accounts/me", None), ("GET", "/devices?page%5Bsize%5D=100", None),
             ("GET", f"/devicegroups/{ids['group']}", None)]
    end = time.perf_counter() + seconds
    n = 0
    try:
        while time.perf_counter() < end:
            method, path, body = (("POST", "/deployments", deploy) if n % 10 == 9
                                  else calls[n % 3])
            t0 = time.perf_counter()
            conn.request(method, base + path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            took = time.perf_counter() - t0
            lat.append(took)
            by_call.setdefault(f"{method} {path.split('?')[0]}", []).append(took)
            if not 200 <= resp.status < 300:
                errors.append(resp.status)
            n += 1
    except (OSError, http.client.HTTPException):
        errors.append(0)  # a broken connection counts against the run, never vanishes
    finally:
        conn.close()


def run(devices: int, clients: int, seconds: float) -> dict[str, Any]:
    """Measure; returns the figures."""
    with tempfile.TemporaryDirectory() as tmp, ApiThread(Path(tmp) / "api.db") as api:
        ids = api.call(_fill, api, devices)
        status_token = api.call(api.service.accounts.find, "owner")
        assert status_token is not None
        token = api.call(api.service.accounts.issue, status_token, refresh=False)["access_token"]
        lat: list[float] = []
        errors: list[int] = []
        by_call: dict[str, list[float]] = {}
        threads = [threading.Thread(target=_client, args=(api.endpoint, token, ids, seconds,
                                                           lat, errors, by_call))
                   for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    lat.sort()
    return {"requests": len(lat), "requests_per_s": round(len(lat) / wall, 1),
            "p50_ms": round(statistics.median(lat) * 1000, 2) if lat else None,
            "p99_ms": round(lat[max(0, math.ceil(len(lat) * 0.99) - 1)] * 1000, 2)
            if lat else None,
            "non_2xx": len(errors), "devices": devices, "clients": clients,
            "p50_ms_by_call": {name.replace(ids["group"], "{id}"): round(
                statistics.median(times) * 1000, 2) for name, times in sorted(by_call.items())}}


def _main(args: argparse.Namespace) -> int:
    if args.devices < 0:
        raise PerfApiUsageError("--devices cannot be negative")
    if args.clients < 1:
        raise PerfApiUsageError("--clients must be at least 1")
    if not 0 < args.seconds <= 3600:
        raise PerfApiUsageError("--seconds must be in (0, 3600]")
    figures = run(args.devices, args.clients, args.seconds)
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{figures['requests_per_s']} requests/s over {args.clients} clients "
              f"({figures['requests']} requests, {args.devices} devices); "
              f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms; "
              f"non-2xx: {figures['non_2xx']}")
        for name, p50 in figures["p50_ms_by_call"].items():
            print(f"  p50 {p50:8.2f} ms  {name}")
    return 0 if figures["non_2xx"] == 0 and figures["requests"] else 1


def register(perf_sub: Any) -> None:
    """Add ``impfactory perf api``."""
    p = perf_sub.add_parser("api", help="REST API requests/s and latency")
    p.add_argument("--devices", type=int, default=1000, help="enrolled devices (default 1000)")
    p.add_argument("--clients", type=int, default=4,
                   help="keep-alive HTTP clients, one thread each (default 4)")
    p.add_argument("--seconds", type=float, default=5.0, help="run time (default 5)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=_main)
