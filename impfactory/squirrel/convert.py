"""Values crossing between Python and Squirrel, both ways, through the C API.

=================  ====================================================
Python             Squirrel
=================  ====================================================
``None``           ``null``
``bool``           ``bool``
``int``            ``integer`` (32-bit: anything wider is a ``ConversionError``)
``float``          ``float`` (32-bit, as on an imp; read back as the
                   shortest decimal that is the same float32, so 23.7
                   stays 23.7 and the round trip is exact)
``str``            ``string``. Squirrel strings are bytes: they are
                   encoded/decoded as UTF-8 with ``surrogateescape``, so
                   every byte string round-trips through ``str``
``bytes``          ``blob`` (``bytearray``/``memoryview`` too)
``dict``           ``table`` (keys: any non-null scalar; a table key
                   that is itself a container reads as a ``SqObject``)
``list``/``tuple`` ``array`` (read back as ``list``)
``SqFunction``     ``function`` (closure or native)
host object        an instance of its host class (``Vm.wrap``), read back
                   as the Python object it stands for
``SqObject``       anything else (instances, classes, generators …):
                   an opaque handle that converts back to the same object
=================  ====================================================

Tables and arrays are copied, deeply; one that contains itself is a
``ConversionError``, as is nesting deeper than ``MAX_DEPTH``. ``to_plain`` turns
a converted value into JSON-like data (what ``agent.send`` carries), refusing
functions and instances with a ``ConversionError`` that says where they were.

Reading and writing use raw access only (``sq_rawget``/``sq_rawset``,
``sq_next`` on tables and arrays): a delegate's metamethods never run here, so no
Squirrel code runs from a ctypes frame.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Mapping
from ctypes import byref, c_float, c_int, c_uint, c_void_p
from typing import TYPE_CHECKING, Any

from impfactory.squirrel import capi
from impfactory.squirrel.capi import SQObj
from impfactory.squirrel.errors import ConversionError

if TYPE_CHECKING:  # pragma: no cover
    from impfactory.squirrel.vm import Vm

MAX_DEPTH = 64

_pack_f32 = struct.Struct("<f").pack


def shortest_float32(x: float) -> float:
    """The float with the fewest digits that is the same float32 as ``x``."""
    bits = _pack_f32(x)
    for digits in (6, 7, 8, 9):
        y = float(f"{x:.{digits}g}")
        if _pack_f32(y) == bits:
            return y
    return x


class Marshal:
    """Reads and pushes values on one VM's stack (see the module doc)."""

    def __init__(self, vm: Vm) -> None:
        self._vm = vm
        self._i = c_int()
        self._f = c_float()
        self._b = c_uint()
        self._p = c_void_p()
        self._tag = c_void_p()
        self._obj = SQObj()

    # --- Squirrel -> Python -------------------------------------------------------

    def read(self, v: int, idx: int) -> Any:
        """The value at stack index ``idx``; the stack is left as it was."""
        if idx < 0:
            idx = capi.sq_gettop(v) + idx + 1
        t = capi.sq_gettype(v, idx)
        if t == capi.OT_INTEGER:
            capi.sq_getinteger(v, idx, byref(self._i))
            return self._i.value
        if t == capi.OT_STRING:
            return self.read_string(v, idx)
        if t == capi.OT_NULL:
            return None
        top = capi.sq_gettop(v)
        try:
            return self._read(v, idx, 0, set())
        finally:
            capi.sq_settop(v, top)

    def _read(self, v: int, idx: int, depth: int, active: set[int]) -> Any:
        t = capi.sq_gettype(v, idx)
        if t == capi.OT_INTEGER:
            capi.sq_getinteger(v, idx, byref(self._i))
            return self._i.value
        if t == capi.OT_STRING:
            return self.read_string(v, idx)
        if t == capi.OT_NULL:
            return None
        if t == capi.OT_BOOL:
            capi.sq_getbool(v, idx, byref(self._b))
            return bool(self._b.value)
        if t == capi.OT_FLOAT:
            capi.sq_getfloat(v, idx, byref(self._f))
            return shortest_float32(self._f.value)
        if t == capi.OT_TABLE or t == capi.OT_ARRAY:
            return self._read_container(v, idx, t, depth, active)
        if t == capi.OT_INSTANCE:
            capi.sq_gettypetag(v, idx, byref(self._tag))
            tag = self._tag.value or 0
            if tag == capi.BLOB_TYPE_TAG:
                capi.sqstd_getblob(v, idx, byref(self._p))
                size = capi.sqstd_getblobsize(v, idx)
                return ctypes.string_at(self._p.value or 0, size) if size > 0 else b""
            host = self._vm._host_object(v, idx, tag)
            if host is not _NOT_HOST:
                return host
        return self._vm._handle(capi.stack_object(v, idx))

    def read_string(self, v: int, idx: int) -> str:
        capi.sq_getstring(v, idx, byref(self._p))
        size = capi.sq_getsize(v, idx)
        if size <= 0:
            return ""
        return ctypes.string_at(self._p.value or 0, size).decode("utf-8", "surrogateescape")

    def _raw(self, v: int, idx: int) -> int:
        capi.sq_getstackobj(v, idx, byref(self._obj))
        return int(self._obj.raw)

    def _read_container(self, v: int, idx: int, t: int, depth: int, active: set[int]) -> Any:
        if depth >= MAX_DEPTH:
            raise ConversionError(f"values nested deeper than {MAX_DEPTH} levels cannot be "
                                  "converted")
        ident = self._raw(v, idx)
        if ident in active:
            kind = "table" if t == capi.OT_TABLE else "array"
            raise ConversionError(f"a {kind} that contains itself cannot be converted")
        if capi.sq_reservestack(v, 4) < 0:
            raise ConversionError("no stack left to convert this value")
        active.add(ident)
        try:
            if t == capi.OT_ARRAY:
                items = []
                for i in range(capi.sq_getsize(v, idx)):
                    capi.sq_pushinteger(v, i)
                    capi.sq_rawget(v, idx)
                    items.append(self._read(v, capi.sq_gettop(v), depth + 1, active))
                    capi.sq_pop(v, 1)
                return items
            table: dict[Any, Any] = {}
            capi.sq_pushnull(v)
            while capi.sq_next(v, idx) >= 0:
                top = capi.sq_gettop(v)
                key = self._read_key(v, top - 1)
                table[key] = self._read(v, top, depth + 1, active)
                capi.sq_pop(v, 2)
            capi.sq_pop(v, 1)
            return table
        finally:
            active.discard(ident)

    def _read_key(self, v: int, idx: int) -> Any:
        t = capi.sq_gettype(v, idx)
        if t in (capi.OT_TABLE, capi.OT_ARRAY):
            return self._vm._handle(capi.stack_object(v, idx))
        return self._read(v, idx, 0, set())

    # --- Python -> Squirrel -------------------------------------------------------

    def push(self, v: int, value: Any) -> None:
        """Push ``value`` converted; on a ``ConversionError`` the stack is unchanged."""
        kind = type(value)
        if kind is int and capi.INT_MIN <= value <= capi.INT_MAX:
            capi.sq_pushinteger(v, value)
            return
        if kind is str:
            data = value.encode("utf-8", "surrogateescape")
            capi.sq_pushstring(v, data, len(data))
            return
        if value is None:
            capi.sq_pushnull(v)
            return
        top = capi.sq_gettop(v)
        try:
            self._push(v, value, 0, set())
        except BaseException:
            capi.sq_settop(v, top)
            raise

    def _push(self, v: int, value: Any, depth: int, active: set[int]) -> None:
        kind = type(value)
        if kind is int:
            if not capi.INT_MIN <= value <= capi.INT_MAX:
                raise ConversionError(f"{value} does not fit a Squirrel integer (32 bits)")
            capi.sq_pushinteger(v, value)
        elif kind is str:
            data = value.encode("utf-8", "surrogateescape")
            capi.sq_pushstring(v, data, len(data))
        elif value is None:
            capi.sq_pushnull(v)
        elif kind is bool:
            capi.sq_pushbool(v, 1 if value else 0)
        elif kind is float:
            capi.sq_pushfloat(v, value)
        elif isinstance(value, _Handle):
            self._vm._push_handle(v, value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self._vm._push_blob(v, bytes(value))
        elif isinstance(value, (Mapping, list, tuple)):
            self._push_container(v, value, depth, active)
        elif isinstance(value, bool):
            capi.sq_pushbool(v, 1 if value else 0)
        elif isinstance(value, int):
            self._push(v, int(value), depth, active)
        elif isinstance(value, float):
            capi.sq_pushfloat(v, float(value))
        elif isinstance(value, str):
            self._push(v, str(value), depth, active)
        else:
            raise ConversionError(f"a Python {type(value).__name__} cannot become a Squirrel "
                                  "value (natives come from Vm.native, objects from Vm.wrap)")

    def _push_container(self, v: int, value: Any, depth: int, active: set[int]) -> None:
        if depth >= MAX_DEPTH:
            raise ConversionError(f"values nested deeper than {MAX_DEPTH} levels cannot be "
                                  "converted")
        if id(value) in active:
            raise ConversionError(f"a {type(value).__name__} that contains itself cannot be "
                                  "converted")
        if capi.sq_reservestack(v, 4) < 0:
            raise ConversionError("no stack left to convert this value")
        active.add(id(value))
        try:
            if isinstance(value, Mapping):
                capi.sq_newtable(v)
                at = capi.sq_gettop(v)
                for key, item in value.items():
                    if key is None:
                        raise ConversionError("a Squirrel table key cannot be null")
                    self._push(v, key, depth + 1, active)
                    self._push(v, item, depth + 1, active)
                    capi.sq_rawset(v, at)
            else:
                capi.sq_newarray(v, 0)
                at = capi.sq_gettop(v)
                for item in value:
                    self._push(v, item, depth + 1, active)
                    capi.sq_arrayappend(v, at)
        finally:
            active.discard(id(value))

    # --- display ------------------------------------------------------------------

    def render(self, v: int, idx: int) -> str:
        """The value as Squirrel's ``tostring`` shows it, without running any
        ``_tostring`` metamethod (``(instance : 0x…)`` for delegable values)."""
        t = capi.sq_gettype(v, idx)
        if t == capi.OT_STRING:
            return self.read_string(v, idx)
        if t & capi.DELEGABLE:
            return f"({capi.TYPE_NAMES.get(t, 'object')} : 0x{self._raw(v, idx):x})"
        top = capi.sq_gettop(v)
        try:
            capi.sq_tostring(v, idx)
            return self.read_string(v, -1)
        finally:
            capi.sq_settop(v, top)


class _Handle:
    """Base of ``SqObject``: what ``Marshal`` pushes as the object it stands for."""

    __slots__ = ()


class _NotHost:
    __slots__ = ()


_NOT_HOST = _NotHost()


def to_plain(value: Any, _path: str = "value") -> Any:
    """``value`` (as converted from Squirrel) as JSON-like data: ``None``, ``bool``,
    ``int``, ``float``, ``str``, ``bytes``, ``list`` and ``dict``. Functions,
    instances and other handles are a ``ConversionError`` naming where they were."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, Mapping):
        return {_plain_key(k, _path): to_plain(v, f"{_path}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v, f"{_path}[{i}]") for i, v in enumerate(value)]
    name = getattr(value, "type_name", None) or type(value).__name__
    raise ConversionError(f"{_path} is a {name}, which cannot be sent as data")


def _plain_key(key: Any, path: str) -> Any:
    if isinstance(key, (bool, int, float, str)):
        return key
    raise ConversionError(f"{path} has a key that is not a number or a string")
