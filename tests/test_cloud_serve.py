"""``impfactory cloud serve`` as a user runs it: a process that serves, stops on a
signal with status 0, keeps its state across restarts, and refuses bad options in
one line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from served_cloud import CLOUD_SERVE, start_cloud, stop_cloud

from impfactory.cloud.brokersec import access_for
from impfactory.cloud.fakedevice import FakeDevice
from impfactory.cloud.service import CloudService
from impfactory.cloud.store import open_store
from impfactory.protocol import cloudlink as cl

DEV = "0c2a00000000beef"


_start = start_cloud


def _stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> str:
    returncode, err = stop_cloud(proc, sig, timeout=20)
    assert returncode == 0, err
    return err


def test_serve_stop_and_restart_keep_state(broker_url: str, tmp_path: Path) -> None:
    db = tmp_path / "cloud.db"
    # a broker this process started: the cloud's credentials travel in the URL, and
    # neither the ready line nor the log shows them
    access = access_for(broker_url)
    proc, ready = _start("--broker", access.cloud_url, "--db", str(db), "--owner", "alice:pw1",
                         "--api-port", "0")
    assert ready["broker"] == broker_url and ready["db"] == str(db)

    def cloud_saw_both() -> bool:
        """The serving cloud has stored the device's LED report and its log line (read
        from its database as another process would; SELECTs only)."""
        with contextlib.closing(sqlite3.connect(db, timeout=5)) as peek:
            led = peek.execute("SELECT led FROM devices WHERE id = ?", (DEV,)).fetchone()
            logs = peek.execute("SELECT msg FROM logs WHERE device_id = ?", (DEV,)).fetchall()
        return led == ("connected",) and ("hello from a device",) in logs

    async def device_says_hello() -> cl.Welcome:
        async with FakeDevice(broker_url, DEV, mac="00000000beef") as dev:
            welcome = await dev.hello()
            await dev.log("hello from a device")
            await dev.report(led="connected")
            # the serving cloud has handled both before the device goes and the cloud stops
            while not await asyncio.to_thread(cloud_saw_both):
                await asyncio.sleep(0.05)
            return welcome

    try:
        welcome = asyncio.run(asyncio.wait_for(device_says_hello(), 30))
    finally:
        err = _stop(proc)
    assert welcome.device_id == "0c2a00000000beef"
    assert "stopping" in err and "Traceback" not in err
    assert access.password is not None and access.password not in err

    proc, _ = _start("--broker", access.cloud_url, "--db", str(db), "--owner", "alice:pw1")
    assert "Traceback" not in _stop(proc, signal.SIGINT)  # Ctrl-C stops it just as cleanly
    svc = CloudService(open_store(db))
    device = svc.get_device("0c2a00000000beef")
    assert device.mac == "00000000beef" and device.led == "connected"
    assert "hello from a device" in [e.msg for e in svc.device_logs(device.id)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--owner", "nocolon"], "--owner must be USER:PASSWORD"),
        (["--broker", "rabbit"], "unknown broker"),
        (["--broker", "CLOSED_PORT"], "no broker answers"),
        (["--api-port", "70000"], "--api-port"),
        (["--db", "/nonexistent/dir/x.db"], "cannot open the cloud database"),
        (["--db", "NOT_A_DB"], "not a usable cloud database"),
    ],
)
def test_bad_options_are_one_line_errors(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "NOT_A_DB").write_bytes(b"this is not sqlite" * 100)
    args = [str(tmp_path / a) if a == "NOT_A_DB" else a for a in args]
    if "CLOSED_PORT" in args:  # a loopback port just freed, so nothing listens on it
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        args = [f"mqtt://127.0.0.1:{port}" if a == "CLOSED_PORT" else a for a in args]
    result = subprocess.run([*CLOUD_SERVE, "--db", str(tmp_path / "x.db"), *args],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_devices_and_logs_commands_read_a_database(tmp_path: Path) -> None:
    from impfactory.cloud.rules import DeviceRules

    db_path = tmp_path / "cloud.db"
    svc = CloudService(open_store(db_path))
    DeviceRules(svc).handle(cl.Hello(device_id="0c2a0000000000aa", mac="0000000000aa"))
    svc.append_log("0c2a0000000000aa", "first line")
    svc.close()
    cli = [sys.executable, "-m", "impfactory.tools.cli", "cloud"]
    out = subprocess.run([*cli, "devices", "--db", str(db_path), "--json"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    [row] = [json.loads(line) for line in out.stdout.splitlines()]
    assert row["device_id"] == "0c2a0000000000aa" and row["online"] and not row["blessed"]
    out = subprocess.run([*cli, "logs", "0c2a0000000000aa", "--db", str(db_path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "[status] first line" in out.stdout
    for args in (["logs", "0c2a0000000000bb", "--db", str(db_path)],
                 ["devices", "--db", str(tmp_path / "missing.db")]):
        bad = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=30)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


def test_devices_command_pages_through_the_whole_fleet() -> None:
    from impfactory.cloud.rules import DeviceRules
    from impfactory.tools.cmd_cloud import _all_devices

    svc = CloudService(open_store(":memory:"))
    rules = DeviceRules(svc)
    for i in range(7):
        rules.handle(cl.Hello(device_id=f"0c2a0000000000{i:02x}", mac=f"0000000000{i:02x}"))
    assert [d.id for d in _all_devices(svc, page=3)] == [d.id for d in svc.list_devices()]
    assert len(list(_all_devices(svc, page=3))) == 7
