"""docs/api.md, followed as a user would: its shell commands run as processes.

``impfactory cloud serve --api-port ... --owner owner:secret`` (port 0, a temporary
database), then the user's set-up through Electric Imp's ``imp-central-api``
under node, then ``impfactory floor`` with the documented options fed ``press``,
an unknown word and ``quit`` on stdin, then the documented ``impfactory golive``
line. Every process is stopped at the end.
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent / "node"))
from impcentral_node import NodeClient, library_missing, node_missing

from impfactory.firmware import examples
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID

pytestmark = [pytest.mark.node,
              pytest.mark.skipif(node_missing() is not None, reason=node_missing() or "")]

CLI = [sys.executable, "-m", "impfactory.tools.cli"]


class Lines:
    """A process's stdout lines, read in a thread so waits can time out."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=lambda: [self.q.put(line) for line in stdout],
                         daemon=True).start()

    def until(self, needle: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line with {needle!r}; saw {self.seen}") from None
            self.seen.append(line)
            if needle in line:
                return line


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream:
            stream.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, str]]:
    """``impfactory cloud serve --api-port 0 --owner owner:secret`` as docs/api.md runs it."""
    missing = library_missing()
    if missing:
        pytest.fail(missing)
    proc = subprocess.Popen([*CLI, "cloud", "serve", "--api-port", "0", "--owner",
                             "owner:secret", "--db", str(tmp_path / "impcloud.db")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first, proc.stderr.read() if proc.stderr else ""
        info = json.loads(first)
        assert set(info) >= {"broker", "api", "db"}
        assert info["api"].startswith("http://127.0.0.1:") and info["api"].endswith("/v5")
        yield info
    finally:
        _stop(proc)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_documented_floor_and_golive_commands(served: dict[str, str]) -> None:
    api, broker = served["api"], served["broker"]
    with NodeClient(api) as imp:
        imp("auth.login", "owner", "secret")
        product = imp("products.create", {"name": "MyProduct"})["data"]

        def create(type_: str, name: str, *targets: dict[str, Any]) -> dict[str, Any]:
            return dict(imp("deviceGroups.create", product["id"], type_, {"name": name},
                            *targets)["data"])

        pre_prod = create("pre_production_devicegroup", "MyPreProductionDG")
        pre_dut = create("pre_dut_devicegroup", "MyPreDUTDG")
        pre_fix = create("pre_factoryfixture_devicegroup", "MyPreFactoryDG",
                         {"type": pre_prod["type"], "id": pre_prod["id"]},
                         {"type": pre_dut["type"], "id": pre_dut["id"]})
        factory = examples.factory_source(FACTORY_SSID, FACTORY_PASSWORD)
        for group, code in ((pre_prod, examples.application_source()), (pre_dut, factory),
                            (pre_fix, factory)):
            imp("deployments.create", group["id"], group["type"], {
                "device_code": code, "agent_code": "", "tags": ["promoted"]})

        # impfactory floor --cloud ... --broker ... --user owner --password secret
        #     --devices 2 --fixtures 1 --duts 20 (here 3) --press-every 0 (press on command)
        floor = subprocess.Popen(
            [*CLI, "floor", "--cloud", api, "--broker", broker, "--user", "owner",
             "--password", "secret", "--devices", "2", "--fixtures", "1", "--duts", "3",
             "--press-every", "0", "--scale", "100", "--timeout", "120"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert floor.stdin is not None
        try:
            out = Lines(floor)
            imps = [out.until("online and unassigned").split()[1] for _ in range(3)]
            fixture_id = imps[2]
            assert out.seen[2].startswith("fixture ")
            listed = imp("devices.list")["data"]
            assert {d["id"] for d in listed} == set(imps)
            assert all("devicegroup" not in d["relationships"] for d in listed)

            # impt device assign --device ID --dg MyPreFactoryDG
            imp("deviceGroups.addDevices", pre_fix["id"], fixture_id)
            out.until("feeding DUTs")
            floor.stdin.write("bogus\n")
            floor.stdin.flush()
            for _ in range(2):
                out.until("placed before fixture")
                floor.stdin.write("press\n")
                floor.stdin.flush()
                assert out.until(": ", 60).split()[-1] == "blessed"
            out.until("placed before fixture")  # the third waits for a press: quit instead
            floor.stdin.write("quit\n")
            floor.stdin.flush()
            assert out.until("unfinished").strip().endswith(": unfinished (the floor stopped)")
            assert out.until("DUTs blessed").strip() == "2 of 3 DUTs blessed"
            assert floor.wait(30) == 1  # not every DUT placed was blessed
            assert floor.stderr is not None
            err = floor.stderr.read()
            assert "unknown command 'bogus'" in err and "Traceback" not in err
        finally:
            _stop(floor)

        # impt device list --dg MyPreProductionDG
        blessed = imp("devices.list", {"filter[devicegroup.id]": pre_prod["id"]})["data"]
        assert len(blessed) == 2

        # impfactory golive --endpoint ... --from MyPreFactoryDG --production ...:"Line A" ...
        hooks = f"http://127.0.0.1:{_closed_port()}"
        golive = subprocess.run(
            [*CLI, "golive", "--endpoint", api, "--user", "owner", "--password", "secret",
             "--from", "MyPreFactoryDG", "--production", "MyProductionDG:Line A", "--dut",
             "MyDUTDG", "--fixture", "MyFixtureDG", "--load-code-after-blessing", "yes",
             "--webhook", f"blessing={hooks}/bless", "--webhook", f"blinkup={hooks}/b,form"],
            capture_output=True, text=True, timeout=60, check=False)
        assert golive.returncode == 0, golive.stderr
        assert "MyProductionDG" in golive.stdout
        groups = {g["attributes"]["name"]: g for g in
                  imp("deviceGroups.list", {"filter[product.id]": product["id"]})["data"]}
        prod = groups["MyProductionDG"]
        assert prod["type"] == "production_devicegroup"
        assert prod["attributes"]["description"] == "Line A"
        assert prod["attributes"]["load_code_after_blessing"] is True
        assert groups["MyFixtureDG"]["relationships"]["dut_target"]["id"] == \
            groups["MyDUTDG"]["id"]
        hooks_made = imp("webhooks.list", {"filter[devicegroup.id]": prod["id"]})["data"]
        assert sorted((h["attributes"]["event"], h["attributes"]["content_type"])
                      for h in hooks_made) == [
            ("blessing", "application/json"), ("blinkup", "application/x-www-form-urlencoded")]

        again = subprocess.run(  # the same names again: refused in one line, exit 2
            [*CLI, "golive", "--endpoint", api, "--user", "owner", "--password", "secret",
             "--from", "MyPreFactoryDG", "--production", "MyProductionDG", "--dut", "MyDUTDG",
             "--fixture", "MyFixtureDG"], capture_output=True, text=True, timeout=60,
            check=False)
        assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
        assert "409" in again.stderr
