"""VMs that are threads of one shared Squirrel state (``Vm(shared=...)``, ``shared``).

They share compiled code and the standard library, and nothing else a device could
use to see or change another: globals, ``math``, constants, errors, a watchdog
stop, a close. A stopped VM leaves the state and its other VMs usable.
"""

from __future__ import annotations

import gc
import threading

import pytest

from impfactory.clock import VirtualClock
from impfactory.firmware import examples
from impfactory.firmware.device import Device
from impfactory.firmware.identity import DeviceIdentity
from impfactory.firmware.wifi import WifiEnvironment
from impfactory.squirrel import (
    SquirrelCompileError,
    SquirrelRuntimeError,
    SquirrelTimeout,
    SquirrelVmStopped,
    Vm,
    memory,
)
from impfactory.squirrel.shared import SharedState

LOOP = "local i = 0;\nwhile (true) {\n i++;\n}\n"


@pytest.fixture
def state() -> SharedState:
    return SharedState()


def test_vms_of_one_state_share_compiled_code_and_nothing_code_can_change(
    state: SharedState,
) -> None:
    a, b = Vm(shared=state), Vm(shared=state)
    top = "g <- 5;\nmath.floor <- function(x) { return -1; };\n::print <- null;\nreturn g;"
    fa, fb = a.compile(top, "d.nut"), b.compile(top, "d.nut")
    assert fa._obj.raw == fb._obj.raw  # one compiled closure: its prototypes are shared
    assert a.call(fa) == 5
    assert b.run('return ("g" in getroottable()) + " " + math.floor(2.5);') == "false 2"
    assert b.run("return typeof print;") == "function"
    assert a.run("return math.floor(2.5);") == -1
    assert a.run("const K = 3;\nenum E { x = 7 }\nreturn K + E.x;", "c.nut") == 10
    with pytest.raises(SquirrelRuntimeError, match="the index 'K' does not exist"):
        b.run("return K;")
    assert b.run("const K = 4;\nreturn K;", "c.nut") == 4  # its own, not a clash
    assert a.run("return K;") == 3


def test_errors_stay_with_the_vm_that_made_them(state: SharedState) -> None:
    a, b = Vm(shared=state), Vm(shared=state)
    with pytest.raises(SquirrelCompileError) as err:
        a.compile("local x = ;", "bad.nut")
    assert (err.value.file, err.value.line) == ("bad.nut", 1)
    with pytest.raises(SquirrelRuntimeError) as rt:
        b.run('function f() {\n  throw "b fails";\n}\nf();', "b.nut")
    assert str(rt.value).startswith("b fails") and rt.value.stack[0].line == 2
    assert a.run("return 1;") == 1 and b.run("return 2;") == 2


def test_a_stopped_vm_leaves_the_state_and_its_other_vms_usable(state: SharedState) -> None:
    others = [Vm(shared=state) for _ in range(3)]
    for n, vm in enumerate(others):
        vm.run(f"count <- {n};\nfunction bump() {{ count++; return count; }}")
    for _ in range(20):
        runaway = Vm(shared=state, time_limit_s=0.005)
        with pytest.raises(SquirrelTimeout):
            runaway.run(LOOP)
        assert runaway.dead
        with pytest.raises(SquirrelVmStopped):
            runaway.run("return 1;")
        runaway.close()
        for vm in others:
            vm.run("bump();")
    state.collect()
    assert [vm.run("return bump();") for vm in others] == [21, 22, 23]
    for vm in others:
        vm.close()


def test_a_native_may_run_another_vm_of_the_state(state: SharedState) -> None:
    a, b = Vm(shared=state), Vm(shared=state)
    b.run('who <- "b";')
    b_who = b.run("return function() { return who; };")
    a.set_global("ask", a.native(lambda: b.call(b_who), "ask"))
    assert a.run('who <- "a";\nlocal x = ask();\nreturn x + " " + who;') == "b a"


def test_vms_of_one_state_on_two_os_threads_take_turns(state: SharedState) -> None:
    vms = [Vm(shared=state) for _ in range(2)]
    for n, vm in enumerate(vms):
        vm.set_global("yield_", vm.native(lambda: threading.Event().wait(0.0001), "yield_"))
        vm.run(f"me <- {n};\nfunction step(k) {{ yield_(); return me * 1000 + k; }}")
    results: list[list[int]] = [[], []]

    def work(n: int) -> None:
        step = vms[n].get_global("step")
        results[n] = [step(k) for k in range(200)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [list(range(200)), [1000 + k for k in range(200)]]


def test_a_closed_vm_gives_its_memory_back(state: SharedState) -> None:
    if memory.METER is None:
        pytest.skip("no allocator meter here")
    source = (
        "class Node {\n  other = null;\n  data = null;\n  constructor() {"
        " data = array(100, 1); other = this; }\n}\nkeep <- Node();\n"
        "function cb() { return keep; }\nreturn cb;"
    )

    def one() -> None:
        vm = Vm(shared=state)
        handle = vm.call(vm.compile(source, "cycle.nut"))  # a handle that outlives it
        vm.close()
        with pytest.raises(SquirrelVmStopped):
            handle()

    one()  # the compiled unit stays in the state's cache
    gc.collect()
    state.collect()
    before = memory.allocated() or 0
    for _ in range(100):
        one()
    gc.collect()
    state.collect()
    grown = (memory.allocated() or 0) - before
    assert grown < 100 * 512, grown  # each VM held ~7 KiB; what is left is noise


def make(serial: int) -> tuple[VirtualClock, Device]:
    clock = VirtualClock()
    dev = Device(
        DeviceIdentity.from_serial(serial),
        clock,
        WifiEnvironment([]),
        "mqtt://127.0.0.1:1",
        hardware=examples.dut_board(),
    )
    return clock, dev


def run(dev: Device, source: str) -> bool:
    return dev.runtime.start(source, dev.engine_for(source))


def test_two_devices_in_one_process_cannot_see_or_break_each_other() -> None:
    clock_a, a = make(1)
    clock_b, b = make(2)
    assert run(
        a,
        """
secret <- "a's";
const LIMIT = 1;
math.floor <- function(x) { return -1; };
imp.wakeup(1, function() { throw "a fails"; });
""",
    )
    assert run(
        b,
        """
imp.wakeup(2, function() {
  server.log(("secret" in getroottable()) + " " + math.floor(2.5));
  try { server.log(LIMIT); } catch (e) { server.log(e); }
});
""",
    )
    vm_a, vm_b = a.runtime.engine.vm, b.runtime.engine.vm  # type: ignore[union-attr]
    assert vm_a._state is vm_b._state  # one state: the test is about sharing
    clock_a.advance_sync(3.0)
    clock_b.advance_sync(3.0)
    assert any("a fails" in line for line in a.logs)
    assert b.logs == ["false 2", "the index 'LIMIT' does not exist"]
    assert run(a, 'server.log("a again");')  # new code on a: b's code goes on
    assert run(b, 'server.log(("secret" in getroottable()) + " " + math.floor(2.5));')
    assert a.logs[-1] == "a again" and b.logs[-1] == "false 2"


def test_the_standard_classes_are_each_vms_own(state: SharedState) -> None:
    a, b = Vm(shared=state), Vm(shared=state)
    a.run(
        "blob.len <- function() { return 42; };\n"
        "blob.getbase().tell <- function() { return 43; };\n"
        'regexp.match <- function(s) { return "taken"; };\n'
        'blob.setattributes(null, {owner = "a"});\n'
    )
    c = Vm(shared=state)  # made after a's changes: the classes it gets are new too
    for vm in (b, c):
        assert vm.run('local x = blob(4);\nreturn x.len() + " " + x.tell();') == "4 0"
        assert vm.run('return regexp("a").match("a");') is True
        assert vm.run("return blob.getattributes(null);") is None
        assert vm.run("local x = blob(4);\nreturn x.readblob(2).len();") == 2
    assert a.run("local x = blob(4);\nreturn x.readblob(2).len();") == 42
    assert b.run('return "stream" in getroottable();') is False
