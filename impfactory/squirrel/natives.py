"""Python functions callable from Squirrel, and host objects Squirrel can hold.

Every native closure of every VM runs the same C function, ``TRAMPOLINE``; what
distinguishes them is one free variable, an integer index into the VM's list of
``NativeSpec``. So a native costs one closure and one small record, no ctypes
callback of its own. The trampoline converts the arguments (``convert``), calls
the Python function and converts its result back::

    Squirrel  hardware.pinM.write(1)
      -> native closure (free variable: spec 7) -> TRAMPOLINE(v)
      -> spec 7 = method "write" of host class "Pin": this must be a Pin instance
      -> Pin.write(<the Python Pin object>, 1)

What a Python function raises becomes a Squirrel error that ``try``/``catch``
can catch: ``SquirrelThrow(value)`` throws ``value`` itself; any impfactory error
(``ImpFactoryError``: ``ImpApiError``, ``SquirrelError`` …), ``ValueError`` or
``TypeError`` throws its message. Anything else is a bug in the host: Squirrel
gets ``internal error in <name>: …`` and the VM keeps the exception, which the
current ``Vm.run``/``Vm.call`` raises when Squirrel returns.

A host class is a Squirrel class whose methods are such natives receiving the
Python object first, and whose ``_get`` metamethod (when a getter is given)
answers members the class does not have; a getter raising ``KeyError`` or
``AttributeError`` gives Squirrel's own ``the index 'x' does not exist``. An
instance stands for its object through an integer key in its user pointer:
Squirrel can call the class's natives on it and nothing else.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from impfactory.errors import ImpFactoryError
from impfactory.squirrel import capi
from impfactory.squirrel.capi import SQObj

PLAIN, METHOD, GETTER, RENDER = 0, 1, 2, 3  # RENDER: print/error, text to the output

#: Host objects by instance key, across VMs (the release hook has no VM).
HOSTS: dict[int, Any] = {}
_host_keys = itertools.count(1)
#: Class type tags of host classes (above anything the standard library uses).
_tags = itertools.count(0x00010000)


def new_host_key(obj: Any) -> int:
    key = next(_host_keys)
    HOSTS[key] = obj
    return key


def new_tag() -> int:
    return next(_tags)


def _release_host(up: int | None, _size: int) -> int:
    if up is not None:
        HOSTS.pop(up, None)
    return 1


RELEASE_HOST = capi.SQRELEASEHOOK(_release_host)


@dataclass(frozen=True, slots=True)
class HostClass:
    """A Squirrel class made by ``Vm.host_class``; ``Vm.wrap`` makes its instances."""

    name: str
    tag: int
    obj: SQObj


@dataclass(frozen=True, slots=True)
class NativeSpec:
    fn: Callable[..., Any]
    name: str
    kind: int
    tag: int  # the host class's tag for methods and getters
    min_args: int
    max_args: int | None  # None: any number


def arity(fn: Callable[..., Any], skip: int) -> tuple[int, int | None]:
    """How many arguments Squirrel may pass to ``fn`` after the ``skip`` first ones.

    Read once per function (a line of devices binds the same API methods in every
    VM; ``inspect.signature`` was most of a VM's start-up). A bound method is read
    through its function, so the cache never holds the object it is bound to (a
    device's API object would keep a stopped device alive); other callables made
    per VM (closures, partials) are read each time, uncached."""
    if inspect.ismethod(fn):
        return _arity_cached(fn.__func__, skip + 1)
    if inspect.isfunction(fn) and fn.__closure__ is None:
        return _arity_cached(fn, skip)
    return _arity(fn, skip)


@functools.lru_cache(maxsize=4096)
def _arity_cached(fn: Callable[..., Any], skip: int) -> tuple[int, int | None]:
    return _arity(fn, skip)


def _arity(fn: Callable[..., Any], skip: int) -> tuple[int, int | None]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return (0, None)
    low, high = 0, 0
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL,):
            high = -1
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            if high >= 0:
                high += 1
            if p.default is p.empty:
                low += 1
    low = max(0, low - skip)
    return (low, None if high < 0 else max(0, high - skip))


def error_message(exc: BaseException, name: str) -> tuple[str, bool]:
    """The Squirrel error message for what native ``name`` raised, and whether it is
    an expected error (``False``: a host bug the entry re-raises)."""
    if isinstance(exc, (ImpFactoryError, ValueError, TypeError)):
        return (str(exc) or type(exc).__name__, True)
    return (f"internal error in {name}: {type(exc).__name__}: {exc}", False)
