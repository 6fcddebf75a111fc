"""``impfactory soak``: the long reliability and security run, with its figures.

::

    impfactory soak [--duts 500] [--fixtures 8] [--cloud-kills 5] [--broker-restarts 2]
                    [--fuzz-cases 20000] [--seed S] [--scale 20] [--dir DIR] [--json]

Three parts, one verdict:

* **crash and restart cycles** (tools/crash_drill.py): ``broker serve``, ``cloud
  serve`` and ``line run --cloud`` as separate processes; while the line's DUTs
  go through, the cloud is killed with SIGKILL and restarted on the same store,
  and the broker is restarted from its directory, at moments drawn from the
  seed. Every DUT must end blessed or failed with a reason, and no blessing may
  be lost, doubled, or left without its webhook;
* **attacks** (tools/attacks.py): meanwhile a stranger on the factory network
  tries borrowed logins, sniffing every topic, forged factory-token and bless
  requests, a made-up module's registration and a flood of hellos; each must be
  refused, and the store must show nothing of them;
* **fuzz** (tools/soak_fuzz.py): hostile variants of every wire format into its
  decoder; only typed errors may come out.

It prints the faults injected, the attacks tried and refused, the fuzz cases
tried, the DUTs blessed and failed, and the data lost, which must be 0. Exit 0
only when nothing was lost, every attack was refused with no breach in the store,
and the fuzz found nothing; 1 otherwise; 2 for bad input. ``--dir`` keeps the
run's databases, logs and line report (default: a temporary directory, removed).
Needs Mosquitto (``broker serve``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from impfactory.cloud.broker import find_mosquitto
from impfactory.errors import ImpFactoryError
from impfactory.tools.crash_drill import Drill, DrillConfig
from impfactory.tools.soak_fuzz import fuzz


class SoakInputError(ImpFactoryError, ValueError):
    """A ``soak`` option is unusable (exit 2)."""


def register(sub: Any) -> None:
    p = sub.add_parser("soak", help="the long crash, attack and fuzz run, with its figures",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duts", type=int, default=500, help="DUTs on the line (default 500)")
    p.add_argument("--fixtures", type=int, default=8, help="fixtures (default 8)")
    p.add_argument("--cloud-kills", type=int, default=5,
                   help="times the cloud is killed with SIGKILL and restarted (default 5)")
    p.add_argument("--broker-restarts", type=int, default=2,
                   help="times the broker is killed and restarted (default 2)")
    p.add_argument("--fuzz-cases", type=int, default=20000,
                   help="hostile inputs for the wire decoders, and as many for each of "
                        "tools/fuzz.py's targets (default 20000)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the fault moments and the fuzz (default: a new one, printed)")
    p.add_argument("--scale", type=float, default=20.0,
                   help="line clock speed-up over the wall (default 20: slow enough that "
                        "every fault strikes while DUTs are in flight)")
    p.add_argument("--no-attacks", dest="attacks", action="store_false",
                   help="leave out the stranger's attacks")
    p.add_argument("--dir", type=Path, default=None,
                   help="keep the run's databases, logs and report here")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in ("duts", "fixtures"):
        if getattr(args, name) < 1:
            raise SoakInputError(f"--{name} must be at least 1")
    for name in ("cloud_kills", "broker_restarts", "fuzz_cases"):
        if getattr(args, name) < 0:
            raise SoakInputError(f"--{name.replace('_', '-')} cannot be negative")
    if not args.scale > 0:
        raise SoakInputError("--scale must be positive")
    if not find_mosquitto():
        raise SoakInputError("soak runs `broker serve`, which needs Mosquitto "
                             "(apt-get install mosquitto)")
    seed = args.seed if args.seed is not None else int(time.time()) % 100000
    def say(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    say(f"soak: seed {seed}; fuzzing {args.fuzz_cases} cases ...")
    fuzzed = fuzz(args.fuzz_cases, seed)
    say(f"soak: {args.duts} DUTs on {args.fixtures} fixtures through {args.cloud_kills} cloud "
        f"kill(s) and {args.broker_restarts} broker restart(s) ...")
    config = DrillConfig(duts=args.duts, fixtures=args.fixtures, cloud_kills=args.cloud_kills,
                         broker_restarts=args.broker_restarts, seed=seed, scale=args.scale,
                         attacks=args.attacks, timeout_s=max(600.0, args.duts * 4.0))
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        drilled = Drill(args.dir, config).run()
    else:
        with tempfile.TemporaryDirectory(prefix="impfactory-soak-") as tmp:
            drilled = Drill(Path(tmp), config).run()
    figures = {
        "seed": seed,
        "faults_injected": {"cloud_kills": drilled.cloud_kills,
                            "broker_restarts": drilled.broker_restarts},
        "attacks_tried": len(drilled.attacks),
        "attacks_refused": sum(a.refused for a in drilled.attacks),
        "breaches": drilled.breaches,
        "fuzz_cases": fuzzed.cases, "fuzz_rejected": fuzzed.rejected,
        "fuzz_findings": fuzzed.findings[:20],
        "duts": drilled.duts, "blessed": drilled.blessed, "failures": drilled.failures,
        "webhook_deliveries": drilled.webhook_deliveries,
        "webhook_redeliveries": drilled.webhook_redeliveries,
        "data_lost": drilled.lost, "violations": drilled.violations[:50],
        "wall_s": round(drilled.wall_s, 1),
    }
    asked = args.cloud_kills + args.broker_restarts
    struck = drilled.cloud_kills + drilled.broker_restarts
    if struck < asked:  # a soak that skipped its faults proves less than it says
        figures["violations"] = [*drilled.violations[:50],
                                 f"only {struck} of {asked} faults struck before the line "
                                 "finished (more --duts or a lower --scale gives them time)"]
    clean = (drilled.lost == 0 and not drilled.breaches and not fuzzed.findings
             and all(a.refused for a in drilled.attacks) and struck == asked)
    figures["clean"] = clean
    if args.json:
        json.dump(figures, sys.stdout)
        print()
    else:
        _print(figures, drilled.attacks)
    return 0 if clean else 1


def _print(f: dict[str, Any], attacks: list[Any]) -> None:
    faults = f["faults_injected"]
    print(f"faults injected: {faults['cloud_kills']} cloud SIGKILLs, "
          f"{faults['broker_restarts']} broker restarts")
    print(f"attacks: {f['attacks_refused']} of {f['attacks_tried']} refused, "
          f"{len(f['breaches'])} breaches in the store")
    for a in attacks:
        print(f"  {'refused' if a.refused else 'GOT IN '}  {a.name}"
              + (f" ({a.detail})" if a.detail else ""))
    print(f"fuzz: {f['fuzz_cases']} cases, {f['fuzz_rejected']} refused with a typed error, "
          f"{len(f['fuzz_findings'])} findings")
    failed = sum(f["failures"].values())
    print(f"line: {f['duts']} DUTs, {f['blessed']} blessed, {failed} failed"
          + (f" ({', '.join(f'{n} {r}' for r, n in f['failures'].items())})" if failed else ""))
    print(f"webhooks: {f['webhook_deliveries']} blessing deliveries "
          f"({f['webhook_redeliveries']} repeats of an event id)")
    print(f"data lost: {f['data_lost']}")
    for line in f["violations"] + f["breaches"] + f["fuzz_findings"]:
        print(f"  ! {line}")
    print(f"{'clean' if f['clean'] else 'NOT CLEAN'} in {f['wall_s']} s (seed {f['seed']})")
