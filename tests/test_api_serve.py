"""``impfactory cloud serve --api-port``: the REST API a user reaches, from a clean start.

Runs the real command as a process (broker, database, device link and API), reads
the endpoint it prints, logs in with the ``--owner`` account, then stops it with
SIGTERM; a second start on the same database keeps the account and its data.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from impfactory.cloud.api_client import ApiClient


def _serve(db: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "impfactory.tools.cli", "cloud", "serve", "--broker", "embedded",
         "--db", str(db), "--api-port", "0", "--owner", "owner:s3cret"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(proc.stderr.read() if proc.stderr else "no output")
    return proc, json.loads(line)


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    finally:
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


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
