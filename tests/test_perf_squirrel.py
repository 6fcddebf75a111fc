"""The Squirrel benchmarks run and print only their figures (no VM chatter on stdout)."""

from __future__ import annotations

import json
import subprocess
import sys

from impfactory.cloud.brokersec import access_for


def _impfactory(*args: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-m", "impfactory.tools.cli", *args],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout)  # the whole of stdout is the one JSON object


def test_perf_squirrel_prints_its_figures_and_nothing_else() -> None:
    doc = _impfactory("perf", "squirrel", "--n", "200", "--repeat", "1", "--json")
    for key in ("call_us", "native_us", "python_native_us", "loop_ns_per_iteration",
                "plain_loop_ns_per_iteration", "watchdog_loop_factor", "start_ms", "vm_kib",
                "imp_api_kib", "firmware_kib"):
        assert isinstance(doc[key], float) and doc[key] > 0, key
    parts = doc["vm_kib"] + doc["imp_api_kib"] + doc["firmware_kib"]
    assert abs(doc["vm_total_kib"] - parts) < 0.2  # the three parts make the whole


def test_perf_line_compares_squirrel_with_python_firmware(broker_url: str) -> None:
    # the line's cloud runs in that process: its credentials travel in the URL
    doc = _impfactory("perf", "line", "--duts", "4", "--fixtures", "1", "--workers", "1",
                      "--broker", access_for(broker_url).cloud_url, "--language", "both",
                      "--raw-messages", "500", "--json")
    assert doc["python"]["language"] == "python" and doc["squirrel"]["language"] == "squirrel"
    assert doc["python"]["blessed"] == doc["squirrel"]["blessed"] == 4
    ratio = doc["squirrel_over_python"]
    assert ratio["cpu_ms_per_dut"] == round(doc["squirrel"]["cpu_ms_per_dut"]
                                            / doc["python"]["cpu_ms_per_dut"], 2)
