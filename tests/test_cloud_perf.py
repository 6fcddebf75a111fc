"""``impfactory perf cloud`` runs end to end and reports what it measured (a smoke run,
not a speed check: speed is a figure the command prints, never a test)."""

from __future__ import annotations

import json

import pytest

from impfactory.tools.cli import main


@pytest.mark.parametrize("workers", ["1", "2"])
def test_perf_cloud_small_run(workers: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", "cloud", "--duts", "6", "--fixtures", "2", "--concurrency", "4",
                 "--workers", workers, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["duts"] == figures["blessed_in_db"] == 6
    assert figures["workers"] == int(workers)
    assert figures["duts_per_second"] > 0 and figures["cloud_cpu_seconds"] >= 0


def test_perf_cloud_refuses_impossible_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", "cloud", "--duts", "5", "--fixtures", "2", "--workers", "3"]) == 2
    assert "--workers" in capsys.readouterr().err
