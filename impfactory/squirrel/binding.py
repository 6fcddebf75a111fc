"""The two things only the pybind11 side of the binding can do, and its one nuisance.

1. **A C++ ``try`` around the VM.** Squirrel is entered only by calling a
   pybind ``SQClosure`` (``Entry``): pybind wraps the call in a C++ ``try``, so a
   C++ exception thrown anywhere inside the VM unwinds the VM's frames and comes
   back here as a Python exception, and the VM it leaves behind can still be
   closed.
2. **A native that throws a C++ exception.** A Python function handed to pybind
   becomes a userdata whose ``_call`` delegate is a native closure; when the
   function raises, pybind throws a C++ exception from inside the VM. Installed
   as the VM's *closure* debug hook (``sq_setdebughook``) it stops any Squirrel
   code at its next line or call, through any ``try``/``catch``: that is how the
   watchdog stops a runaway VM (a native debug hook cannot: the VM ignores what
   it returns). It is never reachable from Squirrel: it lives only in the
   registry of references and in the hook slot.

**Closing.** The binding closes a VM when the last pybind object holding it dies
(a shared ``Holder``), writing ``Time difference = 0[ms]`` to C++'s ``std::cout``
(the process's standard output) as it does. Worse, every userdata the binding
puts in the VM holds the ``Holder`` too; after the watchdog has unwound a VM with
a C++ exception, stale frames still reference the raising hook's userdata, so
the VM would keep itself alive forever. ``PybindVm`` therefore takes closing
over: it clears the ``Holder``'s ``should_close`` flag (found through the pybind
instance and checked against ``vm_addr()`` before anything is written: the
binding is pinned to one version) and calls ``sq_close`` itself once its pybind
objects are gone, so nothing is printed and a stopped VM is freed like any other.
Should the check ever fail, it falls back to the binding's own closing with
``std::cout`` silenced (``silence_cout``: its badbit set once, so writes to it are
dropped; impfactory writes nothing there itself), and a stopped VM is leaked.

The pybind VM starts with Squirrel's whole standard library in its root table;
``vm.Vm`` replaces that table with an allow-listed one (``sandbox``) before any
user code runs.
"""

from __future__ import annotations

import ctypes
from typing import Any

import squirrel as _pybind

from impfactory.squirrel import capi

_ENTRY_SOURCE = b"""
local job = [null, null, null];
return [job, function() {
    local f = job[0], a = job[1];
    job[0] = null; job[1] = null;
    job[2] = a == null ? f.call(this) : f.acall(a);
}];
"""
ENTRY_SOURCE_NAME = "<impfactory>"

_cout_silenced = False


class AbortVm(BaseException):
    """Thrown through the VM by the raising hook; caught at the ``Entry``."""


def _raise_abort(*_args: Any) -> None:
    raise AbortVm()


def silence_cout() -> None:
    """Set ``std::cout``'s badbit (once per process): see the module doc."""
    global _cout_silenced
    if _cout_silenced:
        return
    lib = ctypes.CDLL(capi.LIBRARY_PATH)  # dlsym also searches its libstdc++
    cout = ctypes.addressof(ctypes.c_char.in_dll(lib, "_ZSt4cout"))
    vtable = ctypes.c_void_p.from_address(cout).value or 0
    ios = cout + ctypes.c_ssize_t.from_address(vtable - 3 * ctypes.sizeof(ctypes.c_void_p)).value
    setstate = lib._ZNSt9basic_iosIcSt11char_traitsIcEE8setstateESt12_Ios_Iostate
    setstate.restype = None
    setstate.argtypes = [ctypes.c_void_p, ctypes.c_int]
    setstate(ios, 1)  # std::ios_base::badbit
    _cout_silenced = True


class PybindVm:
    """One VM made by the binding, with its entry closure and its raising hook.

    ``v`` is the ``HSQUIRRELVM``. ``job`` is the entry's private array
    ``[function, [this, args...] or null, result]``: ``enter()`` takes the function
    and arguments out of it, calls the function (with the root table as ``this``
    when there are no arguments) and leaves the result in ``job[2]``. It raises
    ``AbortVm`` if the raising hook stopped it, ``RuntimeError`` (pybind's rendering
    of the uncaught Squirrel error) if Squirrel threw. The entry is compiled
    without debug info, so it costs no line events.
    """

    def __init__(self, stack_size: int) -> None:
        self._vm: Any = _pybind.SQVM(stack_size)
        self.v: int = int(self._vm.vm_addr())
        v = self.v
        self._close_flag = _holder_close_flag(self._vm, v)
        if self._close_flag is None:
            silence_cout()  # pragma: no cover - only with another build of the binding
        capi.sq_setprintfunc(v, None, None)
        # The raising hook: a pybind-made userdata whose delegate's _call raises.
        setter = self._vm.execute("return function(f) { ::__impfactory_raiser <- f; }")
        setter(_raise_abort)
        del setter
        capi.sq_pushroottable(v)
        capi.sq_pushstring(v, b"__impfactory_raiser", -1)
        capi.sq_rawdeleteslot(v, -2, 1)
        self.raiser_data = capi.stack_object(v, -1)
        capi.sq_getdelegate(v, -1)
        capi.sq_pushstring(v, b"_call", -1)
        capi.sq_rawget(v, -2)
        self.raiser = capi.stack_object(v, -1)
        capi.sq_settop(v, 0)
        # The entry: compiled here, fetched back as a pybind SQClosure.
        if capi.sq_compilebuffer(v, _ENTRY_SOURCE, len(_ENTRY_SOURCE),
                                 ENTRY_SOURCE_NAME.encode(), 0) < 0:
            raise RuntimeError("the entry closure does not compile")  # pragma: no cover
        capi.sq_pushroottable(v)
        capi.sq_call(v, 1, 1, 0)
        pair = capi.absolute(v, -1)
        capi.sq_pushinteger(v, 0)
        capi.sq_rawget(v, pair)
        self.job = capi.stack_object(v, -1)
        capi.sq_pop(v, 1)
        capi.sq_pushroottable(v)
        capi.sq_pushstring(v, b"__impfactory_entry", -1)
        capi.sq_pushinteger(v, 1)
        capi.sq_rawget(v, pair)
        capi.sq_rawset(v, -3)
        capi.sq_settop(v, 0)
        self._entry: Any = self._vm.execute("return ::__impfactory_entry")
        capi.sq_pushroottable(v)
        capi.sq_pushstring(v, b"__impfactory_entry", -1)
        capi.sq_rawdeleteslot(v, -2, 0)
        capi.sq_settop(v, 0)

    def enter(self) -> None:
        self._entry()

    def arm_raiser(self) -> None:
        """Make the raising hook the VM's debug hook: the next line or call stops it."""
        capi.sq_pushobject(self.v, self.raiser)
        capi.sq_setdebughook(self.v)

    def close(self) -> None:
        """Free the VM (see the module doc); nothing may use ``v`` afterwards."""
        v = self.v
        capi.sq_setnativedebughook(v, None)
        for obj in (self.job, self.raiser, self.raiser_data):
            capi.sq_release(v, ctypes.byref(obj))
        self._entry = None  # releases the entry closure while the VM is open
        if self._close_flag is not None:
            ctypes.c_uint8.from_address(self._close_flag).value = 0
        self._vm = None
        if self._close_flag is not None:
            capi.sq_close(v)


def _holder_close_flag(pybind_vm: Any, v: int) -> int | None:
    """Address of the ``should_close`` flag of the binding's ``Holder`` for ``v``.

    pybind11 keeps a bound object's pointer right after the ``PyObject`` header;
    the ``GenericVM`` it points to starts with ``detail::VM``, a
    ``shared_ptr<Holder>``; ``Holder`` is ``{HSQUIRRELVM vm; bool should_close;}``.
    Every step is checked (the ``vm`` read back must be ``v`` and the flag set);
    ``None`` if anything does not match.
    """
    pointer = ctypes.sizeof(ctypes.c_void_p)
    try:
        obj = ctypes.c_void_p.from_address(id(pybind_vm) + 2 * pointer).value
        holder = ctypes.c_void_p.from_address(obj).value if obj else None
        if not holder or ctypes.c_void_p.from_address(holder).value != v:
            return None
        flag = holder + pointer
        return flag if ctypes.c_uint8.from_address(flag).value == 1 else None
    except (ValueError, OSError):  # pragma: no cover
        return None
