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

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from impfactory.cloud.api_thread import ApiThread
from impfactory.devicecode import mark_python
from impfactory.firmware import runtime
from impfactory.firmware.examples import factory_source
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID
from impfactory.firmware.identity import DeviceIdentity
from impfactory.fixture.line import LineConfig, LineError, _serial_block
from impfactory.fixture.shard import (
    STUCK,
    CloudInfo,
    dut_device_id,
    failed_record,
    fixture_device_id,
)
from impfactory.protocol import linework as lw
from impfactory.tools import line_shards
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
        broker_url: str, firmware: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``line run`` with its default ``--workers 1`` (on the session's broker, which
    saves starting one)."""
    run_line(["--broker", broker_url], firmware, tmp_path / "report", capsys)


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


class _Cloud:
    """What ``_recover`` asks of the cloud side: enrolments and who is blessed."""

    broker_url = "mqtt://127.0.0.1:1"
    wifi_ssid, wifi_password = FACTORY_SSID, FACTORY_PASSWORD
    impos_current = impos_outdated = "42.0.0"
    first_dut_serial = None

    def __init__(self, blessed: set[str]) -> None:
        self.blessed = blessed

    def fixture_enrolment(self) -> tuple[str, str]:
        return "plan", "token"

    async def adopt_fixture(self, device_id: str) -> None: ...

    async def blessed_devices(self, device_ids: list[str]) -> set[str]:
        return self.blessed & set(device_ids)


class _Spawner:
    def __init__(self, notes: Path) -> None:
        self.notes = notes
        self.seat_of = {"0" * 16: 1}
        self.proc_of: dict[str, Any] = {}

    def note(self, worker: str) -> Path:
        return self.notes / worker

    async def spawn(self, worker: str, seat: int) -> None:
        self.proc_of[worker] = subprocess.Popen(["sleep", "30"])


class _Bus:
    def __init__(self) -> None:
        self.sent: list[tuple[str, lw.Message]] = []

    async def send(self, worker: str, msg: lw.Message) -> None:
        self.sent.append((worker, msg))


@pytest.mark.parametrize(("noted", "done", "blessed", "failed", "rerun"), [
    ("dut 1", {0}, {3}, [1], [2, 4, 5]),  # DUT 1 hung; 3 was blessed before the end
    ("fixture 1", set(), {3}, [1, 5], [0, 2, 4]),  # fixture 1 hung: its DUTs left fail
    ("dut 3", set(), {3}, [], [0, 1, 2, 4, 5]),  # a blessed DUT's application hung
    ("", set(), set(), [0, 1, 2, 3, 4, 5], []),  # no note: nothing says which hung
])
def test_a_cut_off_worker_leaves_each_dut_failed_blessed_or_rerun_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, noted: str, done: set[int],
        blessed: set[int], failed: list[int], rerun: list[int]) -> None:
    """``_recover`` without processes: a fake cloud, the stuck note as a worker leaves it."""
    config = LineConfig(fixtures=2, duts=6, seed=SEED)
    dut = [dut_device_id(config, None, i) for i in range(6)]
    kind, _, n = noted.partition(" ")
    note = {"dut": dut[int(n or 0)], "fixture": fixture_device_id(config, int(n or 0)),
            "": ""}[kind]
    spawner = _Spawner(tmp_path)
    spawner.note("0" * 16).write_bytes(note.encode().ljust(runtime.NOTE_SIZE, b"\0"))
    assert runtime.read_stuck_note(str(spawner.note("0" * 16))) == (note or None)
    monkeypatch.setattr(line_shards, "SETTLE_S", 0.0)

    async def recover() -> tuple[Any, Any]:
        bus = _Bus()
        seen: list[int] = []
        observer = type("O", (), {"stage": lambda *a: None,
                                  "done": lambda self, r: seen.append(r.index)})()
        coordinator = line_shards._Coordinator(
            config, _Cloud({dut[i] for i in blessed}), observer, bus, 1,
            spawner)  # type: ignore[arg-type]
        for i in done:
            coordinator._record(failed_record(config, None, i, "done before"))
        worker = coordinator.workers["0" * 16] = line_shards._Worker(0)
        await coordinator._recover("0" * 16, worker)
        await asyncio.gather(*coordinator.tasks)
        assert len(seen) == len(set(seen)) == 6 - len(rerun), seen  # each DUT once
        return coordinator, bus

    try:
        coordinator, bus = asyncio.run(recover())
    finally:
        for proc in spawner.proc_of.values():
            proc.kill()
            proc.wait()
    records = coordinator.records
    assert sorted(i for i, r in records.items() if r.failure_reason == STUCK) == failed
    assert sorted(i for i, r in records.items() if r.blessed) == sorted(blessed - done)
    heir = [w for w in coordinator.workers.values() if w.shard == 0 and w.duts]
    assert (heir[0].duts if heir else []) == rerun
    assigns = [m for _, m in bus.sent if isinstance(m, lw.Assign)]
    assert [a.duts for a in assigns] == ([rerun] if rerun else [])
    if rerun:  # enrolments for just the fixtures the rerun needs
        fixtures = {i % 2 for i in rerun}
        assert len(CloudInfo.from_dict(assigns[0].cloud).enrolments) == len(fixtures)


def test_a_cut_off_worker_whose_duts_the_cloud_cannot_account_for_fails_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No guessing: when the cloud cannot say which DUTs it blessed, nothing is rerun
    (a rerun could meet a blessed one) and the run fails with a typed error."""
    class Down(_Cloud):
        async def blessed_devices(self, device_ids: list[str]) -> set[str]:
            raise ConnectionError("the cloud is down")

    spawner = _Spawner(tmp_path)
    spawner.note("0" * 16).write_bytes(bytes(runtime.NOTE_SIZE))
    monkeypatch.setattr(line_shards, "SETTLE_S", 0.0)

    async def recover() -> None:
        config = LineConfig(fixtures=2, duts=6, seed=SEED)
        observer = type("O", (), {"stage": lambda *a: None, "done": lambda *a: None})()
        coordinator = line_shards._Coordinator(config, Down(set()), observer, _Bus(), 1,
                                               spawner)  # type: ignore[arg-type]
        worker = coordinator.workers["0" * 16] = line_shards._Worker(0)
        await coordinator._recover("0" * 16, worker)
        assert not coordinator.records
        with pytest.raises(LineError, match=r"could not be accounted for.*cloud is down"):
            worker.finished.result()

    try:
        asyncio.run(recover())
    finally:
        for proc in spawner.proc_of.values():
            proc.kill()
            proc.wait()
