"""Line workers that run anywhere: joined by run name over the broker, reported on when
they die, turned away when the run has its workers, and refusing bad input."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest

from impfactory.cloud.broker import BrokerServer
from impfactory.fixture.linebus import BusAddress
from impfactory.protocol import linework as lw
from impfactory.tools.cli import main
from impfactory.tools.line_shards import worker_url

CLI = [sys.executable, "-m", "impfactory.tools.cli"]


def _worker(url: str, run: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "line", "worker", "--run", run, "--broker", url, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_worker_started_elsewhere_takes_its_shard(capsys: pytest.CaptureFixture[str]) -> None:
    with BrokerServer("auto") as url:
        remote = _worker(worker_url(url, 5), "joined-by-name")
        extra = _worker(worker_url(url, 6), "joined-by-name", "--join-timeout", "60")
        assert main(["line", "run", "--broker", url, "--workers", "1", "--remote-workers", "1",
                     "--run", "joined-by-name", "--fixtures", "2", "--duts", "6",
                     "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert (summary["duts"], summary["blessed"]) == (6, 6)
        out, err = remote.communicate(timeout=60)
        extra_out, extra_err = extra.communicate(timeout=60)
    # one of the two hand-started workers got the remote shard, the other was turned away
    codes = sorted([remote.returncode, extra.returncode])
    assert codes == [0, 1], (err, extra_err)
    assert "has all its workers" in err + extra_err
    assert "finished" in out + extra_out


async def _first_progress(url: str, run: str) -> None:
    """Wait (as another line account, which may read the run's topics) for a ``progress``."""
    address = BusAddress.parse(url)
    async with asyncio.timeout(120), aiomqtt.Client(
            address.host, address.port, username=address.username, password=address.password,
            identifier=address.username) as client:
        await client.subscribe(f"{lw.PREFIX}/{run}/+/up/progress", qos=1)
        async for _ in client.messages:
            return


def test_a_worker_that_dies_fails_the_run_at_once(tmp_path: Path) -> None:
    """The coordinator runs elsewhere too (credentials in its URLs); the worker is killed
    mid-line: the broker publishes its will, and the run ends with exit 1, not a hang."""
    with BrokerServer("auto") as url:
        server_url = BrokerServer(url).cloud_url
        coordinator = subprocess.Popen(
            [*CLI, "line", "run", "--broker", server_url, "--line-broker", worker_url(url, 0),
             "--workers", "0", "--remote-workers", "1", "--run", "dies", "--fixtures", "1",
             "--duts", "40", "--scale", "5", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        worker = _worker(worker_url(url, 1), "dies")
        try:
            # joined, assigned, DUTs under way (40 DUTs at 5x take minutes): kill it then
            asyncio.run(_first_progress(worker_url(url, 9), "dies"))
            assert worker.poll() is None, worker.communicate()
            assert coordinator.poll() is None, coordinator.communicate()
            os.kill(worker.pid, signal.SIGKILL)
            started = time.monotonic()
            _, err = coordinator.communicate(timeout=60)
        finally:
            for proc in (worker, coordinator):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    assert coordinator.returncode == 1
    assert "broker connection ended" in err
    assert time.monotonic() - started < 40


@pytest.mark.parametrize(("args", "status", "text"), [
    (["line", "worker", "--run", "x"], 2, "--broker"),
    (["line", "worker", "--run", "Not A Name", "--broker", "mqtt://127.0.0.1:1"], 2, "run name"),
    (["line", "worker", "--run", "x", "--broker", "http://h:1"], 1, "mqtt://"),
    (["line", "run", "--run", "Bad!", "--remote-workers", "1"], 2, "run name"),
    (["line", "run", "--workers", "0"], 2, "--workers"),
    (["line", "run", "--remote-workers", "-1"], 2, "--remote-workers"),
])
def test_bad_input_is_a_clear_error(args: list[str], status: int, text: str,
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMPFACTORY_LINE_BROKER", raising=False)
    assert main(args) == status
    assert text in capsys.readouterr().err


def test_a_worker_with_no_coordinator_gives_up(capsys: pytest.CaptureFixture[str]) -> None:
    with BrokerServer("auto") as url:
        assert main(["line", "worker", "--run", "nobody", "--broker", worker_url(url, 2),
                     "--join-timeout", "1"]) == 1
    assert "no coordinator" in capsys.readouterr().err
