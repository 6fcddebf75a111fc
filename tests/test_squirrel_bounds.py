"""Issue 13: device code cannot take the machine's memory or crash the process.

Squirrel 3.0.5 makes an array in one C call and does not survive the allocation
failing (``array(1000000000)`` was a segmentation fault, after 23 s and 3 GB);
no watchdog can interrupt a C call. So ``array``, ``resize`` and ``extend`` refuse
sizes over ``impos.MAX_ARRAY`` before allocating, as a Squirrel error ``try`` can
catch; and a device's callback that allocates more than
``sq_engine.CALLBACK_MEMORY`` step by step (a string doubled in a loop) is stopped
like one that runs too long, and its device goes on without that code.
"""

from __future__ import annotations

import time

import pytest
from test_firmware_squirrel import make, run

from impfactory.firmware import sq_engine
from impfactory.squirrel import SquirrelMemoryError, SquirrelRuntimeError, Vm, impos


@pytest.mark.parametrize("code", [
    "array(1000000000)",
    "[].resize(1000000000)",
    "local a = [1]; while (true) a.extend(a);",
    f"array(4).resize({impos.MAX_ARRAY + 1}, 0)",
])
def test_an_array_too_big_to_make_is_an_error_not_a_crash(code: str) -> None:
    vm = Vm(environment="device")
    with pytest.raises(SquirrelRuntimeError, match="over the limit of 1048576"):
        vm.run(code)
    assert vm.run("return array(3).len()") == 3  # the VM goes on


def test_arrays_within_the_limit_behave_as_before() -> None:
    vm = Vm(environment="device")
    assert vm.run("""
        local a = array(3, 7);
        a.resize(5, 1);
        local r = a.extend([8, 9]);
        local caught = null;
        try { array(impos_max + 1) } catch (e) { caught = e }
        return [a.len(), a[0], a[4], a[6], r, typeof array, array(2)[1], caught != null,
                array(impos_max).len()];
    """.replace("impos_max", str(impos.MAX_ARRAY))) == [7, 7, 1, 9, None, "function", None,
                                                        True, impos.MAX_ARRAY]


def test_a_callback_allocating_without_bound_is_stopped() -> None:
    vm = Vm(environment="device", entry_growth_limit=4 << 20)
    with pytest.raises(SquirrelMemoryError, match="allocated in one call") as stopped:
        vm.run("local keep = []; while (true) keep.push(blob(65536));")
    assert vm.dead and stopped.value.used < 64 << 20  # the meter is read every 2 ms


def test_a_device_whose_callback_eats_memory_is_stopped_and_others_go_on() -> None:
    clock, dev = make()
    _, other = make()
    assert run(dev, """
imp.wakeup(1, function() { local s = "x"; while (true) s = s + s; });
imp.wakeup(2, function() { server.log("still here"); });
""")
    clock.advance_sync(3.0)
    errors = [line for line in dev.logs if line.startswith("ERROR")]
    assert "allocated in one call" in errors[0] and "over its limit of " \
        f"{sq_engine.CALLBACK_MEMORY // 1024} KiB" in errors[0]
    assert errors[-1].endswith("its code is stopped until it restarts or gets new code")
    assert "still here" not in dev.logs
    assert run(other, 'server.log("other device runs");')
    assert other.logs == ["other device runs"]


def test_an_agents_memory_limit_stops_a_doubling_string_close_to_the_limit() -> None:
    """Metered VMs look at the meter every few events: an agent (2 MiB) doubling a
    string was stopped at 2.6 GB when it looked every 32."""
    vm = Vm(environment="agent", memory_limit=2 << 20, timer=time.thread_time)
    with pytest.raises(SquirrelMemoryError) as stopped:
        vm.run('local s = "x"; while (true) s = s + s;')
    assert stopped.value.used < 512 << 20  # 10-160 MB seen: the meter is read every 2 ms
