"""``impfactory cloud serve --api-port``: the REST API a user reaches, from a clean start.

Runs the real command as a process (broker, database, device link and API), reads
the endpoint it prints, logs in with the ``--owner`` account, then stops it with
SIGTERM; a second start on the same database keeps the account and its data.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from impfactory.cloud.api_client import ApiClient
from served_cloud import start_cloud, stop_cloud


def _serve(db: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    return start_cloud("--broker", "embedded", "--db", str(db), "--api-port", "0",
                       "--owner", "owner:s3cret")


def _stop(proc: subprocess.Popen[str]) -> int:
    return stop_cloud(proc)[0]


def test_cloud_serve_api_port_serves_the_owner_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "cloud.db"
    proc, info = _serve(db)
    try:
        client = ApiClient(info["api"]).login("owner", "s3cret")
        client.call("POST", "/products", {"data": {"type": "product",
                                                   "attributes": {"name": "Kept"}}})
    finally:
        assert _stop(proc) == 0
    proc, info = _serve(db)
    try:
        client = ApiClient(info["api"]).login("owner", "s3cret")
        names = [p["attributes"]["name"] for p in client.list_all("/products")]
        assert names == ["Kept"]
    finally:
        assert _stop(proc) == 0
