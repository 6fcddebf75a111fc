"""Past one machine: two cloud processes and two line workers on one PostgreSQL finish a
line with nothing lost and nobody blessed twice (checked in the database itself).

The set-up is what docs/scale.md describes, on one machine: Mosquitto (shared
subscriptions), PostgreSQL, a ``cloud serve --share line`` process as the second
cloud, the coordinator's own cloud (``line run --share line``) as the first, and
two ``line worker`` processes joining the run by name.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IN_CI
from impfactory.cloud.broker import BrokerServer, find_mosquitto
from impfactory.cloud.model import GroupType
from impfactory.cloud.pgstore import PgConnection
from impfactory.tools.cli import main
from impfactory.tools.line_shards import worker_url

CLI = [sys.executable, "-m", "impfactory.tools.cli"]
DUTS = 24


@pytest.fixture
def mosquitto_url() -> object:
    if not find_mosquitto() and not IN_CI:
        pytest.skip("shared subscriptions need Mosquitto (optional outside CI)")
    with BrokerServer("mosquitto") as url:
        yield url


def _fresh(postgres_url: str) -> str:
    """An empty database of its own on the session's server."""
    db = PgConnection(postgres_url)
    try:
        db.execute("DROP DATABASE IF EXISTS scale_two_clouds")
        db.execute("CREATE DATABASE scale_two_clouds")
    finally:
        db.close()
    return postgres_url.rsplit("/", 1)[0] + "/scale_two_clouds"


def test_two_clouds_and_two_workers_on_one_postgres(
        postgres_url: str, mosquitto_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    db_url = _fresh(postgres_url)
    second_cloud = BrokerServer(mosquitto_url).access.seat(1).cloud_url
    cloud = subprocess.Popen(
        [*CLI, "cloud", "serve", "--broker", second_cloud, "--db", db_url, "--share", "line",
         "--log-level", "INFO"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = [subprocess.Popen([*CLI, "line", "worker", "--run", "two-clouds", "--broker",
                                 worker_url(mosquitto_url, n)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n in (1, 2)]
    try:
        assert cloud.stdout is not None
        assert json.loads(cloud.stdout.readline())["db"] == db_url  # serving
        code = main(["line", "run", "--broker", mosquitto_url, "--db", db_url,
                     "--share", "line", "--workers", "0", "--remote-workers", "2",
                     "--run", "two-clouds", "--fixtures", "2", "--duts", str(DUTS),
                     "--report", str(tmp_path), "--json"])
        summary = json.loads(capsys.readouterr().out)
        for worker in workers:
            assert worker.wait(timeout=60) == 0, worker.communicate()[1]
    finally:
        cloud.send_signal(signal.SIGINT)
        _, cloud_log = cloud.communicate(timeout=30)
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert code == 0 and summary["duts"] == DUTS and summary["blessed"] == DUTS, summary

    records = json.loads((tmp_path / "duts.json").read_text())
    duts = {r["dut_id"] for r in records["duts"]} if isinstance(records, dict) else \
        {r["dut_id"] for r in records}
    assert len(duts) == DUTS

    # the second cloud served a share of the devices' messages, not none and not all
    received = int(re.search(r"(\d+) device messages received", cloud_log).group(1))  # type: ignore[union-attr]
    assert received > 0

    db = PgConnection(db_url)
    try:
        blessed = {r["id"] for r in db.execute("SELECT id FROM devices WHERE blessed = 1")}
        assert blessed == duts  # nothing lost: every DUT the line saw blessed is, in the DB
        twice = db.execute(
            "SELECT device_id, COUNT(*) AS n FROM logs WHERE msg LIKE 'Blessed:%' "
            "GROUP BY device_id HAVING COUNT(*) <> 1").fetchall()
        assert twice == []  # and each exactly once
        in_production = db.execute(
            "SELECT COUNT(*) FROM devices d JOIN devicegroups g ON d.group_id = g.id "
            "WHERE g.type = ? AND d.blessed = 1", (GroupType.PRE_PRODUCTION.value,)).fetchone()[0]
        assert in_production == DUTS
    finally:
        db.close()
