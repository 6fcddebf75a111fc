"""Python handles on Squirrel objects: ``SqObject`` and the callable ``SqFunction``.

A handle holds a strong reference (``sq_addref``) to its object, so the object
lives while Python holds the handle; dropping the handle queues the release,
which the VM performs at its next safe point (the next entry, ``collect`` or
``close``), never from inside the garbage collector. Closing the VM releases
everything; a handle on a closed VM refuses calls. Pushing a handle back into
Squirrel gives the very same object.
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import TYPE_CHECKING, Any

from impfactory.squirrel import capi
from impfactory.squirrel.capi import SQObj
from impfactory.squirrel.convert import _Handle

if TYPE_CHECKING:  # pragma: no cover
    from impfactory.squirrel.vm import Vm


class SqObject(_Handle):
    """An opaque Squirrel value (instance, class, generator, function …)."""

    __slots__ = ("__weakref__", "_obj", "_vm")

    def __init__(self, vm: Vm, obj: SQObj) -> None:
        self._vm = vm
        self._obj = obj

    @property
    def type_name(self) -> str:
        """Squirrel's ``typeof`` for the object (``instance``, ``class``, ``function`` …)."""
        return capi.TYPE_NAMES.get(self._obj.type, "object")

    @property
    def vm(self) -> Vm:
        return self._vm

    def _key(self) -> tuple[int, int, int]:
        raw = self._obj.raw if self._obj.type & 0x08000000 else self._obj.raw & 0xFFFFFFFF
        return (id(self._vm), self._obj.type, raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SqObject) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"<Squirrel {self.type_name} 0x{self._obj.raw:x}>"

    def __del__(self) -> None:
        # At interpreter shutdown the VM may be half gone: it goes with everything else.
        with contextlib.suppress(Exception):
            self._vm._release_later(self._obj)


class SqFunction(SqObject):
    """A Squirrel function; calling it runs it under the VM's watchdog (``Vm.call``)
    with the root table as ``this``."""

    __slots__ = ()

    def __call__(self, *args: Any) -> Any:
        return self._vm.call(self, *args)

    @property
    def arity(self) -> int | None:
        """How many arguments the function declares (``this`` not counted); ``None`` for
        a native that checks none, or once its VM is closed."""
        vm = self._vm
        if vm.closed:
            return None
        v = vm._v
        nparams, nfree = ctypes.c_uint(), ctypes.c_uint()
        capi.sq_pushobject(v, self._obj)
        try:
            if capi.sq_getclosureinfo(v, -1, ctypes.byref(nparams), ctypes.byref(nfree)) < 0:
                return None
        finally:
            capi.sq_pop(v, 1)
        return max(0, int(nparams.value) - 1) if nparams.value else None
