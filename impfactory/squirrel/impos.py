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

The wrapper is compiled under the entry's source name, so it never shows in a
stack, and without debug info, so it costs no line events.
"""

from __future__ import annotations

from impfactory.squirrel import capi
from impfactory.squirrel.binding import ENTRY_SOURCE_NAME

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
