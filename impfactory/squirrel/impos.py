"""Where the imp's Squirrel differs from Squirrel 3.0.5, made up for at VM start.

**bindenv keeps its object.** In Squirrel 3.0.5 ``f.bindenv(obj)`` refers to
``obj`` only weakly: once nothing else holds ``obj``, the bound function runs
with ``this`` gone (``the index '_read' does not exist``). Firmware for the imp
relies on the opposite. Electric Imp's own factory example starts its fixture
with a bare ``BootFactoryFixture();`` and lives on through the callbacks the
constructor bound with ``.bindenv(this)``. The imp API reference describes
``bindenv()`` as packaging a function with its object for callbacks. So the
closures' default ``bindenv`` is replaced, in each VM, by one whose result
holds the object as a free variable::

    f.bindenv(obj)  ->  function(...) { return bound.acall([obj].extend(vargv)); }
                        (bound = 3.0.5's own f.bindenv(obj); obj held strongly)

**Arrays have a size limit.** ``array(n)``, ``a.resize(n)`` and ``a.extend(b)``
allocate up to ``n`` (or ``b.len()``) slots in one C call, which no watchdog can
interrupt, and Squirrel 3.0.5 does not survive the allocation failing:
``array(1000000000)`` ends the process with a segmentation fault, and so does an
array doubled by ``extend`` in a loop. An imp has a few hundred kilobytes; here
the three are wrapped so that an array of more than ``MAX_ARRAY`` slots is a
Squirrel error (``try`` can catch it) and the allocation never happens. Arrays
grown one slot at a time (``push``, ``insert``) are bounded by the watchdog's time
(and memory) limits instead.
Blobs need nothing: ``blob(n)`` reports a failed allocation as an error.

The wrappers are compiled under the entry's source name, so they never show in a
stack, and without debug info, so they cost no line events.
"""

from __future__ import annotations

from impfactory.squirrel import capi
from impfactory.squirrel.binding import ENTRY_SOURCE_NAME

MAX_ARRAY = 1 << 20
"""Slots ``array(n)`` and ``resize(n)`` may make at once (16 MiB of slots)."""

_BOUNDED_ARRAYS = b"""
return function(array, resize, extend, most) {
    local check = function(size) {
        if (typeof size == "integer" && size > most)
            throw "array size " + size + " is over the limit of " + most + " (impfactory)";
    }
    return [
        function(size, ...) {
            check(size);
            local args = [this, size];
            args.extend(vargv);
            return array.acall(args);
        },
        function(size, ...) {
            check(size);
            local args = [this, size];
            args.extend(vargv);
            return resize.acall(args);
        },
        function(other) {
            if (typeof other == "array") check(this.len() + other.len());
            return extend.call(this, other);
        }
    ];
}
"""

_STRONG_BINDENV = b"""
return function(bindenv) {
    return function(env) {
        local bound = bindenv.call(this, env);
        return function(...) {
            local args = [env];
            args.extend(vargv);
            return bound.acall(args);
        }
    }
}
"""


def install(v: int) -> None:
    """Apply the differences to ``v`` (before any user code runs)."""
    top = capi.sq_gettop(v)
    try:
        capi.sq_getdefaultdelegate(v, capi.OT_CLOSURE)
        delegate = capi.sq_gettop(v)
        if capi.sq_compilebuffer(v, _STRONG_BINDENV, len(_STRONG_BINDENV),
                                 ENTRY_SOURCE_NAME.encode(), 0) < 0:
            raise RuntimeError("the bindenv wrapper does not compile")  # pragma: no cover
        capi.sq_pushroottable(v)
        capi.sq_call(v, 1, 1, 0)  # -> the factory
        capi.sq_pushroottable(v)
        capi.sq_pushstring(v, b"bindenv", -1)
        capi.sq_rawget(v, delegate)  # 3.0.5's own bindenv
        if capi.sq_call(v, 2, 1, 0) < 0:  # -> the replacement
            raise RuntimeError("the bindenv wrapper cannot be made")  # pragma: no cover
        capi.sq_pushstring(v, b"bindenv", -1)
        capi.sq_push(v, -2)
        capi.sq_rawset(v, delegate)
    finally:
        capi.sq_settop(v, top)
    _bound_arrays(v)


def _bound_arrays(v: int) -> None:
    """Replace the root's ``array`` and arrays' ``resize`` and ``extend`` by the
    size-checking ones."""
    top = capi.sq_gettop(v)
    try:
        capi.sq_pushroottable(v)
        root = capi.sq_gettop(v)
        capi.sq_getdefaultdelegate(v, capi.OT_ARRAY)
        delegate = capi.sq_gettop(v)
        if capi.sq_compilebuffer(v, _BOUNDED_ARRAYS, len(_BOUNDED_ARRAYS),
                                 ENTRY_SOURCE_NAME.encode(), 0) < 0:
            raise RuntimeError("the array wrappers do not compile")  # pragma: no cover
        capi.sq_pushroottable(v)
        capi.sq_call(v, 1, 1, 0)  # -> the factory
        capi.sq_pushroottable(v)
        capi.sq_pushstring(v, b"array", -1)
        capi.sq_rawget(v, root)
        for name in (b"resize", b"extend"):
            capi.sq_pushstring(v, name, -1)
            capi.sq_rawget(v, delegate)
        capi.sq_pushinteger(v, MAX_ARRAY)
        if capi.sq_call(v, 5, 1, 0) < 0:  # -> [array, resize, extend]
            raise RuntimeError("the array wrappers cannot be made")  # pragma: no cover
        wrappers = capi.sq_gettop(v)
        slots = ((root, b"array"), (delegate, b"resize"), (delegate, b"extend"))
        for index, (table, name) in enumerate(slots):
            capi.sq_pushstring(v, name, -1)
            capi.sq_pushinteger(v, index)
            capi.sq_rawget(v, wrappers)
            capi.sq_rawset(v, table)
    finally:
        capi.sq_settop(v, top)
