"""``impfactory perf squirrel``: what running device code in the real Squirrel VM costs.

Measured in one run, each figure beside its reference where there is one:

* ``call_us``: one call from Python into a Squirrel callback (what the runtime
  pays per timer, pin change or message), through the watchdog's entry.
* ``native_us``: one imp API call from Squirrel (``hardware.millis()`` on an
  emulated imp: trampoline, argument conversion, the Python method), and the same
  call from Python device code (``python_native_us``) for comparison.
* ``loop_ns_per_iteration``: a compute loop under the watchdog (line hook and
  loop instrumentation) against the same loop in the plain binding
  (``plain_loop_ns_per_iteration``): the watchdog's price.
* ``start_ms``: a new device VM with the example factory firmware and its three
  libraries (FactoryTools, CFAx33KL, HTS221) resolved, compiled and run to its
  top level, as every DUT does when its code arrives.
* ``vm_kib``, ``imp_api_kib``, ``firmware_kib``: what that VM holds, from the C
  library's allocator (``squirrel.memory``; Squirrel allocates with ``malloc``):
  a fresh sandboxed device VM, the imp API bound into it, and the factory
  firmware compiled and run to its top level (``vm_total_kib``, the three
  together, is most of what ``impfactory perf memory`` finds per device).

``--json`` prints the figures as one object.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from impfactory.errors import ImpFactoryError
from impfactory.squirrel.memory import allocated

if TYPE_CHECKING:
    from impfactory.firmware.device import Device

DUT_PARAMS: dict[str, str | bool] = {"factoryfirmware": True, "factory_imp": "000000000000"}
"""A DUT's ``imp.configparams`` under factory firmware (another imp is the fixture)."""


def bare_device() -> Device:
    """An emulated DUT that is never powered on: its runtime alone, to start code in."""
    from impfactory.clock import VirtualClock
    from impfactory.firmware import examples
    from impfactory.firmware.device import Device
    from impfactory.firmware.identity import DeviceIdentity
    from impfactory.firmware.wifi import WifiEnvironment

    return Device(DeviceIdentity.from_serial(1), VirtualClock(), WifiEnvironment([]),
                  "mqtt://127.0.0.1:1", hardware=examples.dut_board())


def start_cpu_ms(source: str, configparams: dict[str, str | bool], runs: int = 15) -> float:
    """Median CPU milliseconds to start ``source`` in a fresh device's runtime (VM made,
    imp API bound, libraries resolved, compiled, run to its top level), after two
    starts that warm the caches: the least a DUT pays for each program it runs."""
    times = []
    for i in range(runs + 2):
        d = bare_device()
        d.configparams = dict(configparams)
        t0 = time.process_time()
        d.runtime.start(source, d.engine_for(source))
        if i >= 2:
            times.append(time.process_time() - t0)
        d.runtime.stop()
    return statistics.median(times) * 1000


def _best(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of ``repeat`` runs of ``fn`` in seconds (the least disturbed)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(n: int = 20_000, repeat: int = 5) -> dict[str, Any]:
    import squirrel as plain_binding

    from impfactory.firmware import examples
    from impfactory.firmware.runtime import PythonEngine
    from impfactory.squirrel import Vm
    from impfactory.squirrel.binding import silence_cout

    doc: dict[str, Any] = {"n": n}
    with Vm() as vm:
        empty = vm.compile("return function(x) { return x; }", "perf.nut")
        fn = vm.call(empty)
        doc["call_us"] = round(_best(lambda: [fn(1) for _ in range(n)], repeat) / n * 1e6, 2)
        loop_src = f"local s = 0;\nfor (local i = 0; i < {n}; i++) {{\n s += i;\n}}\nreturn s;"
        loop = vm.compile(loop_src, "loop.nut")
        doc["loop_ns_per_iteration"] = round(_best(lambda: vm.call(loop), repeat) / n * 1e9, 1)
    silence_cout()  # the plain binding prints "Time difference" when its VM goes
    plain = plain_binding.SQVM()
    plain_fn = plain.execute(f"return function() {{ {loop_src} }}")
    doc["plain_loop_ns_per_iteration"] = round(_best(plain_fn, repeat) / n * 1e9, 1)
    doc["watchdog_loop_factor"] = round(doc["loop_ns_per_iteration"]
                                        / doc["plain_loop_ns_per_iteration"], 1)

    dev = bare_device()
    source = f"for (local i = 0; i < {n}; i++) hardware.millis();"
    engine = dev.engine_for(source)
    top = engine.load(source)
    doc["native_us"] = round(_best(top, repeat) / n * 1e6, 2)
    engine.close()
    py = bare_device()
    py_engine = PythonEngine(__import__("impfactory.firmware.impapi", fromlist=["build_api"])
                             .build_api(py, py.runtime))
    py_top = py_engine.load(f"for i in range({n}): hardware.millis()")
    doc["python_native_us"] = round(_best(py_top, repeat) / n * 1e6, 2)

    firmware = examples.factory_source("factory-wifi", "factory-password")
    starts, held = [], []
    for _ in range(max(5, repeat * 4)):
        d = bare_device()
        d.configparams = dict(DUT_PARAMS)
        with _counting() as count:
            t0 = time.perf_counter()
            d.runtime.start(firmware, d.engine_for(firmware))
            starts.append(time.perf_counter() - t0)
        if count:
            held.append(count[0])
        d.runtime.stop()  # its VM is closed (freed) here
    doc["start_ms"] = round(statistics.median(starts) * 1000, 2)
    if held:
        doc.update(_vm_memory(bare_device, statistics.median(held)))
    return doc


@contextlib.contextmanager
def _counting() -> Iterator[list[int]]:
    """Bytes the C heap grew by inside the block, appended to the list it gives (left
    empty where there is no meter). The cycle collector is held off meanwhile, so
    no earlier garbage is freed inside the count."""
    gc.disable()
    count: list[int] = []
    before = allocated()
    try:
        yield count
    finally:
        after = allocated()
        gc.enable()
        if before is not None and after is not None:
            count.append(after - before)


def _vm_memory(device: Callable[[], Any], started: float) -> dict[str, float]:
    """KiB a fresh device VM holds, the imp API in it, and (from ``started``, bytes a
    whole start held) the firmware: medians over a few VMs, each measured alone."""
    from impfactory.firmware.sq_api import SquirrelApi
    from impfactory.firmware.sq_engine import CALLBACK_MEMORY
    from impfactory.squirrel import Vm

    def held(make: Callable[[Any], Vm]) -> float:
        kept, sizes = [], []
        for _ in range(5):
            host = device()  # not counted: only the VM and what is bound into it
            with _counting() as count:
                kept.append((host, make(host)))
            sizes += count
        for _host, vm in kept:
            vm.close()
        return statistics.median(sizes) if sizes else 0.0

    def fresh(_host: Any = None) -> Vm:
        return Vm(time_limit_s=2.0, environment="device", entry_growth_limit=CALLBACK_MEMORY,
                  shared=True)

    def with_api(host: Any) -> Vm:
        vm = fresh()
        SquirrelApi(vm, host, host.runtime).install()
        return vm

    vm = held(fresh)
    api = held(with_api) - vm
    return {"vm_kib": round(vm / 1024, 1), "imp_api_kib": round(api / 1024, 1),
            "firmware_kib": round((started - vm - api) / 1024, 1),
            "vm_total_kib": round(started / 1024, 1)}


def _run(args: argparse.Namespace) -> int:
    if args.n < 100 or args.repeat < 1:
        raise ImpFactoryError("--n must be at least 100 and --repeat at least 1")
    doc = measure(args.n, args.repeat)
    if args.json:
        json.dump(doc, sys.stdout)
        print()
        return 0
    print(f"perf squirrel ({doc['n']} operations, best of {args.repeat}):")
    print(f"  call into a Squirrel callback      {doc['call_us']:8.2f} us")
    print(f"  imp API call from Squirrel         {doc['native_us']:8.2f} us "
          f"(from Python device code {doc['python_native_us']:.2f} us)")
    print(f"  compute loop under the watchdog    {doc['loop_ns_per_iteration']:8.1f} ns/iteration "
          f"(plain binding {doc['plain_loop_ns_per_iteration']:.1f}: "
          f"x{doc['watchdog_loop_factor']})")
    print(f"  a DUT's VM with the factory firmware {doc['start_ms']:6.2f} ms to start")
    if "vm_total_kib" in doc:
        print(f"  ... and {doc['vm_total_kib']} KiB to hold: the VM {doc['vm_kib']}, the imp "
              f"API {doc['imp_api_kib']}, the firmware {doc['firmware_kib']}")
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("squirrel", help="the cost of Squirrel device code",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="operations per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is kept")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=_run)
