"""``perf line``, ``perf firmware`` and ``perf memory`` at tiny sizes: the figures they
promise are printed and sane. (Speed itself is for the commands to show, not tests.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from impfactory.cloud.broker import BrokerServer
from impfactory.cloud.brokersec import access_for
from impfactory.tools.broker_reference import raw_rate
from impfactory.tools.cli import main
from impfactory.tools.perf_firmware import firmware_ceiling
from impfactory.tools.perf_line import ratio_ceiling


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
    # the ceiling is what its printed parts make it, and the line stays under it
    _positive(doc, "raw_cpu_us_per_message", "vm_start_ms_per_dut", "cores")
    assert doc["raw_broker_cpu_counted"] is False  # a broker this run did not start
    assert doc["broker_ratio_ceiling"] == pytest.approx(ratio_ceiling(
        doc["cores"], doc["raw_messages_per_s"], doc["raw_cpu_us_per_message"],
        doc["vm_start_ms_per_dut"], doc["messages_per_dut"]), rel=0.02)
    assert doc["broker_ratio"] < doc["broker_ratio_ceiling"]


def test_the_broker_ratio_ceiling_adds_each_duts_programs_to_each_message() -> None:
    # 2 CPUs; a raw message costs 50 us; a DUT's two programs 3 ms over its 30
    # messages (100 us each): 150 us per line message at the least, so 13,333 a
    # second, a third of a raw rate of 40,000
    assert ratio_ceiling(2, 40_000, 50.0, 3.0, 30) == pytest.approx(1 / 3)
    assert ratio_ceiling(2, 40_000, 50.0, 0.0, 30) == pytest.approx(1.0)  # messages alone


def test_the_raw_reference_counts_the_cpu_of_a_broker_it_started() -> None:
    server = BrokerServer("mosquitto")
    with server:
        before = server.cpu_seconds()
        rate = asyncio.run(raw_rate(server.cloud_url, messages=3000, size=256, subscribers=5,
                                    broker_cpu=server.cpu_seconds))
        after = server.cpu_seconds()
    assert before is not None and after is not None and after >= before
    assert rate.broker_cpu_s is not None and 0 <= rate.broker_cpu_s <= after - before
    assert rate.cpu_s > 0 and rate.cpu_us_per_message == pytest.approx(
        (rate.cpu_s + rate.broker_cpu_s) / 3000 * 1e6)
    assert server.cpu_seconds() is None  # stopped: no process to read
    embedded = BrokerServer("embedded")
    with embedded:
        assert embedded.cpu_seconds() is None  # its CPU is this process's


def test_perf_firmware_delivers_to_every_device(broker_url: str) -> None:
    doc = _impfactory("perf", "firmware", "--devices", "3", "--size", "100000",
                      "--broker", access_for(broker_url).cloud_url, "--json")
    assert doc["installed"] == doc["devices"] == 3 and doc["failures"] == []
    _positive(doc, "mib_per_s", "raw_mib_per_s", "ratio", "cpu_ms_per_mib")
    assert doc["ratio"] == pytest.approx(doc["mib_per_s"] / doc["raw_mib_per_s"], rel=0.05)
    _positive(doc, "raw_cpu_us_per_message", "block_sha_us", "ratio_ceiling")
    raw_blocks_per_s = doc["raw_mib_per_s"] * 2**20 / doc["chunk_bytes"]
    assert doc["ratio_ceiling"] == pytest.approx(firmware_ceiling(
        raw_blocks_per_s, doc["raw_cpu_us_per_message"], doc["block_sha_us"]), rel=0.02)


def test_the_firmware_ceiling_adds_a_blocks_sha256_to_a_raw_message() -> None:
    # a raw message costs the thread 30 us, a block's SHA-256 15 us more: 45 us a
    # block, 22,222 a second, two thirds of a raw 33,333 a second
    assert firmware_ceiling(1e6 / 30, 30.0, 15.0) == pytest.approx(2 / 3)


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
