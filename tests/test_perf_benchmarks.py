"""``perf line``, ``perf firmware`` and ``perf memory`` at tiny sizes: the figures they
promise are printed and sane. (Speed itself is for the commands to show, not tests.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from impfactory.cloud.brokersec import access_for
from impfactory.tools.cli import main


def _impfactory(*args: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-m", "impfactory.tools.cli", *args],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout)  # the whole of stdout is the one JSON object


def _positive(doc: dict[str, object], *keys: str) -> None:
    for key in keys:
        value = doc[key]
        assert isinstance(value, (int, float)) and value > 0, (key, value)


def test_perf_line_measures_the_broker_beside_the_line(broker_url: str) -> None:
    doc = _impfactory("perf", "line", "--duts", "3", "--fixtures", "1", "--workers", "1",
                      "--broker", access_for(broker_url).cloud_url, "--raw-messages", "500",
                      "--json")
    assert doc["blessed"] == 3 and doc["failed"] == 0
    _positive(doc, "duts_per_s", "cpu_ms_per_dut", "messages_per_dut", "line_messages_per_s",
              "raw_messages_per_s", "broker_ratio")
    assert doc["broker_ratio"] == pytest.approx(
        doc["line_messages_per_s"] / doc["raw_messages_per_s"], rel=0.01, abs=0.002)


def test_perf_firmware_delivers_to_every_device(broker_url: str) -> None:
    doc = _impfactory("perf", "firmware", "--devices", "3", "--size", "100000",
                      "--broker", access_for(broker_url).cloud_url, "--json")
    assert doc["installed"] == doc["devices"] == 3 and doc["failures"] == []
    _positive(doc, "mib_per_s", "raw_mib_per_s", "ratio", "cpu_ms_per_mib")
    assert doc["ratio"] == pytest.approx(doc["mib_per_s"] / doc["raw_mib_per_s"], rel=0.05)


def test_perf_memory_counts_running_devices(broker_url: str) -> None:
    doc = _impfactory("perf", "memory", "--devices", "3",
                      "--broker", access_for(broker_url).cloud_url, "--json")
    assert doc["running"] == doc["devices"] == 3
    assert isinstance(doc["rss_per_device_kib"], float)
    assert doc["rss_after_mib"] >= doc["rss_before_mib"] > 10
    # the breakdown: three fixtures' VMs (threads of the shared state, the compiled
    # firmware shared) hold some 70 KiB each: the imp API, what the firmware made
    assert doc["c_heap_per_device_kib"] >= doc["squirrel_per_device_kib"] > 30


@pytest.mark.parametrize("args", [["firmware", "--devices", "0"], ["firmware", "--size", "0"],
                                  ["memory", "--devices", "0"], ["memory", "--batch", "0"],
                                  ["memory", "--devices", "100000000"],  # open files
                                  ["line", "--raw-messages", "0"]])
def test_bad_benchmark_options_are_refused(args: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("impfactory: error:") and "\n" not in err
