"""``IMPFACTORY_PROFILE=DIR`` (tools/profiling.py): a command profiles itself into DIR."""

from __future__ import annotations

import pstats
from pathlib import Path

import pytest

from impfactory.tools.cli import main
from impfactory.tools.profiling import PROFILE_ENV


def test_a_command_writes_its_profile_and_cpu_seconds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "prof"  # made when missing
    monkeypatch.setenv(PROFILE_ENV, str(folder))
    assert main(["blinkup", "encode", "--ssid", "a", "--password", "b"]) == 0
    assert capsys.readouterr().out.strip() == "0000002a060101610601625100"
    (prof,) = folder.glob("blinkup-encode-*.prof")
    profiled = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    assert any(name == "encode_frame" for _, _, name in profiled)  # the command's own work
    cpu = dict(line.split() for line in prof.with_suffix(".cpu").read_text().splitlines())
    assert set(cpu) == {"process_cpu_s", "thread_cpu_s"} and float(cpu["process_cpu_s"]) > 0


def test_unset_it_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["blinkup", "encode", "--ssid", "a", "--password", "b"]) == 0
    assert not list(tmp_path.rglob("*.prof"))
