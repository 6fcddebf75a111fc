"""``impfactory cloud serve --api-port``: the REST API a user reaches, from a clean start.

Runs the real command as a process (broker, database, device link and API), reads
the endpoint it prints, logs in with the ``--owner`` account, then stops it with
SIGTERM; a second start on the same database keeps the account and its data. The
first logs one access line per request on stderr; the second, ``--quiet``, none.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from served_cloud import start_cloud, stop_cloud

from impfactory.cloud.api_client import ApiClient, ApiClientError

ACCESS = re.compile(r"impfactory\.cloud\.access: (\w+) (\S+) (\d{3}) (\d+\.\d) ms$", re.M)


def _serve(db: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    return start_cloud("--broker", "embedded", "--db", str(db), "--api-port", "0",
                       "--owner", "owner:s3cret", *extra)


def test_cloud_serve_api_port_serves_the_owner_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "cloud.db"
    proc, info = _serve(db)
    try:
        client = ApiClient(info["api"]).login("owner", "s3cret")
        client.call("POST", "/products", {"data": {"type": "product",
                                                   "attributes": {"name": "Kept"}}})
        with pytest.raises(ApiClientError):
            client.call("GET", "/no/such/path")
    finally:
        code, err = stop_cloud(proc)
    assert code == 0, err
    assert [m.group(1, 2, 3) for m in ACCESS.finditer(err)] == [
        ("POST", "/v5/auth", "200"), ("POST", "/v5/products", "201"),
        ("GET", "/v5/no/such/path", "404")]
    proc, info = _serve(db, "--quiet")
    try:
        client = ApiClient(info["api"]).login("owner", "s3cret")
        names = [p["attributes"]["name"] for p in client.list_all("/products")]
        assert names == ["Kept"]
    finally:
        code, err = stop_cloud(proc)
    assert code == 0, err
    assert "REST API at" in err and not ACCESS.search(err)
