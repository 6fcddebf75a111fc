"""The Squirrel VM glue: values both ways, natives, host classes, errors with lines.

Everything here runs real Squirrel 3.0.5 (the squirrel-lang-sq305 binding); the
expected values come from the Squirrel language, not from the code under test.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impfactory.errors import ImpFactoryError
from impfactory.squirrel import (
    ConversionError,
    Frame,
    SqFunction,
    SqObject,
    SquirrelCompileError,
    SquirrelError,
    SquirrelReentryError,
    SquirrelRuntimeError,
    SquirrelThrow,
    SquirrelVmStopped,
    Vm,
    format_error,
    to_plain,
)


@pytest.fixture()
def vm() -> Any:
    machine = Vm(time_limit_s=5)
    yield machine
    machine.close()


# --- values -------------------------------------------------------------------------

def _f32(x: float) -> bytes:
    return struct.pack("<f", x)


def same(a: Any, b: Any) -> bool:
    """Equal, floats compared as the float32 Squirrel holds."""
    if isinstance(a, float) and isinstance(b, float):
        return _f32(a) == _f32(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
_scalars = (st.none() | st.booleans() | st.integers(-(2**31), 2**31 - 1)
            | st.floats(width=32, allow_nan=False) | _text | st.binary(max_size=16))
_plain = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(_text | st.integers(-1000, 1000), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(value=_plain)
def test_plain_data_round_trips_through_squirrel(value: Any) -> None:
    with Vm() as machine:
        identity = machine.run("return function(x) { return x; }")
        assert same(identity(value), value)
        machine.set_global("x", value)
        assert same(machine.get_global("x"), value)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=40))
def test_any_byte_string_round_trips_as_a_squirrel_string(data: bytes) -> None:
    with Vm() as machine:
        text = data.decode("utf-8", "surrogateescape")
        length = machine.run("return function(s) { return [s, s.len()]; }")(text)
        assert length == [text, len(data)]


def test_squirrel_values_arrive_as_python_values(vm: Vm) -> None:
    value = vm.run('return [null, true, false, 7, -2147483648, 1.5, "é", {a = 1, [2] = "two"}]')
    assert value == [None, True, False, 7, -(2**31), 1.5, "é", {"a": 1, 2: "two"}]


def test_floats_are_float32_and_read_back_short(vm: Vm) -> None:
    assert vm.run("return 23.7") == 23.7
    assert vm.run("return 0.1 + 0.2") == pytest.approx(0.3, rel=1e-6)
    assert vm.run("return function(x) { return x; }")(1e-45) == pytest.approx(1.4e-45)


def test_blobs_cross_as_bytes(vm: Vm) -> None:
    assert vm.run('local b = blob(3); b.writen(0x41, \'b\'); b.writen(0, \'b\'); '
                  "b.writen(0xFF, 'b'); return b") == b"A\x00\xff"
    check = vm.run("return function(b) { return [typeof b, b.len(), b[2]]; }")
    assert check(b"\x00\x01\x7f") == ["blob", 3, 0x7F]
    assert check(bytearray(b"xyz"))[1:] == [3, ord("z")]


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 10**20])
def test_integers_beyond_32_bits_are_refused(vm: Vm, value: int) -> None:
    with pytest.raises(ConversionError, match="32 bits"):
        vm.set_global("x", value)


def test_unsupported_python_values_are_refused(vm: Vm) -> None:
    with pytest.raises(ConversionError, match="object"):
        vm.set_global("x", object())
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ConversionError, match="contains itself"):
        vm.set_global("x", cyclic)
    with pytest.raises(ConversionError, match="null"):
        vm.set_global("x", {None: 1})


def test_a_table_that_contains_itself_is_a_conversion_error(vm: Vm) -> None:
    with pytest.raises(ConversionError, match="contains itself"):
        vm.run("local t = {}; t.me <- t; return t")
    assert vm.run("return 1 + 1") == 2  # the VM is fine


def test_instances_classes_and_generators_are_handles_that_come_back_the_same(vm: Vm) -> None:
    value = vm.run("class A { x = 5 }; function g() { yield 1; } return {a = A(), c = A, g = g()}")
    assert {v.type_name for v in value.values()} == {"instance", "class", "generator"}
    is_same = vm.run("return function(x, y) { return x == y; }")
    assert is_same(value["a"], value["a"]) is True
    assert is_same(value["a"], value["c"]) is False
    assert vm.run("return function(a) { return a.x; }")(value["a"]) == 5
    assert value["a"] == value["a"] and hash(value["a"]) == hash(value["a"])


def test_to_plain_refuses_what_is_not_data_and_says_where(vm: Vm) -> None:
    value = vm.run("class A {}; return {ok = [1, 2.5, \"s\"], bad = [1, {deep = A()}]}")
    assert to_plain(value["ok"]) == [1, 2.5, "s"]
    with pytest.raises(ConversionError, match=r"value\[1\]\['deep'\] is a instance"):
        to_plain(value["bad"])
    with pytest.raises(ConversionError, match="function"):
        to_plain(vm.run("return function() {}"))


def test_functions_are_callable_from_python(vm: Vm) -> None:
    mul = vm.run("return function(a, b = 3) { return a * b; }")
    assert isinstance(mul, SqFunction)
    assert mul(6, 7) == 42
    assert mul(5) == 15
    assert vm.run("return math.sqrt")(16.0) == 4.0
    with pytest.raises(SquirrelRuntimeError, match="wrong number of parameters"):
        mul()


# --- natives ------------------------------------------------------------------------

def test_natives_get_converted_arguments_and_return_values(vm: Vm) -> None:
    seen: list[Any] = []

    def note(*args: Any) -> dict[str, Any]:
        seen.append(args)
        return {"n": len(args), "first": args[0] if args else None}

    vm.set_global("note", vm.native(note, "note"))
    assert vm.run('return note(1, "a", [true], {k = null})') == {"n": 4, "first": 1}
    assert seen == [(1, "a", [True], {"k": None})]


def test_native_errors_are_catchable_squirrel_errors(vm: Vm) -> None:
    class PinError(ImpFactoryError):
        pass

    def configure(kind: int) -> None:
        if kind == 0:
            raise PinError("pin already configured")
        if kind == 1:
            raise ValueError("bad mode 1")
        raise SquirrelThrow({"code": kind})

    vm.set_global("configure", vm.native(configure, "configure"))
    script = "return function(k) { try { configure(k); } catch (e) { return e; } }"
    catch = vm.run(script)
    assert catch(0) == "pin already configured"
    assert catch(1) == "bad mode 1"
    assert catch(7) == {"code": 7}


def test_native_arity_is_checked_by_the_signature(vm: Vm) -> None:
    vm.set_global("two", vm.native(lambda a, b=2: a + b, "two"))
    assert vm.run("return two(1)") == 3
    assert vm.run("return two(1, 5)") == 6
    for call in ("two()", "two(1, 2, 3)"):
        with pytest.raises(SquirrelRuntimeError, match="wrong number of parameters"):
            vm.run(f"return {call}")


def test_an_uncaught_native_error_reports_the_squirrel_stack(vm: Vm) -> None:
    def boom() -> None:
        raise ValueError("sensor missing")

    vm.set_global("boom", vm.native(boom, "boom"))
    source = "function read() {\n  return boom();\n}\n\nread();\n"
    with pytest.raises(SquirrelRuntimeError) as info:
        vm.run(source, "device.nut")
    assert info.value.stack == [Frame("read", "device.nut", 2), Frame("main", "device.nut", 5)]
    assert format_error(info.value) == ["sensor missing", "  in read device.nut:2",
                                        "  from main device.nut:5"]


def test_a_python_bug_in_a_native_is_raised_and_the_vm_goes_on(vm: Vm) -> None:
    def buggy() -> int:
        return {}["missing"]  # type: ignore[no-any-return]

    vm.set_global("buggy", vm.native(buggy, "buggy"))
    with pytest.raises(KeyError, match="missing"):
        vm.run("buggy()")
    # Squirrel saw an error it could catch; the bug still surfaces in Python.
    with pytest.raises(KeyError):
        vm.run('local r = "?"; try { buggy(); } catch (e) { r = e; } return r')
    for _ in range(3):
        assert vm.run("local t = {a = [1, 2]}; return t.a[1] * 21") == 42


def test_natives_may_not_reenter_squirrel(vm: Vm) -> None:
    callback = vm.run("return function() { return 1; }")

    def reenter() -> Any:
        return vm.call(callback)

    vm.set_global("reenter", vm.native(reenter, "reenter"))
    error = vm.run('try { reenter(); } catch (e) { return e; }')
    assert "schedule the callback" in error
    assert vm.call(callback) == 1
    with pytest.raises(SquirrelReentryError):
        raise SquirrelReentryError("x")


def test_print_and_error_go_to_the_output_callback() -> None:
    out: list[tuple[str, str]] = []
    with Vm(output=lambda kind, text: out.append((kind, text))) as machine:
        machine.run('print("hello"); error(42); print({}); print(null)')
    assert out[:2] == [("print", "hello"), ("error", "42")]
    assert out[2][1].startswith("(table : 0x")
    assert out[3][1].startswith("(null : 0x")  # Squirrel 3.0.5's own rendering of null


# --- host classes -------------------------------------------------------------------

class Pin:
    def __init__(self, name: str) -> None:
        self.name = name
        self.level = 0

    def write(self, level: int) -> None:
        self.level = level

    def read(self) -> int:
        return self.level


def test_host_class_methods_reach_the_python_object(vm: Vm) -> None:
    pin_class = vm.host_class("Pin", {"write": Pin.write, "read": Pin.read})
    pin = Pin("pinM")
    vm.set_global("pinM", vm.wrap(pin, pin_class))
    assert vm.run("pinM.write(1); return pinM.read()") == 1
    assert pin.level == 1
    echo = vm.native(lambda x: x is pin, "isPin")
    vm.set_global("isPin", echo)
    assert vm.run("return isPin(pinM)") is True
    assert vm.get_global("pinM") is pin


def test_host_getter_answers_missing_members(vm: Vm) -> None:
    def member(obj: Any, key: str) -> Any:
        if key == "configparams":
            return {"factory_imp": "0c2a69000001"}
        if key == "net":
            raise ImpFactoryError("imp.net is not modelled here")
        raise KeyError(key)

    imp_class = vm.host_class("imp", {}, getter=member)
    vm.set_global("imp", vm.wrap(object(), imp_class))
    assert vm.run("return imp.configparams.factory_imp") == "0c2a69000001"
    assert vm.run("try { imp.pinX } catch (e) { return e }") == "the index 'pinX' does not exist"
    assert vm.run("try { imp.net } catch (e) { return e }") == "imp.net is not modelled here"


def test_host_methods_refuse_another_this(vm: Vm) -> None:
    pin_class = vm.host_class("Pin", {"read": Pin.read})
    vm.set_global("pinM", vm.wrap(Pin("pinM"), pin_class))
    for call in ("pinM.read.call({})", "pinM.getclass()().read()"):
        with pytest.raises(SquirrelRuntimeError, match="Pin"):
            vm.run(call)


def test_host_objects_are_dropped_when_squirrel_drops_them(vm: Vm) -> None:
    import weakref

    pin_class = vm.host_class("Pin", {"read": Pin.read})
    pin = Pin("temp")
    ref = weakref.ref(pin)
    vm.set_global("tmp", vm.wrap(pin, pin_class))
    del pin
    assert ref() is not None
    vm.run("delete ::tmp")
    vm.collect()
    assert ref() is None


# --- compile and runtime errors ------------------------------------------------------

@pytest.mark.parametrize("source, line, column", [
    ("local x = ;", 1, 11),
    ("local a = 1;\nlocal b = ;\n", 2, 11),
    ("for (;;) local x = ;", 1, 20),
    ("while (a) {}\nlocal b = ;", 2, 11),
    ("do { } while (x); local y = ;", 1, 29),
])
def test_compile_errors_name_the_users_line_and_column(vm: Vm, source: str, line: int,
                                                       column: int) -> None:
    with pytest.raises(SquirrelCompileError) as info:
        vm.compile(source, "device.nut")
    assert (info.value.file, info.value.line, info.value.column) == ("device.nut", line, column)
    assert str(info.value) == f"device.nut:{line}:{column}: expression expected"


@pytest.mark.parametrize("source, message", [
    ("do { } while (x) local y = 1;", "end of statement expected (; or lf)"),
    ("function f( {", "expected 'IDENTIFIER'"),
    ('local s = "abc', "unfinished string"),
    ("break;", "'break' has to be in a loop block"),
    ("local i = 0; do i += 3; while (i < 10)", "expected 'while'"),
])
def test_compile_errors_are_squirrels_own(vm: Vm, source: str, message: str) -> None:
    with pytest.raises(SquirrelCompileError) as info:
        vm.compile(source)
    assert info.value.message == message


def test_runtime_errors_carry_the_stack_innermost_first(vm: Vm) -> None:
    source = textwrap.dedent("""\
        class Sensor {
            function read() {
                return foo;
            }
        }
        local s = Sensor();
        local cb = function() {
            local v = s.read();  // not a tail call: the frame stays
            return v;
        }
        cb();
    """)
    with pytest.raises(SquirrelRuntimeError) as info:
        vm.run(source, "app.nut")
    assert format_error(info.value) == [
        "the index 'foo' does not exist",
        "  in read app.nut:3",
        "  from unknown app.nut:8",
        "  from main app.nut:11",
    ]


def test_an_error_caught_deeper_does_not_stand_for_a_later_one(vm: Vm) -> None:
    source = ('local a = [3, 1, 2];\n'
              'try { a.sort(function(x, y) { throw "inner"; }); } catch (e) {}\n'
              'throw "outer";\n')
    with pytest.raises(SquirrelRuntimeError) as info:
        vm.run(source)
    assert info.value.message == "outer"
    assert info.value.stack == [Frame("main", "device.nut", 3)]


def test_thrown_values_are_rendered_as_squirrel_does(vm: Vm) -> None:
    with pytest.raises(SquirrelRuntimeError, match=r"^42$"):
        vm.run("throw 42")
    with pytest.raises(SquirrelRuntimeError, match=r"^custom$"):
        vm.run('class E { function _tostring() { return "custom"; } }\nthrow E();')


# --- globals and lifecycle ----------------------------------------------------------

def test_globals_set_and_get(vm: Vm) -> None:
    vm.set_global("answer", 42)
    assert vm.run("return answer") == 42
    vm.run("counter <- {n = 1}")
    assert vm.get_global("counter") == {"n": 1}
    assert vm.get_global("absent", None) is None
    with pytest.raises(KeyError):
        vm.get_global("absent")


def test_a_closed_vm_refuses_calls() -> None:
    machine = Vm()
    fn = machine.run("return function() { return 1; }")
    machine.close()
    machine.close()
    assert machine.closed
    with pytest.raises(SquirrelVmStopped):
        fn()
    with pytest.raises(SquirrelVmStopped):
        machine.run("return 1")
    del fn  # dropping a handle of a closed VM is harmless


def test_handles_keep_objects_alive_until_dropped(vm: Vm) -> None:
    fn = vm.run("return function() { return \"alive\"; }")
    vm.collect()
    assert fn() == "alive"
    handles = [vm.run("return {}") for _ in range(10)]
    assert all(isinstance(h, dict) for h in handles)
    obj = vm.run("class A {}; return A()")
    assert isinstance(obj, SqObject) and not isinstance(obj, SqFunction)
    del obj
    vm.collect()


def test_counters(vm: Vm) -> None:
    vm.set_global("f", vm.native(lambda: 1, "f"))
    vm.run("f(); f();")
    assert vm.stats.entries == 1
    assert vm.stats.native_calls == 2
    assert vm.stats.compiled == 1


def test_errors_are_impfactory_errors() -> None:
    assert issubclass(SquirrelError, ImpFactoryError)
    assert issubclass(SquirrelRuntimeError, RuntimeError)
    assert issubclass(ConversionError, ValueError)


# --- standard output ------------------------------------------------------------------

_CHILD = """
import json
from impfactory.squirrel import SquirrelTimeout, Vm
kept = []
for i in range(20):
    vm = Vm(time_limit_s=0.05)
    vm.run("local t = {a = [1, 2, 3]}; print(t.a.len());")
    if i % 3 == 0:
        try:
            vm.run("while (true) {}")
        except SquirrelTimeout:
            pass
    if i % 2 == 0:
        vm.close()
    else:
        kept.append(vm)  # left for the garbage collector and interpreter exit
import squirrel, gc
gc.collect()
print(json.dumps({"vms": 20, "ok": True}))
"""


def test_nothing_reaches_standard_output_but_what_python_prints() -> None:
    result = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == {"vms": 20, "ok": True}
    assert result.stdout == b'{"vms": 20, "ok": true}\n'
    assert b"Time difference" not in result.stderr


# --- impOS's Squirrel -------------------------------------------------------------------

def test_bindenv_keeps_its_object_as_impos_does(vm: Vm) -> None:
    callbacks: list[SqFunction] = []
    vm.set_global("later", vm.native(callbacks.append, "later"))
    source = textwrap.dedent("""\
        class Fixture {
            _presses = 0;
            constructor() {
                later(function(n = 1) { _presses += n; return _presses; }.bindenv(this));
                later(function() { return missing; }.bindenv(this));
            }
        }
        Fixture();  // kept by nothing but its callbacks, like Electric Imp's example
    """)
    vm.run(source, "fixture.nut")
    vm.collect()
    press, broken = callbacks
    assert press() == 1
    assert press(5) == 6
    with pytest.raises(SquirrelRuntimeError) as info:
        broken()
    assert info.value.stack == [Frame("unknown", "fixture.nut", 5)]


def test_a_native_can_ask_which_lines_called_it(vm: Vm) -> None:
    seen: list[list[Frame]] = []
    vm.set_global("where", vm.native(lambda: seen.append(vm.stack()), "where"))
    vm.run("function inner() {\n  where();\n}\nfunction outer() { inner(); }\nouter();",
           "caller.nut")
    assert seen == [[Frame("inner", "caller.nut", 2), Frame("outer", "caller.nut", 4),
                     Frame("main", "caller.nut", 5)]]
