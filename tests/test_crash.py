"""Crashes lose nothing: a line runs while its cloud is killed and its broker restarted.

The real commands in their own processes (``broker serve``, ``cloud serve``,
``line run --cloud``), the cloud killed with SIGKILL and restarted on the same
database, the broker restarted from its directory (tools/crash_drill.py). Every
invariant is read from the line's records, the cloud's store and the webhook
receiver: each DUT blessed or failed with a reason, no blessing lost or doubled,
no device in two groups, every blessing webhook delivered with one event ID. The
500-DUT version with random kills is ``impfactory soak``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from impfactory.cloud.broker import BrokerServer, find_mosquitto
from impfactory.cloud.brokersec import Realm
from impfactory.cloud.errors import BrokerError
from impfactory.cloud.fakedevice import FakeDevice
from impfactory.cloud.server import Cloud
from impfactory.tools.cli import main
from impfactory.tools.crash_drill import Drill, DrillConfig

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
needs_mosquitto = pytest.mark.skipif(not find_mosquitto() and not IN_CI,
                                     reason="broker serve runs Mosquitto (not installed)")


@needs_mosquitto
def test_a_line_survives_cloud_kills_and_a_broker_restart(tmp_path: Path) -> None:
    config = DrillConfig(duts=40, fixtures=4, cloud_kills=2, broker_restarts=1, seed=7,
                         scale=25.0, faults_within=(0.05, 0.4), down_s=(0.0, 0.5))
    result = Drill(tmp_path, config).run()
    assert (result.cloud_kills, result.broker_restarts) == (2, 1), "the line ended too soon"
    assert result.violations == []
    assert result.duts == 40
    # a restart costs time, not DUTs: every DUT that failed says why (the drill checks),
    # and nearly all are blessed
    assert result.blessed >= 38, result.failures
    assert result.webhook_deliveries >= result.blessed


@needs_mosquitto
def test_a_cloud_killed_takes_its_own_broker_and_a_restart_finds_the_old_port(
        tmp_path: Path) -> None:
    """``cloud serve --broker auto``: SIGKILL leaves no Mosquitto behind, and the cloud
    restarted on the same database listens on the same broker port (``<db>.broker``)."""
    def start() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen([sys.executable, "-m", "impfactory.tools.cli", "cloud", "serve",
                                 "--broker", "mosquitto", "--db", str(tmp_path / "c.db"),
                                 "--quiet"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        return proc, json.loads(proc.stdout.readline())["broker"]

    first, url = start()
    try:
        ours = _children(first.pid)
        assert ours, "cloud serve started no Mosquitto"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in ours) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in ours), "Mosquitto outlived the killed cloud"
        assert (tmp_path / "c.db.broker" / "realm.json").exists()
        second, again = start()
        try:
            assert again == url  # devices that knew the old URL find the new broker
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(("argv", "named"), [
    (["line", "run", "--cloud", "http://127.0.0.1:1/v5", "--broker", "mqtt://127.0.0.1:1"],
     "--user"),
    (["line", "run", "--cloud", "http://127.0.0.1:1/v5", "--user", "u", "--password", "p"],
     "--broker"),
    (["line", "run", "--cloud", "ftp://x", "--user", "u", "--password", "p", "--broker",
      "mqtt://127.0.0.1:1"], "endpoint"),
    (["line", "run", "--cloud", "http://127.0.0.1:1/v5", "--user", "u", "--password", "p",
      "--broker", "mqtt://127.0.0.1:1", "--outdated-impos", "0.1"], "--outdated-impos"),
    (["line", "run", "--user", "u"], "--cloud"),
    (["broker", "serve", "--port", "70000"], "--port"),
    (["soak", "--duts", "0"], "--duts"),
    (["soak", "--cloud-kills", "-1"], "--cloud-kills"),
], ids=["no-user", "no-broker", "bad-endpoint", "outdated", "user-alone", "broker-port",
        "soak-duts", "soak-kills"])
def test_bad_options_are_one_line_and_exit_2(argv: list[str], named: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("impfactory: error:") and len(err.strip().splitlines()) == 1, err
    assert named in err, err


def test_a_broker_kept_in_a_directory_keeps_its_secrets_and_port(tmp_path: Path) -> None:
    first = Realm.kept_in(tmp_path / "b", "mosquitto")
    first.port = 41883
    first.save()
    again = Realm.kept_in(tmp_path / "b", "mosquitto")
    assert (again.cloud_password, again.agent_password, again.port) == (
        first.cloud_password, first.agent_password, 41883)
    assert oct((tmp_path / "b" / "realm.json").stat().st_mode & 0o777) == "0o600"
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "realm.json").write_text("[not an object")
    with pytest.raises(BrokerError, match="unreadable broker state"):
        Realm.kept_in(tmp_path / "c", "mosquitto")


@needs_mosquitto
def test_a_broker_restarted_from_its_directory_keeps_its_port_and_every_account(
        tmp_path: Path) -> None:
    """``broker serve``'s promise: a device registered before the restart logs in
    afterwards with the password it had, at the URL it had."""
    home = tmp_path / "broker"

    async def register_one(url: str) -> FakeDevice:
        async with Cloud(tmp_path / "c.db", url):
            device = FakeDevice(url)
            await device.connect()
            await device.close()
        return device

    first = BrokerServer("mosquitto", home=home)
    url = first.start()
    try:
        device = asyncio.run(register_one(url))
    finally:
        first.stop()
    again = BrokerServer("mosquitto", home=home)
    assert again.start() == url
    try:
        async def log_in() -> None:
            link = device._new_link()  # its old password: no registration
            await link.connect()
            await link.close()

        asyncio.run(log_in())
    finally:
        again.stop()


def test_the_drill_gives_a_dash_leading_password_as_one_value(tmp_path: Path) -> None:
    """A random URL-safe password may begin with ``-`` (CI once drew one): the drill's
    ``line run`` arguments must still parse with the password whole."""
    from impfactory.tools.cli import build_parser

    drill = Drill(tmp_path, DrillConfig(duts=2, fixtures=1))
    drill.password = "-Xq3_abc"
    args = build_parser().parse_args(drill.line_argv(tmp_path / "report"))
    assert args.password == "-Xq3_abc"
    assert args.cloud == drill.endpoint
