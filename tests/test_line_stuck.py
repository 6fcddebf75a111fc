"""Issue 13: a DUT whose Python callback is stuck in C costs its worker, not the line.

``sum(range(10**12))`` holds the GIL for hours: nothing in its process runs, so
no watchdog there can act. A line worker is ended by the kernel 3 s into such a
callback (``fixture/shard.py``); the coordinator records that worker's DUTs not yet
done as ``device_code_stuck`` and the other worker's DUTs are blessed as usual.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from impfactory.devicecode import mark_python
from impfactory.firmware.examples import factory_source
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID
from impfactory.firmware.identity import DeviceIdentity
from impfactory.fixture.line import _serial_block
from impfactory.fixture.shard import STUCK
from impfactory.tools.cli import main

SEED = 4


def test_a_dut_stuck_in_a_c_call_costs_its_worker_not_the_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stuck = DeviceIdentity.from_serial(_serial_block(SEED)).device_id  # DUT 0: worker 0
    code = mark_python(factory_source(FACTORY_SSID, FACTORY_PASSWORD, python=True))
    hang = (f"def run_tests():\n    if hardware.getdeviceid() == {stuck!r}:\n"
            "        sum(range(10 ** 12))  # hours, in one call into C\n")
    assert "def run_tests():\n" in code
    firmware = tmp_path / "stuck.py"
    firmware.write_text(code.replace("def run_tests():\n", hang, 1))
    report = tmp_path / "report"
    started = time.monotonic()
    status = main(["line", "run", "--fixtures", "2", "--duts", "4", "--seed", str(SEED),
                   "--workers", "2", "--firmware", str(firmware), "--json",
                   "--report", str(report)])
    assert time.monotonic() - started < 90
    assert status == 0
    summary = json.loads(capsys.readouterr().out)
    duts = {d["index"]: d for d in json.loads((report / "duts.json").read_text())["duts"]}
    assert sorted(duts) == [0, 1, 2, 3]
    assert duts[0]["dut_id"] == stuck and duts[0]["failure_reason"] == STUCK
    assert duts[2]["failure_reason"] in (STUCK, None)  # done before the hang, or lost with it
    assert duts[1]["blessed"] and duts[3]["blessed"]  # the other worker's line went on
    assert summary["failures"].get(STUCK, 0) >= 1
