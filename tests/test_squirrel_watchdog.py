"""The watchdog stops Squirrel that runs too long or recurses too deep, whatever the
code does to hide, and leaves every other VM working.

Most tests inject the watchdog's timer (each reading advances it a little), so a
runaway loop is stopped after a known amount of work without waiting on the wall
clock; two tests use real time to show the limit is wall seconds. Every test runs
with the C hook (impfactory/squirrel/_hook.c) and with the Python one it stands for.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest
import squirrel as pybind
from conftest import IN_CI

from impfactory.squirrel import (
    Frame,
    SquirrelCompileError,
    SquirrelStackOverflow,
    SquirrelTimeout,
    SquirrelVmStopped,
    Vm,
    format_error,
    watchdog,
)
from impfactory.squirrel.source import instrument


@pytest.fixture(autouse=True, params=["c", "python"])
def hook(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which debug hook the VMs made in the test get."""
    if request.param == "python":
        monkeypatch.setattr(watchdog, "_native", None)
    elif watchdog._native is None:
        if IN_CI:
            pytest.fail("impfactory/squirrel/_hook.c was not built")
        pytest.skip("the C hook was not built")
    return str(request.param)


def test_the_hook_counts_where_it_should(hook: str) -> None:
    """The C hook counts the VM's events in C: Python hears of every ``check_every``-th
    (``slow_event``), never of each; the Python hook is a ctypes callback for each."""
    with Vm(time_limit_s=5.0) as vm:
        guard = vm._guard
        if hook == "c":
            assert guard.native is watchdog._native
            depth, max_depth, _, every = watchdog._native.state(vm._v)
            assert (depth, max_depth, every) == (0, guard.max_depth, guard.check_every)
        else:
            assert guard.native is None
        heard: list[int] = []
        real = guard.timer
        guard.timer = lambda: heard.append(1) or real()
        vm.run("local s = 0; for (local i = 0; i < 3200; i++) { s += i; }")
        # a look at the clock when armed, and one each check_every events of ~3,200
        assert 50 <= len(heard) <= 200


def ticking(step: float = 0.01) -> Callable[[], float]:
    """A timer that moves ``step`` seconds every time it is read."""
    counter = itertools.count()
    return lambda: next(counter) * step


RUNAWAY = {
    "one-line while": "while(true){}",
    "one-line counter": "local i=0; while(i<2000000000) i++;",
    "empty for": "for(;;);",
    "do with a block": "do {} while(true)",
    "do with a statement": "local x = 0; do x++\nwhile(true)",
    "do with an if": "do if (true) ; else ;\nwhile (true)",
    "multi-line": "local i = 0;\nwhile (true) {\n  i++;\n}\n",
    "inner loop never entered": "while (true) { while (false) {} }",
    "foreach": "local a = [1, 2, 3]; while (true) foreach (x in a) {}",
    "natives in the loop": "while (true) { math.rand(); }",
    "catch around the loop": "while (true) { try { while (true) {} } catch (e) {} }",
    "recursion in the catch": "function g() { try { while (true) {} } catch (e) { g(); } }\ng();",
    "tail recursion": "function f(n) { return f(n + 1); }\nf(0);",
    "lambda tail recursion": "local f; f = @(n) f(n + 1); f(0);",
    "generator": ("function gen() { while (true) yield 1; }\n"
                  "local g = gen(); while (true) resume g;"),
    "class method": "class A { function spin() { for (local i = 0; ; i++) {} } }\nA().spin();",
    "loop in a comment-laden header": "while (/* ) */ true /* ( */) /* { */ {}",
}


@pytest.mark.parametrize("source", RUNAWAY.values(), ids=RUNAWAY.keys())
def test_runaway_code_is_stopped(source: str) -> None:
    with Vm(time_limit_s=1.0, timer=ticking()) as vm:
        with pytest.raises(SquirrelTimeout) as info:
            vm.run(source)
        assert vm.dead
        assert info.value.stack, "the stack where it was stopped"
        assert format_error(info.value)[0] == (
            "the code ran longer than its time limit of 1 s and was stopped")


def test_deep_recursion_is_a_stack_overflow() -> None:
    with Vm(max_depth=50, timer=ticking()) as vm:
        with pytest.raises(SquirrelStackOverflow) as info:
            vm.run("function f(n) { return 1 + f(n + 1); }\nf(0);")
        assert vm.dead
        assert info.value.stack[0] == Frame("f", "device.nut", 1)
        assert format_error(info.value)[0] == "stack overflow"


def test_legitimate_depth_tail_calls_and_generators_are_not_stopped() -> None:
    with Vm(max_depth=50, time_limit_s=30) as vm:
        assert vm.run("function r(n) { if (n == 0) return 0; return 1 + r(n - 1); }\n"
                      "return r(40);") == 40
        assert vm.run("function t(n) { if (n == 0) return 0; return t(n - 1); }\n"
                      "return t(5000);") == 0
        assert vm.run("function gen() { local i = 0; while (true) yield i++; }\n"
                      "local g = gen(); local s = 0;\n"
                      "for (local i = 0; i < 5000; i++) s += resume g;\nreturn s;") == 12497500


def test_the_stop_reports_where_the_code_was() -> None:
    source = ("function spin() {\n"
              "    local i = 0;\n"
              "    while (true) {\n"
              "        i++;\n"
              "    }\n"
              "}\n"
              "spin();\n")
    with Vm(timer=ticking()) as vm, pytest.raises(SquirrelTimeout) as info:
        vm.run(source, "fixture.nut")
    assert info.value.stack == [Frame("spin", "fixture.nut", 4), Frame("main", "fixture.nut", 7)]


def test_a_stopped_vm_takes_no_more_calls_and_closes_quietly() -> None:
    vm = Vm(timer=ticking())
    callback = vm.run("return function() { return 1; }")
    with pytest.raises(SquirrelTimeout):
        vm.run("while (true) {}")
    with pytest.raises(SquirrelVmStopped, match="stopped"):
        callback()
    with pytest.raises(SquirrelVmStopped):
        vm.run("return 1")
    vm.close()


def test_the_limit_is_wall_time_and_other_vms_go_on() -> None:
    looping, other = Vm(time_limit_s=0.2), Vm(time_limit_s=0.2)
    answer = other.run("return function(x) { return x * 2; }")
    started = time.monotonic()
    with pytest.raises(SquirrelTimeout):
        looping.run("local i = 0; while (true) { i++; }")
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 1.5
    assert answer(21) == 42
    with Vm() as fresh:
        assert fresh.run("return 1 + 1") == 2
    looping.close()
    other.close()


def test_each_callback_gets_the_whole_limit() -> None:
    with Vm(time_limit_s=0.3) as vm:
        work = vm.run("return function() { local s = 0; for (local i = 0; i < 2000; i++) s += i;"
                      " return s; }")
        started = time.monotonic()
        while time.monotonic() - started < 0.5:  # longer than the limit, in many entries
            assert work() == 1999000


def test_a_signal_during_squirrel_stops_it_and_surfaces() -> None:
    readings = itertools.count()

    def timer() -> float:
        if next(readings) > 5:
            raise KeyboardInterrupt
        return 0.0

    with Vm(timer=timer) as vm, pytest.raises(KeyboardInterrupt):
        vm.run("while (true) {}")
    assert vm.dead


def test_straight_line_code_costs_no_line_events() -> None:
    readings = itertools.count()

    def timer() -> float:
        next(readings)
        return 0.0

    source = "local x = 0;\n" + "x = x + 1;\n" * 2000 + "return x;"
    with Vm(timer=timer) as vm:
        assert vm.run(source) == 2000
    assert next(readings) <= 2  # arming, no check: not one event every 32 statements


# --- the instrumentation --------------------------------------------------------------

SEMANTICS = [
    "local s = 0; for (local i = 0; i < 10; i++) s += i; return s;",
    "local s = 0, i = 0; while (i < 5) { i++; if (i == 2) continue; s += i; } return s;",
    "local i = 0; do i += 3\nwhile (i < 10); return i;",
    "local i = 0; do { i++; if (i > 4) break; } while (true); return i;",
    "local r = []; foreach (k, v in [5, 6]) r.append(k * v); return r.len() + r[1];",
    'local s = "while(1) for(;;) do"; local t = @"do { } while(x)"; return s.len() + t.len();',
    "local c = 'x'; // while (true) {}\n# for (;;) {}\n/* do {} */ return c;",
    "local n = 0; do do n++\nwhile (n % 3)\nwhile (n < 7); return n;",
    "local n = 0; do if (n < 3) n++; else n += 10; while (n < 12)\nreturn n;",
    "local n = 0; do try { n++; } catch (e) {} while (n < 4); return n;",
    "local n = 0; do switch (n) { case 0: n = 5; break; default: n++; } while (n < 8); return n;",
    "local f = function(x) { local a = 0; while (x-- > 0) a += 2; return a; }; return f(4);",
]


@pytest.mark.parametrize("source", SEMANTICS)
def test_instrumented_code_means_what_the_original_meant(source: str) -> None:
    plain = pybind.SQVM()
    expected = plain.execute(f"return (function() {{ {source} }})();")
    del plain
    with Vm() as vm:
        assert vm.run(source) == expected


@pytest.mark.parametrize("source", [
    "local i = 0; do i += 3; while (i < 10) return i;",
    "local i = 0; do i += 3; while (i < 10);",
    "while (x) {",
    "do {} while",
    "for (;;",
])
def test_code_the_compiler_refuses_is_still_refused(source: str) -> None:
    plain = pybind.SQVM()
    with pytest.raises(ValueError, match="compile"):
        plain.execute(source)
    del plain
    with Vm() as vm, pytest.raises(SquirrelCompileError):
        vm.compile(source)


def test_instrumentation_keeps_lines_and_columns() -> None:
    source = 'while (a) {} // while (b) {}\nlocal s = "for (;;) {}";\ndo x++; while (y)\n'
    result = instrument(source)
    assert result.source.count("\n") > source.count("\n")
    lines = result.source.split("\n")
    for number, (line, shift) in enumerate(result.origin, start=1):
        text = lines[number - 1]
        original = source.split("\n")[line - 1]
        for column, char in enumerate(text):
            if char in "\n" or not (0 <= column + shift < len(original)):
                continue
            if original[column + shift] != char:
                # only text the instrumentation inserted may differ
                assert char in " {}null;", (number, column, char)
    assert "for (;;) {}" in result.source and "// while (b) {}" in result.source
