"""The crash drill: a line runs while its cloud is killed and its broker restarted.

::

    broker serve (own process, DIR) <---- cloud serve --broker CLOUD_URL --db D  (SIGKILLed,
         ^                                    |                                   restarted)
         |                                    v  webhooks (at least once)
    line run --cloud --broker            WebhookReceiver (this process)

Every process is the real command (``impfactory broker serve``, ``cloud serve``,
``line run --cloud``), started as a user starts it. While the line runs, the
drill kills the cloud with SIGKILL at random moments (seeded) and restarts it on
the same database and API port, and restarts the broker from its directory on its
port, as a factory's infrastructure fails. When the line is done it checks, from the
line's per-DUT records, the cloud's store and the webhook receiver's records:

* every DUT ended blessed, or failed with a reason;
* no blessed device lost: a DUT the line saw blessed is blessed in the store,
  in its production group (and the store blesses no DUT the line saw fail);
* none blessed twice: one blessing in each blessed device's log;
* none in two groups: no device is listed in both the DUT and production groups;
* every blessing webhook delivered at least once, every delivery of one device's
  blessing with the same event ID, and none for a device that is not blessed.

Anything else is a violation; ``DrillResult.lost`` counts them (it must be 0).
Used by tests/test_crash.py (a short drill) and ``impfactory soak`` (long ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from impfactory.cloud.api_client import ApiClient
from impfactory.cloud.broker import steady_port
from impfactory.cloud.service import CloudService
from impfactory.cloud.store import open_store
from impfactory.errors import ImpFactoryError
from impfactory.firmware.examples import application_source, factory_agent_source, factory_source
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID
from impfactory.tools.attacks import Attack, LiveAttacks, check_store, live_attacks
from impfactory.tools.line_remote import prepare, retrying
from impfactory.tools.webhook_receiver import WebhookReceiver

CLI = [sys.executable, "-m", "impfactory.tools.cli"]
OWNER = "drill-owner"
READY_S = 60.0
"""Wall seconds a started broker or cloud may take to say it is ready."""


class DrillError(ImpFactoryError, RuntimeError):
    """A part of the drill did not start or the line could not finish."""


@dataclass(frozen=True)
class DrillConfig:
    """One drill; its fault moments are drawn from ``seed``."""

    duts: int = 80
    fixtures: int = 4
    cloud_kills: int = 2
    broker_restarts: int = 0
    seed: int = 0
    scale: float = 50.0
    faults_within: tuple[float, float] = (0.1, 0.8)
    """When the faults strike: each at a moment drawn uniformly from this share of the
    run, counted in blessings announced (so a fault always meets DUTs in flight)."""
    down_s: tuple[float, float] = (0.0, 1.0)
    """Wall seconds a killed cloud stays down before its restart."""
    timeout_s: float = 600.0
    attacks: bool = False
    """Have a stranger try the attacks of tools/attacks.py while the line runs."""


@dataclass
class DrillResult:
    duts: int = 0
    blessed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    cloud_kills: int = 0
    broker_restarts: int = 0
    webhook_deliveries: int = 0
    webhook_redeliveries: int = 0
    violations: list[str] = field(default_factory=list)
    attacks: list[Attack] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)
    """What the store shows an attack got (must be empty)."""
    wall_s: float = 0.0

    @property
    def lost(self) -> int:
        """Violations of the drill's invariants (blessings lost, doubled, undelivered)."""
        return len(self.violations)

    def to_dict(self) -> dict[str, Any]:
        return {"duts": self.duts, "blessed": self.blessed, "failures": self.failures,
                "cloud_kills": self.cloud_kills, "broker_restarts": self.broker_restarts,
                "webhook_deliveries": self.webhook_deliveries,
                "webhook_redeliveries": self.webhook_redeliveries,
                "lost": self.lost, "violations": self.violations[:50],
                "attacks_tried": len(self.attacks),
                "attacks_refused": sum(a.refused for a in self.attacks),
                "attacks": [{"name": a.name, "refused": a.refused, "detail": a.detail}
                            for a in self.attacks],
                "breaches": self.breaches[:50], "wall_s": round(self.wall_s, 2)}


class _Proc:
    """One command of ours as a child process; its stderr goes to a file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log = log
        self.proc: subprocess.Popen[str] | None = None
        self._err: TextIO | None = None

    def start(self) -> None:
        """Start it (``read_line`` then reads what it prints on readiness)."""
        self._err = open(self.log, "a")  # noqa: SIM115 - kept for the child's lifetime
        self.proc = subprocess.Popen([*CLI, *self.args], stdout=subprocess.PIPE,
                                     stderr=self._err, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def read_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(READY_S)
        if not found or not found[0]:
            self.stop(signal.SIGKILL)
            tail = self.log.read_text(errors="replace")[-800:]
            raise DrillError(f"{' '.join(self.args[:2])} did not start: {tail}")
        return found[0].strip()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None
        if self._err is not None:
            self._err.close()
            self._err = None


class Drill:
    """Runs one ``DrillConfig`` in ``workdir`` (its database, broker state, logs, report)."""

    def __init__(self, workdir: Path, config: DrillConfig) -> None:
        self.dir = workdir
        self.config = config
        self.rng = random.Random(config.seed)
        self.result = DrillResult()
        self.password = secrets.token_urlsafe(12)
        self.api_port = steady_port()
        self.endpoint = f"http://127.0.0.1:{self.api_port}/v5"
        self.broker = _Proc(["broker", "serve", "--dir", str(workdir / "broker")],
                            workdir / "broker.log")
        self.broker_url = ""
        self.cloud_url = ""
        self.cloud: _Proc | None = None
        self.tried: LiveAttacks | None = None
        self.fixture_group = ""

    # ------------------------------------------------------------ parts

    def start_broker(self, port: int | None = None) -> None:
        self.broker.args = [*self.broker.args[:4], "--port", str(port or steady_port())]
        self.broker.start()
        self.broker_url = self.broker.read_line()
        self.cloud_url = self.broker.read_line().removeprefix("cloud: ")

    def start_cloud(self) -> None:
        cloud = _Proc(["cloud", "serve", "--broker", self.cloud_url, "--db",
                       str(self.dir / "cloud.db"), "--api-port", str(self.api_port),
                       "--owner", f"{OWNER}:{self.password}", "--quiet",
                       "--log-level", "WARNING"], self.dir / "cloud.log")
        cloud.start()
        json.loads(cloud.read_line())
        self.cloud = cloud

    def kill_cloud(self) -> None:
        """SIGKILL: no chance to flush, close or say goodbye."""
        if self.cloud is not None:
            self.cloud.stop(signal.SIGKILL)
            self.cloud = None

    def restart_broker(self) -> None:
        port = int(self.broker_url.rsplit(":", 1)[1])
        self.broker.stop(signal.SIGKILL)
        self.start_broker(port)

    # ------------------------------------------------------------ the run

    def run(self) -> DrillResult:
        started = time.monotonic()
        receiver = WebhookReceiver().start()
        try:
            self.start_broker()
            self.start_cloud()
            client = ApiClient(self.endpoint).login(OWNER, self.password)
            line = prepare(client, factory_source(FACTORY_SSID, FACTORY_PASSWORD),
                           application_source(), factory_agent_source())
            client.call("POST", "/webhooks", {"data": {
                "type": "webhook", "attributes": {"event": "blessing", "url": receiver.url,
                                                  "content_type": "application/json"},
                "relationships": {"devicegroup": {"type": line.production_group["type"],
                                                  "id": line.production_group["id"]}}}})
            self.fixture_group = str(line.fixture_group["id"])
            records = self._run_line(receiver)
            self._check(records, line.production_group["id"], line.dut_group["id"], receiver)
        finally:
            receiver.close()
            if self.cloud is not None:
                self.cloud.stop()
            self.broker.stop()
        self.result.wall_s = time.monotonic() - started
        return self.result

    def line_argv(self, report: Path) -> list[str]:
        """The ``line run --cloud`` arguments for this drill.

        The password is random URL-safe text, so it may begin with ``-``: it is given as
        ``--password=VALUE``, which argparse cannot mistake for another option.
        """
        cfg = self.config
        return ["line", "run", "--cloud", self.endpoint, "--user", OWNER,
                f"--password={self.password}", "--broker", self.broker_url,
                "--duts", str(cfg.duts), "--fixtures", str(cfg.fixtures),
                "--seed", str(cfg.seed), "--scale", str(cfg.scale), "--json",
                "--report", str(report)]

    def _run_line(self, receiver: WebhookReceiver) -> list[dict[str, Any]]:
        cfg = self.config
        report = self.dir / "report"
        out = self.dir / "line.json"
        with open(out, "w") as stdout, open(self.dir / "line.log", "w") as stderr:
            line = subprocess.Popen([*CLI, *self.line_argv(report)], stdout=stdout,
                                    stderr=stderr, text=True)
            attacker = None
            if cfg.attacks:
                attacker = threading.Thread(target=self._attack, args=(line, receiver),
                                            name="stranger", daemon=True)
                attacker.start()
            try:
                self._inject_faults(line, receiver)
                code = line.wait(cfg.timeout_s)
                if attacker is not None:
                    attacker.join(cfg.timeout_s)
            finally:
                if line.poll() is None:
                    line.kill()
                    line.wait()
        if code != 0:
            tail = (self.dir / "line.log").read_text(errors="replace")[-1500:]
            raise DrillError(f"line run exited {code}: {tail}")
        if self.cloud is None:  # the last fault left it down: the factory restarts it
            self.start_cloud()
        return list(json.loads((report / "duts.json").read_text())["duts"])

    def _inject_faults(self, line: subprocess.Popen[str], receiver: WebhookReceiver) -> None:
        """Strike each fault once the run has got that far (blessings announced)."""
        cfg = self.config
        faults = ["cloud"] * cfg.cloud_kills + ["broker"] * cfg.broker_restarts
        self.rng.shuffle(faults)
        low, high = cfg.faults_within
        moments = sorted(max(1, round(self.rng.uniform(low, high) * cfg.duts)) for _ in faults)
        for fault, moment in zip(faults, moments, strict=True):
            while len({h.get("device_id") for h in receiver.events("blessing")}) < moment:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    line.wait(0.05)
                    return  # the line finished first
            if fault == "cloud":
                self.kill_cloud()
                self.result.cloud_kills += 1
                time.sleep(self.rng.uniform(*cfg.down_s))
                self.start_cloud()
            else:
                self.restart_broker()
                self.result.broker_restarts += 1

    def _attack(self, line: subprocess.Popen[str], receiver: WebhookReceiver) -> None:
        """A stranger tries every attack once a few DUTs are blessed (victims to aim at),
        while the line runs; tried again from the start when a fault took the broker or
        the cloud away mid-attack (it proves nothing then)."""
        while len({h.get("device_id") for h in receiver.events("blessing")}) < 3:
            if line.poll() is not None:
                break
            time.sleep(0.1)
        victims = sorted({str(h.get("device_id")) for h in receiver.events("blessing")})
        last: BaseException | None = None
        for _ in range(10):
            try:
                fixtures = retrying(self._fixtures)
                self.tried = asyncio.run(asyncio.wait_for(
                    live_attacks(self.broker_url, victims, fixtures), 120))
                self.result.attacks = self.tried.attacks
                return
            except Exception as err:  # the infrastructure was down: try again
                last = err
                time.sleep(1.0)
        self.result.breaches.append(f"the attacks could not be run: {last!r}")

    def _fixtures(self) -> list[str]:
        client = ApiClient(self.endpoint).login(OWNER, self.password)
        return [str(d["id"]) for d in client.list_all("/devices",
                                                      {"devicegroup.id": self.fixture_group})]

    # ------------------------------------------------------------ the checks

    def _check(self, records: list[dict[str, Any]], production: str, dut_group: str,
               receiver: WebhookReceiver) -> None:
        res, bad = self.result, self.result.violations
        res.duts = len(records)
        if len(records) != self.config.duts:
            bad.append(f"{self.config.duts} DUTs placed, {len(records)} recorded")
        line_blessed = {r["dut_id"] for r in records if r["final_state"] == "blessed"}
        res.blessed = len(line_blessed)
        res.failures = dict(Counter(r["failure_reason"] for r in records
                                    if r["final_state"] != "blessed"))
        for r in records:
            if r["final_state"] != "blessed" and not r.get("failure_reason"):
                bad.append(f"DUT {r['dut_id']} neither blessed nor failed with a reason")
        # the webhooks of every blessing: the outbox delivers them once the cloud runs
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not line_blessed <= {
                h.get("device_id") for h in receiver.events("blessing")}:
            time.sleep(0.2)
        time.sleep(0.5)  # a redelivery in flight lands before the count
        assert self.cloud is not None
        self.cloud.stop()
        self.cloud = None
        svc = CloudService(open_store(self.dir / "cloud.db"))
        try:
            self._check_store(svc, records, line_blessed, production, dut_group)
            if self.tried is not None:
                res.breaches += check_store(svc, self.tried)
        finally:
            svc.close()
        hooks: dict[str, set[str]] = {}
        for h in receiver.events("blessing"):
            hooks.setdefault(str(h.get("device_id")), set()).add(str(h.get("event_id")))
        res.webhook_deliveries = len(receiver.events("blessing"))
        res.webhook_redeliveries = res.webhook_deliveries - len(hooks)
        for device_id in sorted(line_blessed - set(hooks)):
            bad.append(f"blessing of {device_id}: no webhook delivered")
        for device_id, ids in sorted(hooks.items()):
            if len(ids) != 1:
                bad.append(f"blessing of {device_id}: {len(ids)} different event ids")
            if device_id not in line_blessed:
                bad.append(f"blessing webhook for {device_id}, which the line saw fail")

    def _check_store(self, svc: CloudService, records: list[dict[str, Any]],
                     line_blessed: set[str], production: str, dut_group: str) -> None:
        bad = self.result.violations
        in_production = {d.id for d in svc.list_devices(group_id=production)}
        in_dut = {d.id for d in svc.list_devices(group_id=dut_group)}
        for device_id in sorted(in_production & in_dut):
            bad.append(f"device {device_id} is in two groups")
        for r in records:
            device = svc.find_device(r["dut_id"])
            blessed_on_line = r["dut_id"] in line_blessed
            if device is None:
                if blessed_on_line:
                    bad.append(f"blessed DUT {r['dut_id']} unknown to the cloud")
                continue
            if blessed_on_line and not device.blessed:
                bad.append(f"blessed DUT {device.id} lost: not blessed in the store")
            if device.blessed and not blessed_on_line:
                bad.append(f"DUT {device.id} blessed in the store but failed on the line "
                           f"({r.get('failure_reason')})")
            if device.blessed and device.group_id != production:
                bad.append(f"blessed DUT {device.id} not in the production group")
            blessings = sum(1 for e in svc.device_logs(device.id, size=1000)
                            if e.msg.startswith("Blessed:"))
            if blessings > 1:
                bad.append(f"DUT {device.id} blessed {blessings} times")
