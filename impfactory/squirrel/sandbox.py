"""What the root table of a device's (or agent's) VM holds: impOS's standard library
and nothing that reaches the machine.

The binding's VM starts with the whole Squirrel standard library, I/O and system
calls included. ``build_root`` builds a *new* root table from an allow-list,
copying only these entries from the old one, and makes it the VM's root; the old
table (with ``system``, ``file``, ``dofile`` …) is then unreachable and freed::

    base      array assert callee getroottable type
              _version_ _versionnumber_ _charsize_ _intsize_ _floatsize_
    string    format split strip lstrip rstrip regexp
    blob      blob
    system    time date clock      (the caller may replace them: injected clock)
    math      math = { abs acos asin atan atan2 ceil cos exp fabs floor log log10
                       pow rand sin sqrt srand tan PI RAND_MAX }
              RAND_MAX                 (also a global: Electric Imp's own tests,
                                        run on real imps, use it bare)

plus ``print`` and ``error``, which the VM routes to its output callback. As on
the imp, ``math`` is a table (there is no global ``sqrt``), and there is no
``compilestring``, ``newthread``/``suspend`` (threads), ``collectgarbage``,
``getstackinfos`` (whose frame tables would reach the host's entry frame), nor any
way to change the root, the const table, the debug hook or the error handler.
Squirrel 3.0.5's string library has no ``escape``, ``startswith`` or
``endswith``; ``FORBIDDEN`` lists what a test checks is gone.
"""

from __future__ import annotations

from collections.abc import Mapping

from impfactory.squirrel import capi
from impfactory.squirrel.capi import SQObj

BASE = ("array", "assert", "callee", "getroottable", "type", "_version_", "_versionnumber_",
        "_charsize_", "_intsize_", "_floatsize_")
STRING = ("format", "split", "strip", "lstrip", "rstrip", "regexp")
BLOB = ("blob",)
SYSTEM = ("time", "date", "clock")
MATH = ("abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "exp", "fabs", "floor", "log",
        "log10", "pow", "rand", "sin", "sqrt", "srand", "tan", "PI", "RAND_MAX")
HOST = ("print", "error")
#: Constants of the math library that impOS also has as globals.
ROOT_CONSTANTS = ("RAND_MAX",)

#: Globals of standard Squirrel that a device or agent must not have.
FORBIDDEN = ("system", "file", "dofile", "loadfile", "remove", "rename", "getenv",
             "writeclosuretofile", "stdin", "stdout", "stderr", "stream", "setroottable",
             "getconsttable", "setconsttable", "setdebughook", "seterrorhandler",
             "enabledebuginfo", "compilestring", "newthread", "suspend",
             "resurrectunreachable", "collectgarbage", "getstackinfos", "dummy", "casti2f",
             "castf2i", "swap2", "swap4", "swapfloat", *(m for m in MATH if m.islower()))

ENVIRONMENTS = ("device", "agent")


def allowed_globals(environment: str) -> tuple[str, ...]:
    """The names ``build_root`` puts in the root table for ``environment``."""
    if environment not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {environment!r}; choose from {ENVIRONMENTS}")
    return (*BASE, *STRING, *BLOB, *SYSTEM, *ROOT_CONSTANTS, "math", *HOST)


def build_root(v: int, environment: str, host: Mapping[str, SQObj]) -> None:
    """Replace ``v``'s root table with the allow-listed one; ``host`` supplies the
    entries the VM makes itself (``print``, ``error``)."""
    top = capi.sq_gettop(v)
    _push_allowed(v, environment)
    _install_root(v, host, top)


def template(v: int, environment: str) -> SQObj:
    """The allow-listed root of ``v`` as a new table held for the caller (without the
    host entries), for ``copy_root``: what a shared state gives each of its VMs."""
    _push_allowed(v, environment)
    table = capi.stack_object(v, -1)
    capi.sq_pop(v, 1)
    return table


def copy_root(v: int, template_table: SQObj, host: Mapping[str, SQObj]) -> None:
    """Make ``v``'s root a copy of ``template_table`` (from ``template``) with the
    ``host`` entries added. The copy is the VM's own, and so is its ``math`` table:
    code that replaces a global or ``math.sqrt`` changes nothing any other VM sees
    (the values, functions of the standard library, are shared: none has a slot
    Squirrel code can set)."""
    top = capi.sq_gettop(v)
    capi.sq_pushobject(v, template_table)
    _push_copy(v, top + 1)
    new = capi.sq_gettop(v)
    capi.sq_pushstring(v, b"math", -1)
    capi.sq_pushstring(v, b"math", -1)
    capi.sq_rawget(v, top + 1)
    _push_copy(v, capi.sq_gettop(v))
    capi.sq_remove(v, -2)
    capi.sq_rawset(v, new)
    _install_root(v, host, top)


def _install_root(v: int, host: Mapping[str, SQObj], top: int) -> None:
    """Add the ``host`` entries to the table on top of ``v``'s stack, make it the root
    table and restore the stack to ``top``."""
    new = capi.sq_gettop(v)
    for name, obj in host.items():
        capi.sq_pushstring(v, name.encode(), -1)
        capi.sq_pushobject(v, obj)
        capi.sq_rawset(v, new)
    capi.sq_setroottable(v)
    capi.sq_settop(v, top)


def own_classes(v: int) -> None:
    """Give ``v``'s root classes of its own for ``blob`` (with its base, the stream
    class) and ``regexp``, and leave the blob class in the registry as
    ``std_blob`` (where the standard library's natives find it).

    The standard library's classes are values Squirrel code can change
    (``blob.len <- function() {...}``, ``blob.setattributes``): shared by the VMs
    of one state, one VM's change would be every VM's. What the registration also
    puts in the root (``stream``, ``casti2f`` …) is taken out again."""
    top = capi.sq_gettop(v)
    try:
        capi.sq_pushregistrytable(v)
        registry = capi.sq_gettop(v)
        for key in (b"std_stream", b"std_blob"):  # made again, not found
            capi.sq_pushstring(v, key, -1)
            capi.sq_rawdeleteslot(v, registry, 0)
        capi.sq_newtable(v)
        scratch = capi.sq_gettop(v)
        if capi.sqstd_register_bloblib(v) < 0 or capi.sqstd_register_stringlib(v) < 0:
            raise RuntimeError("the standard classes cannot be made")  # pragma: no cover
        capi.sq_settop(v, scratch)
        capi.sq_pushroottable(v)
        root = capi.sq_gettop(v)
        for cls in (b"blob", b"regexp"):
            capi.sq_pushstring(v, cls, -1)
            capi.sq_pushstring(v, cls, -1)
            capi.sq_rawget(v, scratch)
            capi.sq_rawset(v, root)
        for name in FORBIDDEN:
            capi.sq_pushstring(v, name.encode(), -1)
            capi.sq_rawdeleteslot(v, root, 0)
    finally:
        capi.sq_settop(v, top)


def _push_copy(v: int, src: int) -> None:
    """Push a new table with the slots of the table at ``src`` (a shallow copy)."""
    capi.sq_newtable(v)
    dst = capi.sq_gettop(v)
    capi.sq_pushnull(v)  # the iterator
    while capi.sq_next(v, src) >= 0:
        capi.sq_push(v, -2)
        capi.sq_push(v, -2)
        capi.sq_rawset(v, dst)
        capi.sq_pop(v, 2)
    capi.sq_pop(v, 1)


def _push_allowed(v: int, environment: str) -> None:
    """Push a new table holding the allow-listed entries of ``v``'s root table."""
    allowed_globals(environment)
    old = capi.sq_gettop(v) + 1
    capi.sq_pushroottable(v)
    capi.sq_newtable(v)
    new = capi.absolute(v, -1)
    for name in (*BASE, *STRING, *BLOB, *SYSTEM, *ROOT_CONSTANTS):
        _copy(v, old, new, name, name)
    capi.sq_pushstring(v, b"math", -1)
    capi.sq_newtable(v)
    math = capi.absolute(v, -1)
    for name in MATH:
        _copy(v, old, math, name, name)
    capi.sq_rawset(v, new)
    capi.sq_remove(v, old)


def _copy(v: int, src: int, dst: int, name: str, as_name: str) -> None:
    capi.sq_pushstring(v, as_name.encode(), -1)
    capi.sq_pushstring(v, name.encode(), -1)
    if capi.sq_rawget(v, src) < 0:
        raise RuntimeError(f"the binding's root table has no {name!r}")  # pragma: no cover
    capi.sq_rawset(v, dst)
