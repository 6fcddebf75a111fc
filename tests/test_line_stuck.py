"""Issue 13: a DUT whose Python callback is stuck in C costs that DUT, not the line.

``sum(range(10**12))`` holds the GIL for hours: nothing in its process runs, so
no watchdog there can act. A line whose firmware is Python therefore runs its
devices in a worker process, even with the default ``--workers 1`` and with
``--cloud``; the kernel ends the worker 3 s into such a callback (fixture/shard.py),
the coordinator fails the DUT the worker's stuck note names as
``device_code_stuck``, and a worker started in its place runs the DUTs the first
one left (tools/line_shards.py): every other DUT is blessed, once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from impfactory.cloud.api_thread import ApiThread
from impfactory.devicecode import mark_python
from impfactory.firmware.examples import factory_source
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID
from impfactory.firmware.identity import DeviceIdentity
from impfactory.fixture.line import _serial_block
from impfactory.fixture.shard import STUCK
from impfactory.tools.cli import main

SEED = 4
STUCK_ID = DeviceIdentity.from_serial(_serial_block(SEED)).device_id  # DUT 0


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example Python factory firmware, whose tests hang DUT 0 in one call into C."""
    code = mark_python(factory_source(FACTORY_SSID, FACTORY_PASSWORD, python=True))
    hang = (f"def run_tests():\n    if hardware.getdeviceid() == {STUCK_ID!r}:\n"
            "        sum(range(10 ** 12))  # hours, in one call into C\n")
    assert "def run_tests():\n" in code
    path = tmp_path_factory.mktemp("stuck") / "stuck.py"
    path.write_text(code.replace("def run_tests():\n", hang, 1))
    return path


def run_line(argv: list[str], firmware: Path, report: Path,
             capsys: pytest.CaptureFixture[str]) -> dict[int, dict[str, Any]]:
    """``line run`` four DUTs on two fixtures; the DUTs' records, checked."""
    started = time.monotonic()
    status = main(["line", "run", *argv, "--fixtures", "2", "--duts", "4", "--seed",
                   str(SEED), "--firmware", str(firmware), "--json", "--report", str(report)])
    assert time.monotonic() - started < 90
    assert status == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["failures"] == {STUCK: 1}
    duts = {d["index"]: d for d in json.loads((report / "duts.json").read_text())["duts"]}
    assert sorted(duts) == [0, 1, 2, 3]
    assert duts[0]["dut_id"] == STUCK_ID and duts[0]["failure_reason"] == STUCK
    assert all(duts[i]["blessed"] for i in (1, 2, 3))  # the line went on
    return duts


def test_the_default_line_cuts_a_dut_stuck_in_c_off_and_reruns_the_rest(
        firmware: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_line([], firmware, tmp_path / "report", capsys)


def test_a_line_against_a_running_cloud_does_too_and_blesses_each_once(
        broker_url: str, firmware: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with ApiThread(tmp_path / "cloud.db", broker_url=broker_url) as cloud:
        cloud.call(cloud.service.accounts.create, "owner", "pw")
        duts = run_line(["--cloud", cloud.endpoint, "--user", "owner", "--password", "pw",
                         "--broker", broker_url], firmware, tmp_path / "report", capsys)
        store = cloud.service.svc
        for record in duts.values():
            device_id = record["dut_id"]
            logs = cloud.call(lambda d=device_id: store.device_logs(d, size=1000))
            blessings = sum(1 for entry in logs if entry.msg.startswith("Blessed: "))
            assert blessings == (0 if device_id == STUCK_ID else 1), (device_id, blessings)
            assert cloud.call(store.find_device, device_id).blessed == (device_id != STUCK_ID)
