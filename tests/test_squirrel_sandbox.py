"""Device code has no way to reach the machine: the root table holds impOS's standard
library and nothing else, and what the host gives Squirrel leads nowhere further."""

from __future__ import annotations

from typing import Any

import pytest

from impfactory.squirrel import SquirrelRuntimeError, SquirrelTimeout, Vm
from impfactory.squirrel.sandbox import FORBIDDEN, allowed_globals

#: Standard Squirrel's globals that an imp does not have (the issue's list).
ISSUE_FORBIDDEN = ("system", "file", "dofile", "loadfile", "remove", "rename", "getenv",
                   "writeclosuretofile", "stdin", "stdout", "stderr", "setroottable",
                   "setconsttable", "setdebughook", "seterrorhandler", "enabledebuginfo",
                   "compilestring", "newthread", "resurrectunreachable", "collectgarbage",
                   "suspend", "sqrt", "sin", "rand", "abs")


@pytest.fixture(scope="module")
def vm() -> Any:
    machine = Vm(time_limit_s=2)
    yield machine
    machine.close()


def test_the_module_list_covers_the_issue_list() -> None:
    assert set(ISSUE_FORBIDDEN) <= set(FORBIDDEN)
    assert not set(FORBIDDEN) & set(allowed_globals("device"))


@pytest.mark.parametrize("name", FORBIDDEN)
@pytest.mark.parametrize("environment", ["device", "agent"])
def test_each_forbidden_global_is_refused_from_squirrel(name: str, environment: str) -> None:
    with Vm(environment=environment) as machine:
        with pytest.raises(SquirrelRuntimeError, match=f"the index '{name}' does not exist"):
            machine.run(f"return ::{name};")
        with pytest.raises(SquirrelRuntimeError, match=f"the index '{name}' does not exist"):
            machine.run(f"return {name}();")
        assert machine.run(f'return "{name}" in getroottable();') is False


def test_the_root_table_holds_exactly_the_allow_list(vm: Vm) -> None:
    keys = vm.run("local k = []; foreach (name, _ in getroottable()) k.append(name); return k")
    assert sorted(keys) == sorted(allowed_globals("device"))


def test_math_is_a_table_as_on_the_imp(vm: Vm) -> None:
    assert vm.run("return typeof math") == "table"
    assert vm.run("return [math.abs(-3), math.sqrt(16.0), math.floor(2.7), math.pow(2, 10)]") == [
        3, 4.0, 2.0, 1024.0]
    assert vm.run("return math.PI > 3.14 && math.PI < 3.15 && math.RAND_MAX > 0")
    assert vm.run("return RAND_MAX == math.RAND_MAX")  # a global on the imp too
    assert 0 <= vm.run("return math.rand()") <= vm.run("return math.RAND_MAX")


def test_the_string_blob_and_time_functions_work(vm: Vm) -> None:
    assert vm.run('return format("%d-%s-%.1f", 7, "x", 2.5)') == "7-x-2.5"
    assert vm.run('return split("a,b,,c", ",")') == ["a", "b", "c"]
    assert vm.run('return [strip("  x "), lstrip(" x "), rstrip(" x ")]') == ["x", "x ", " x"]
    assert vm.run('return regexp("^[0-9a-f]+$").match("0c2a69")') is True
    assert vm.run("local b = blob(2); b.writen(0x1234, 'w'); return b") == b"\x34\x12"
    assert vm.run("return typeof time() + typeof clock() + typeof date()") == "integerfloattable"
    assert vm.run("return [typeof array(2), type(1), callee() != null]") == ["array", "integer",
                                                                             True]
    assert vm.run('local ok = true; try { assert(1 == 2); } catch (e) { ok = e; } return ok') \
        == "assertion failed"


def test_natives_and_host_objects_lead_nowhere(vm: Vm) -> None:
    class Secret:
        token = "PYTHON-SIDE"

        def read(self) -> int:
            return 1

    cls = vm.host_class("Pin", {"read": Secret.read}, getter=lambda obj, key: {"name": "pinM"}[key])
    vm.set_global("pin", vm.wrap(Secret(), cls))
    vm.set_global("native", vm.native(lambda: 1, "native"))
    for probe in ("pin.token", "pin.__dict__", "pin.__class__", "pin._val", "pin.__getattribute__",
                  "pin.read.__globals__", "native.__self__", "native._val"):
        with pytest.raises(SquirrelRuntimeError, match="does not exist"):
            vm.run(f"return {probe};")
    infos = vm.run("return [native.getinfos(), pin.read.getinfos()]")
    assert [sorted(i) for i in infos] == [["name", "native", "paramscheck", "typecheck"]] * 2
    members = vm.run("local m = []; foreach (k, v in pin.getclass()) m.append(k); return m")
    assert sorted(members) == ["read"]
    assert vm.run("return pin.getclass().getattributes(null)") is None
    assert vm.run("return [getroottable().getdelegate(), {}.getdelegate()]") == [None, None]
    assert sorted(vm.run("return callee().getinfos()")) == [
        "defparams", "name", "native", "parameters", "src", "varargs"]
    # A host instance made by Squirrel itself stands for nothing.
    with pytest.raises(SquirrelRuntimeError, match="Pin"):
        vm.run("return pin.getclass()().read();")


def test_the_host_never_runs_squirrel_metamethods_on_its_own() -> None:
    with Vm(time_limit_s=0.5) as machine:
        machine.run("getroottable().setdelegate({_get = function(k) { while (true) {} },"
                    " _newslot = function(k, v) { while (true) {} }});")
        machine.set_global("x", {"a": [1, 2]})  # raw: no _newslot
        assert machine.get_global("x") == {"a": [1, 2]}
        assert machine.get_global("missing", "none") == "none"  # raw: no _get
        # A user's blob constructor never runs when the host makes a blob.
        machine.run("blob.constructor <- function(n) { while (true) {} };")
        machine.set_global("b", b"\x01\x02")
        assert machine.get_global("b") == b"\x01\x02"
        with pytest.raises(SquirrelTimeout):
            machine.run("return blob(1);")  # Squirrel's own call runs it, under the watchdog


def test_constants_do_not_leak_between_vms() -> None:
    with Vm() as one, Vm() as two:
        one.run("const LIMIT = 5; enum Colour { RED, GREEN }")
        assert one.run("return LIMIT + Colour.GREEN") == 6
        with pytest.raises(SquirrelRuntimeError, match="LIMIT"):
            two.run("return LIMIT")
        two.run("const LIMIT = 9;")
        assert two.run("return LIMIT") == 9
        assert one.run("return LIMIT") == 5


def test_a_unit_compiled_before_still_declares_its_constants() -> None:
    source = "const A = 40; enum E { X = 2 }"
    with Vm() as first:
        first.run(source)
    with Vm() as second:  # compiled from the cache: the constants come along
        second.run(source)
        assert second.run("return A + E.X") == 42


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(ValueError, match="environment"):
        Vm(environment="desktop")
